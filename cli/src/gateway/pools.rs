//! Pools over HTTP: what a pool runs (the inspection API), dispatch and stop. Each request
//! joins the pool as a client-only node for its duration.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{
    body_json,
    error::{ApiError, ApiResult, ErrorBody},
    AppState,
};
use crate::output::{payload_from, pool_state_json};

/// What pool `pool` runs: its jobs, workers and ranges.
#[utoipa::path(
    get, path = "/v1/pools/{pool}", tag = "pools",
    params(("pool" = String, Path, description = "The pool")),
    responses(
        (status = 200, description = "Jobs (group, worker, node, since, moves, or why waiting), workers (group, jobs, liveness), ranges", body = Value),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn inspect(
    State(app): State<AppState>,
    Path(pool): Path<String>,
) -> ApiResult<Json<Value>> {
    let node = app.client_node(&pool).await?;
    let state = node.inspect().await;
    node.close().await?;
    Ok(Json(pool_state_json(&state?)))
}

/// A job to dispatch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DispatchBody {
    /// The job key.
    pub(super) key: String,
    /// The payload as text.
    #[serde(default)]
    pub(super) payload: Option<String>,
    /// The payload as base64.
    #[serde(default)]
    pub(super) payload_base64: Option<String>,
}

/// Dispatch a job; returns once a worker started it.
#[utoipa::path(
    post, path = "/v1/pools/{pool}/jobs", tag = "pools",
    params(("pool" = String, Path, description = "The pool")),
    request_body = DispatchBody,
    responses(
        (status = 201, description = "Started", body = Value),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 409, description = "The job exists already", body = ErrorBody),
        (status = 502, description = "The worker's start failed", body = ErrorBody),
        (status = 504, description = "Not started in time (it exists and starts when a worker can take it)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn dispatch(
    State(app): State<AppState>,
    Path(pool): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let job: DispatchBody = serde_json::from_value(body_json(body)?)
        .map_err(|e| ApiError::bad_request(format!("not a job: {e}")))?;
    let payload = payload_from(job.payload, job.payload_base64)
        .map_err(ApiError::bad_request)?
        .unwrap_or_default();
    let node = app.client_node(&pool).await?;
    let dispatched = node.dispatch_job(&job.key, payload).await;
    node.close().await?;
    dispatched?;
    Ok((StatusCode::CREATED, Json(json!({"dispatched": job.key}))).into_response())
}

/// Stop a job for good.
#[utoipa::path(
    delete, path = "/v1/pools/{pool}/jobs/{key}", tag = "pools",
    params(("pool" = String, Path, description = "The pool"), ("key" = String, Path, description = "The job key")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn stop(
    State(app): State<AppState>,
    Path((pool, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let node = app.client_node(&pool).await?;
    let stopped = node.stop_job(&key).await;
    node.close().await?;
    if !stopped? {
        return Err(ApiError::not_found(format!(
            "pool {pool:?} has no job {key:?}"
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
