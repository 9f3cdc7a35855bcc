//! Every failure of the gateway as an HTTP status and a JSON body
//! `{"error": {"kind": …, "message": …}}`: bad input is a 4xx that names the problem,
//! a store that is unreachable or refusing is a 503 with `Retry-After`, and nothing is a
//! bare 500 but a bug.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use pulse::Error;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A short, stable name: `invalid_argument`, `not_found`, `conflict`, `unauthorized`,
    /// `payload_too_large`, `timeout`, `unavailable`, `remote`, … (for a library error, its
    /// `Error::kind`).
    pub kind: String,
    /// A sentence for people.
    pub message: String,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: String,
    message: String,
}

impl ApiError {
    /// An error with this status, kind and message.
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind.to_owned(),
            message: message.into(),
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the request conflicts with the state (an ID that is not pending).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::InvalidName { .. }
            | Error::InvalidKey { .. }
            | Error::InvalidArgument(_)
            | Error::InvalidValue { .. } => StatusCode::BAD_REQUEST,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NoGroup { .. } | Error::NotRunning { .. } => StatusCode::NOT_FOUND,
            Error::JobExists { .. } | Error::WrongType { .. } => StatusCode::CONFLICT,
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Remote { .. } | Error::Aborted { .. } | Error::JobFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Error::ShuttingDown { .. } => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = match &e {
            Error::Remote { code, message } => format!("{code}: {message}"),
            other => other.to_string(),
        };
        ApiError {
            status,
            kind: e.kind().to_owned(),
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unavailable = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if unavailable {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// What a handler returns.
pub(super) type ApiResult<T> = Result<T, ApiError>;
