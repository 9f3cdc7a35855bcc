//! What exists, over HTTP: `GET /v1/streams`, `/v1/maps`, `/v1/pools`, each with a `limit`
//! (the rows come from the crate's `listing` module, as for `pulse … ls`).

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    Json,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    error::{ApiError, ApiResult, ErrorBody},
    AppState,
};
use crate::listing::{self, MapRow, PoolRow, StreamRow, DEFAULT_LIMIT, MAX_LIMIT};

/// How many names to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// At most this many, the first ones by name (default 1000, at most 100000).
    #[param(minimum = 0, maximum = 100000)]
    pub(super) limit: Option<usize>,
}

/// The limit a query asks for, checked.
fn limit_of(q: Result<Query<ListQuery>, QueryRejection>) -> ApiResult<usize> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    match q.limit {
        Some(n) if n > MAX_LIMIT => Err(ApiError::bad_request(format!(
            "limit {n} is above {MAX_LIMIT}"
        ))),
        n => Ok(n.unwrap_or(DEFAULT_LIMIT)),
    }
}

/// The streams, with their lengths and last IDs.
#[utoipa::path(
    get, path = "/v1/streams", tag = "streams",
    params(ListQuery),
    responses(
        (status = 200, description = "The streams by name", body = Vec<StreamRow>),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn streams(
    State(app): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<StreamRow>>> {
    let limit = limit_of(q)?;
    Ok(Json(
        listing::streams(app.backend.as_ref(), &app.keyspace, limit).await?,
    ))
}

/// The maps, with their key counts.
#[utoipa::path(
    get, path = "/v1/maps", tag = "maps",
    params(ListQuery),
    responses(
        (status = 200, description = "The maps by name", body = Vec<MapRow>),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn maps(
    State(app): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<MapRow>>> {
    let limit = limit_of(q)?;
    Ok(Json(
        listing::maps(app.backend.as_ref(), &app.keyspace, limit).await?,
    ))
}

/// The pools (those with workers or jobs), with their worker and job counts.
#[utoipa::path(
    get, path = "/v1/pools", tag = "pools",
    params(ListQuery),
    responses(
        (status = 200, description = "The pools by name", body = Vec<PoolRow>),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn pools(
    State(app): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<PoolRow>>> {
    let limit = limit_of(q)?;
    Ok(Json(
        listing::pools(app.backend.as_ref(), &app.keyspace, limit).await?,
    ))
}
