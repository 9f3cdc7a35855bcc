//! Maps over HTTP: every key, one value, set and delete (replicas see it at once), and
//! changes over SSE. Each request joins the map as a replica for its duration; a watch
//! keeps its replica as long as its connection.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use pulse::rmap::{EventKind, Map, MapOptions};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{
    body_json,
    error::{ApiError, ApiResult, ErrorBody},
    sse::{self, Closing, Frame},
    AppState,
};
use crate::output::{payload_from, put_payload};

async fn join(app: &AppState, name: &str) -> ApiResult<Map> {
    Ok(Map::join(
        app.backend.clone(),
        name,
        MapOptions::default().with_keyspace(app.keyspace.clone()),
    )
    .await?)
}

fn entry(key: &str, value: &[u8]) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("key".into(), json!(key));
    put_payload(&mut obj, value);
    Value::Object(obj)
}

/// Every key and value of map `map`.
#[utoipa::path(
    get, path = "/v1/maps/{map}", tag = "maps",
    params(("map" = String, Path, description = "The map")),
    responses(
        (status = 200, description = "Every entry: `key`, and `payload` or `payload_base64`", body = Value),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Path(map): Path<String>,
) -> ApiResult<Json<Value>> {
    let m = join(&app, &map).await?;
    let snap = m.snapshot();
    let mut keys: Vec<&String> = snap.keys().collect();
    keys.sort();
    let entries: Vec<Value> = keys.iter().map(|k| entry(k, &snap[*k])).collect();
    m.close().await?;
    Ok(Json(json!(entries)))
}

/// The value of `key` in map `map`.
#[utoipa::path(
    get, path = "/v1/maps/{map}/keys/{key}", tag = "maps",
    params(("map" = String, Path, description = "The map"), ("key" = String, Path, description = "The key")),
    responses(
        (status = 200, description = "The entry", body = Value),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn get(
    State(app): State<AppState>,
    Path((map, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let m = join(&app, &map).await?;
    let value = m.get(&key);
    m.close().await?;
    match value {
        Some(v) => Ok(Json(entry(&key, &v))),
        None => Err(ApiError::not_found(format!(
            "map {map:?} has no key {key:?}"
        ))),
    }
}

/// A value to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SetBody {
    /// The value as text.
    #[serde(default)]
    pub(super) payload: Option<String>,
    /// The value as base64.
    #[serde(default)]
    pub(super) payload_base64: Option<String>,
}

/// Set `key` in map `map`; returns once this replica has it.
#[utoipa::path(
    put, path = "/v1/maps/{map}/keys/{key}", tag = "maps",
    params(("map" = String, Path, description = "The map"), ("key" = String, Path, description = "The key")),
    request_body = SetBody,
    responses(
        (status = 200, description = "Set", body = Value),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 413, description = "Too large", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn set(
    State(app): State<AppState>,
    Path((map, key)): Path<(String, String)>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body: SetBody = serde_json::from_value(body_json(body)?)
        .map_err(|e| ApiError::bad_request(format!("not a value: {e}")))?;
    let bytes = payload_from(body.payload, body.payload_base64)
        .map_err(ApiError::bad_request)?
        .ok_or_else(|| ApiError::bad_request("give payload or payload_base64"))?;
    let m = join(&app, &map).await?;
    let set = m.set_and_wait(&key, bytes).await;
    m.close().await?;
    let previous = set?;
    Ok(Json(json!({"key": key, "replaced": previous.is_some()})))
}

/// Delete `key` from map `map`.
#[utoipa::path(
    delete, path = "/v1/maps/{map}/keys/{key}", tag = "maps",
    params(("map" = String, Path, description = "The map"), ("key" = String, Path, description = "The key")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn delete(
    State(app): State<AppState>,
    Path((map, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let m = join(&app, &map).await?;
    let deleted = m.delete(&key).await;
    m.close().await?;
    match deleted? {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(ApiError::not_found(format!(
            "map {map:?} has no key {key:?}"
        ))),
    }
}

/// Changes of map `map` over SSE: `event` is `set`, `delete` or `reset` (re-read the map),
/// `data` the entry as JSON.
#[utoipa::path(
    get, path = "/v1/maps/{map}/events", tag = "maps",
    params(("map" = String, Path, description = "The map")),
    responses(
        (status = 200, description = "An SSE stream of changes", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn watch(
    State(app): State<AppState>,
    Path(map): Path<String>,
) -> ApiResult<Response> {
    let m = join(&app, &map).await?;
    let changes = m.subscribe()?;
    let keep = Closing::map(m.clone());
    let stream =
        futures_util::stream::unfold((changes, m, keep), |(mut changes, m, keep)| async move {
            let e = changes.recv().await?;
            let (kind, data) = match (e.kind, e.key.as_deref()) {
                (EventKind::Change, Some(k)) => (
                    "set",
                    m.get(k).map_or_else(|| json!({"key": k}), |v| entry(k, &v)),
                ),
                (EventKind::Delete, Some(k)) => ("delete", json!({"key": k})),
                _ => ("reset", json!({})),
            };
            let frame = Frame {
                id: None,
                event: kind.to_owned(),
                data: data.to_string(),
            };
            Some((frame, (changes, m, keep)))
        });
    Ok(sse::response(stream))
}
