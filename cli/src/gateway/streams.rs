//! Streams over HTTP: publish one event or an atomic batch, a stream's state, SSE
//! subscriptions as a reader or as a sink member (with `Last-Event-ID` resume and
//! acknowledgements by `POST`), and request/reply.
//!
//! An SSE sink member lives as long as its connection: events it was sent and that were
//! not acknowledged when the client goes away are redelivered to another member (after
//! the sink's ack grace), never lost.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use pulse::{
    backend::EntryId,
    rpc::RequestOptions,
    streaming::{EventReceiver, Filter, NewEvent, ReaderOptions, SinkOptions, Start},
    Error,
};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::{
    body_json,
    error::{ApiError, ApiResult, ErrorBody},
    sse::{self, Closing, Frame},
    AppState,
};
use crate::output::{event_json, payload_from, put_payload};

/// One event to publish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishEvent {
    /// The event name.
    pub(super) name: String,
    /// The payload as text.
    #[serde(default)]
    pub(super) payload: Option<String>,
    /// The payload as base64 (for bytes that are not text).
    #[serde(default)]
    pub(super) payload_base64: Option<String>,
    /// Its subject (dotted, e.g. `orders.eu.created`).
    #[serde(default)]
    pub(super) subject: Option<String>,
    /// Headers (small string metadata).
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    /// Add it only once within the stream's dedup window for this key (single events only).
    #[serde(default)]
    pub(super) dedup_key: Option<String>,
    /// Deliver it after this many milliseconds (single events only).
    #[serde(default)]
    pub(super) deliver_after_ms: Option<u64>,
}

/// What a publish did.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(super) struct Published {
    /// The IDs of the events, in order (for a dedup key's duplicate: the first add's ID).
    pub(super) ids: Vec<String>,
    /// False when a dedup key's earlier add made this one add nothing.
    pub(super) added: bool,
    /// For a delayed event: its ID among the stream's delayed events (no stream ID yet).
    pub(super) delayed_id: Option<String>,
}

fn new_event(e: PublishEvent) -> ApiResult<NewEvent> {
    let payload = payload_from(e.payload, e.payload_base64).map_err(ApiError::bad_request)?;
    let mut event = NewEvent::new(e.name, payload.unwrap_or_default());
    if let Some(s) = e.subject {
        event = event.with_topic(s);
    }
    for (k, v) in e.headers {
        event = event.with_header(k, v);
    }
    if let Some(k) = e.dedup_key {
        event = event.with_dedup_key(k);
    }
    Ok(event)
}

/// Publish one event (an object) or an atomic batch (an array).
#[utoipa::path(
    post, path = "/v1/streams/{stream}/events", tag = "streams",
    params(("stream" = String, Path, description = "The stream")),
    request_body(content = Value, description = "A PublishEvent, or an array of them (a batch: all or nothing)"),
    responses(
        (status = 201, description = "Published", body = Published),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 413, description = "Body or payload too large", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn publish(
    State(app): State<AppState>,
    Path(stream): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let stream = app.stream(&stream)?;
    let value: Value = body_json(body)?;
    let published = if value.is_array() {
        let events: Vec<PublishEvent> = serde_json::from_value(value)
            .map_err(|e| ApiError::bad_request(format!("not a batch of events: {e}")))?;
        if events.is_empty() {
            return Err(ApiError::bad_request("an empty batch"));
        }
        let mut batch = Vec::with_capacity(events.len());
        for e in events {
            if e.dedup_key.is_some() || e.deliver_after_ms.is_some() {
                return Err(ApiError::bad_request(
                    "dedup keys and delays are for single events, not batches",
                ));
            }
            batch.push(new_event(e)?);
        }
        let ids = stream.add_batch(batch).await?;
        Published {
            ids: ids.iter().map(ToString::to_string).collect(),
            added: true,
            delayed_id: None,
        }
    } else {
        let e: PublishEvent = serde_json::from_value(value)
            .map_err(|e| ApiError::bad_request(format!("not an event: {e}")))?;
        let delay = e.deliver_after_ms;
        let event = new_event(e)?;
        match delay {
            Some(ms) => {
                let scheduled = stream
                    .add_delayed(event.deliver_after(Duration::from_millis(ms)))
                    .await?;
                Published {
                    ids: Vec::new(),
                    added: true,
                    delayed_id: Some(scheduled.id),
                }
            }
            None => {
                let (id, added) = stream.add_unique(event).await?;
                Published {
                    ids: vec![id.to_string()],
                    added,
                    delayed_id: None,
                }
            }
        }
    };
    Ok((StatusCode::CREATED, Json(published)).into_response())
}

/// A stream's length, ends, delayed events and sinks.
#[utoipa::path(
    get, path = "/v1/streams/{stream}", tag = "streams",
    params(("stream" = String, Path, description = "The stream")),
    responses(
        (status = 200, description = "The stream's state", body = Value),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn info(
    State(app): State<AppState>,
    Path(stream): Path<String>,
) -> ApiResult<Json<Value>> {
    let stream = app.stream(&stream)?;
    let state = stream.state().await?;
    let delayed = stream.delayed().await?;
    Ok(Json(crate::output::stream_state_json(&state, &delayed)))
}

/// Where a subscription starts and what it gets.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SubscribeQuery {
    /// `oldest`, `newest` (default), or an event ID to resume after. A `Last-Event-ID`
    /// header takes precedence.
    pub(super) from: Option<String>,
    /// Only events whose subject matches this pattern (`*` one segment, `>` the rest).
    pub(super) subject: Option<String>,
}

fn start_and_filter(q: &SubscribeQuery, headers: &HeaderMap) -> ApiResult<(Start, Filter)> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let from = resume.or_else(|| q.from.clone());
    let start = match from.as_deref() {
        None | Some("newest") => Start::Newest,
        Some("oldest") => Start::Oldest,
        Some(id) => Start::After(
            id.parse::<EntryId>()
                .map_err(|_| ApiError::bad_request(format!("{id:?} is not an event ID")))?,
        ),
    };
    let filter = match &q.subject {
        Some(p) => Filter::subject(p)?,
        None => Filter::All,
    };
    Ok((start, filter))
}

/// An SSE response of events, each with its ID (for `Last-Event-ID`) and name; `keep`
/// lives as long as the response.
fn sse_of(events: EventReceiver, keep: Closing) -> Response {
    let frames = futures_util::stream::unfold((events, keep), |(mut events, keep)| async move {
        let e = events.recv().await?;
        let frame = Frame {
            id: Some(e.id.to_string()),
            event: e.name.clone(),
            data: event_json(&e).to_string(),
        };
        Some((frame, (events, keep)))
    });
    sse::response(frames)
}

/// Subscribe as a reader (every event, from `from`), over SSE.
#[utoipa::path(
    get, path = "/v1/streams/{stream}/events", tag = "streams",
    params(("stream" = String, Path, description = "The stream"), SubscribeQuery),
    responses(
        (status = 200, description = "An SSE stream: `id` the event ID, `event` its name, `data` the event as JSON", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn subscribe(
    State(app): State<AppState>,
    Path(stream): Path<String>,
    Query(q): Query<SubscribeQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let stream = app.stream(&stream)?;
    let (start, filter) = start_and_filter(&q, &headers)?;
    let reader = stream
        .new_reader(
            ReaderOptions::default()
                .with_start(start)
                .with_filter(filter),
        )
        .await?;
    let events = reader.subscribe()?;
    let keep = Closing::reader(reader);
    Ok(sse_of(events, keep))
}

/// Subscribe as a member of sink `sink`, over SSE: each event goes to one member; ack
/// with `POST …/ack`.
#[utoipa::path(
    get, path = "/v1/streams/{stream}/sinks/{sink}/events", tag = "streams",
    params(("stream" = String, Path, description = "The stream"), ("sink" = String, Path, description = "The sink"), SubscribeQuery),
    responses(
        (status = 200, description = "An SSE stream of the events this member gets", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn subscribe_sink(
    State(app): State<AppState>,
    Path((stream, sink)): Path<(String, String)>,
    Query(q): Query<SubscribeQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let stream = app.stream(&stream)?;
    let (start, filter) = start_and_filter(&q, &headers)?;
    let options = SinkOptions::default()
        .with_start(start)
        .with_filter(filter)
        .with_ack_grace(app.ack_grace);
    let member = stream.new_sink(&sink, options).await?;
    let events = member.subscribe()?;
    let keep = Closing::sink(member);
    Ok(sse_of(events, keep))
}

/// IDs to acknowledge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AckBody {
    /// The event IDs.
    pub(super) ids: Vec<String>,
}

/// Acknowledge events delivered by sink `sink`.
#[utoipa::path(
    post, path = "/v1/streams/{stream}/sinks/{sink}/ack", tag = "streams",
    params(("stream" = String, Path, description = "The stream"), ("sink" = String, Path, description = "The sink")),
    request_body = AckBody,
    responses(
        (status = 200, description = "Acknowledged", body = Value),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "No such sink", body = ErrorBody),
        (status = 409, description = "Some IDs were not pending (nothing else changed for them)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn ack(
    State(app): State<AppState>,
    Path((stream, sink)): Path<(String, String)>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Value>> {
    let stream = app.stream(&stream)?;
    let body: AckBody = serde_json::from_value(body_json(body)?)
        .map_err(|e| ApiError::bad_request(format!("not an ack body: {e}")))?;
    if body.ids.is_empty() {
        return Err(ApiError::bad_request("no IDs to acknowledge"));
    }
    let ids = body
        .ids
        .iter()
        .map(|i| {
            i.parse::<EntryId>()
                .map_err(|_| ApiError::bad_request(format!("{i:?} is not an event ID")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let acked = match app.backend.group_ack(stream.key(), &sink, &ids).await {
        Ok(n) => n,
        Err(Error::NoGroup { .. }) => {
            return Err(ApiError::not_found(format!(
                "stream {:?} has no sink {sink:?}",
                stream.name()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if acked < ids.len() as u64 {
        // The store answers a missing group with 0 acknowledged: tell the two apart.
        let sinks = app.backend.group_list(stream.key()).await?;
        if !sinks.iter().any(|g| g.name == sink) {
            return Err(ApiError::not_found(format!(
                "stream {:?} has no sink {sink:?}",
                stream.name()
            )));
        }
        return Err(ApiError::conflict(format!(
            "{} of the {} IDs were not pending in sink {sink:?}",
            ids.len() as u64 - acked,
            ids.len()
        )));
    }
    Ok(Json(json!({"acknowledged": acked})))
}

/// A request to a service stream.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestBody {
    /// The request's event name. Default `request`.
    #[serde(default)]
    pub(super) name: Option<String>,
    /// The payload as text.
    #[serde(default)]
    pub(super) payload: Option<String>,
    /// The payload as base64.
    #[serde(default)]
    pub(super) payload_base64: Option<String>,
    /// How long to wait for the answer, in ms (1 to 60,000: an HTTP request is not held
    /// longer). Default 10,000.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 60000)]
    pub(super) timeout_ms: Option<u64>,
}

/// Send one request to a service stream and return its answer.
#[utoipa::path(
    post, path = "/v1/streams/{stream}/requests", tag = "streams",
    params(("stream" = String, Path, description = "The service stream")),
    request_body = RequestBody,
    responses(
        (status = 200, description = "The reply", body = Value),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 502, description = "The responder answered an error, or died", body = ErrorBody),
        (status = 504, description = "No answer in time", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn request(
    State(app): State<AppState>,
    Path(stream): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Value>> {
    let stream = app.stream(&stream)?;
    let req: RequestBody = serde_json::from_value(body_json(body)?)
        .map_err(|e| ApiError::bad_request(format!("not a request: {e}")))?;
    let payload = payload_from(req.payload, req.payload_base64).map_err(ApiError::bad_request)?;
    let timeout_ms = req.timeout_ms.unwrap_or(10_000);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(ApiError::bad_request("timeout_ms is 1 to 60000"));
    }
    let timeout = Duration::from_millis(timeout_ms);
    let reply = stream
        .request(
            NewEvent::new(
                req.name.unwrap_or_else(|| "request".into()),
                payload.unwrap_or_default(),
            ),
            RequestOptions::default().with_timeout(timeout),
        )
        .await?;
    let mut obj = serde_json::Map::new();
    obj.insert("responder".into(), json!(reply.responder));
    obj.insert("headers".into(), json!(reply.headers));
    put_payload(&mut obj, &reply.payload);
    Ok(Json(Value::Object(obj)))
}
