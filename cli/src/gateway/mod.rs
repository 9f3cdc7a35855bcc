//! `pulse serve`: the HTTP + JSON + SSE gateway over the same operations as the command —
//! publish, subscribe (reader or sink member, with `Last-Event-ID` resume and acks by
//! `POST`), maps, pools, request/reply — described by the OpenAPI document it serves at
//! `/openapi.json` (generated from the handlers' annotations, module `openapi`).
//!
//! Contract: binds to loopback unless told otherwise, and then only with a token
//! (`--token` / `PULSE_TOKEN`), required on every route but `/healthz`, `/openapi.json`,
//! the dashboard's sign-in page and its assets — as a bearer token, or as the cookie the
//! dashboard's sign-in sets (then not for a change sent from another site);
//! `--read-only` refuses every change; request bodies are bounded (`--max-body`); every
//! error is a JSON body with a status that says whose fault it is (module `error`); a
//! client that goes away takes its reader, sink member, map replica or pool node with it
//! (`Closing`), and what it had not acknowledged is redelivered. The dashboard (`/ui`)
//! is module `ui`.

mod error;
mod listing;
mod maps;
mod openapi;
mod pools;
mod sse;
mod streams;
mod ui;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{rejection::BytesRejection, DefaultBodyLimit, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use bytes::Bytes;
use pulse::{
    keys::Keyspace,
    pool::{Node, NodeOptions},
    streaming::{Stream, StreamOptions},
    Backend,
};
use serde_json::Value;

pub use error::{ApiError, ErrorBody};
pub use openapi::document;

use crate::Failure;

/// How the gateway serves.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The token every request must carry (but `/healthz`, `/openapi.json` and the
    /// dashboard's sign-in page): a bearer token, or the dashboard's cookie.
    pub token: Option<String>,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// The ack grace of SSE sink members: how long an event they were sent may stay
    /// unacknowledged before another member gets it.
    pub ack_grace: Duration,
    /// Refuse every change (the dashboard shows no action, the API answers 403).
    pub read_only: bool,
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    backend: Arc<dyn Backend>,
    keyspace: Keyspace,
    token: Option<Arc<str>>,
    ack_grace: Duration,
    read_only: bool,
    sampler: Arc<ui::Sampler>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// The state of a gateway over `backend` and `keyspace`.
    pub fn new(backend: Arc<dyn Backend>, keyspace: Keyspace, options: &ServeOptions) -> Self {
        AppState {
            backend,
            keyspace,
            token: options.token.as_deref().map(Arc::from),
            ack_grace: options.ack_grace,
            read_only: options.read_only,
            sampler: Arc::default(),
        }
    }

    /// A handle on stream `name` (errors: an invalid name).
    fn stream(&self, name: &str) -> pulse::Result<Stream> {
        let options = StreamOptions::default().with_keyspace(self.keyspace.clone());
        Stream::new(self.backend.clone(), name, options)
    }

    /// A client-only node of pool `pool`: it inspects, dispatches and stops, runs nothing.
    async fn client_node(&self, pool: &str) -> pulse::Result<Node> {
        let options = NodeOptions::default()
            .with_keyspace(self.keyspace.clone())
            .with_client_only(true);
        Node::join(self.backend.clone(), pool, options).await
    }
}

/// The gateway's routes, for `serve` and for tests.
pub fn router(state: AppState, max_body: usize) -> Router {
    let api = Router::new()
        .route("/v1/streams", get(listing::streams))
        .route("/v1/maps", get(listing::maps))
        .route("/v1/pools", get(listing::pools))
        .route("/v1/streams/{stream}", get(streams::info))
        .route(
            "/v1/streams/{stream}/events",
            post(streams::publish).get(streams::subscribe),
        )
        .route(
            "/v1/streams/{stream}/sinks/{sink}/events",
            get(streams::subscribe_sink),
        )
        .route("/v1/streams/{stream}/sinks/{sink}/ack", post(streams::ack))
        .route("/v1/streams/{stream}/requests", post(streams::request))
        .route("/v1/maps/{map}", get(maps::list))
        .route("/v1/maps/{map}/events", get(maps::watch))
        .route(
            "/v1/maps/{map}/keys/{key}",
            get(maps::get).put(maps::set).delete(maps::delete),
        )
        .route("/v1/pools/{pool}", get(pools::inspect))
        .route("/v1/pools/{pool}/jobs", post(pools::dispatch))
        .route(
            "/v1/pools/{pool}/jobs/{key}",
            axum::routing::delete(pools::stop),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/", get(|| async { axum::response::Redirect::to("/ui") }))
        .merge(api)
        .merge(ui::router(state.clone()))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Refuses a request without the token (when one is set): a bearer token, or the
/// dashboard's cookie — then not for a change sent from another site. Read-only, refuses
/// every change.
async fn authorize(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let matches = |given: Option<&str>| {
            given.is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes()))
        };
        let by_cookie = !matches(bearer) && matches(ui::cookie_token(headers));
        if !matches(bearer) && !by_cookie {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a bearer token is required (Authorization: Bearer …)",
            )
            .into_response();
        }
        if by_cookie && !request.method().is_safe() && ui::cross_site(headers) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a change from another site is refused",
            )
            .into_response();
        }
    }
    if app.read_only && !request.method().is_safe() {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "this server is read-only (--read-only)",
        )
        .into_response();
    }
    next.run(request).await
}

/// Compares a given secret with ours in time that does not depend on where they first
/// differ (only on their lengths), so the token cannot be guessed byte by byte.
fn same_secret(given: &[u8], ours: &[u8]) -> bool {
    let differs = given
        .iter()
        .zip(ours)
        .fold(u8::from(given.len() != ours.len()), |acc, (a, b)| {
            acc | (a ^ b)
        });
    std::hint::black_box(differs) == 0
}

/// A request body as JSON: 413 past the size limit, 400 when it is not JSON.
fn body_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_argument"
        };
        ApiError::new(status, kind, r.body_text())
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

/// Serves until interrupted.
pub async fn serve(
    backend: Arc<dyn Backend>,
    keyspace: Keyspace,
    options: ServeOptions,
) -> Result<(), Failure> {
    if options
        .token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return Err(Failure::Input(
            "an empty token would let anyone in: give a real one or none".into(),
        ));
    }
    if !options.listen.ip().is_loopback() && options.token.is_none() {
        return Err(Failure::Input(format!(
            "listening on {} (not loopback) needs a token: --token or PULSE_TOKEN",
            options.listen
        )));
    }
    let state = AppState::new(backend, keyspace, &options);
    let app = router(state, options.max_body);
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| Failure::Input(format!("cannot listen on {}: {e}", options.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::Input(e.to_string()))?;
    eprintln!("pulse: serving on http://{local} (OpenAPI at /openapi.json)");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Failure::Input(format!("serving failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cres", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3crett", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
        assert!(same_secret(b"", b""));
    }
}
