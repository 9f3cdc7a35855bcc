//! The spans of Pulse's operations, in one place so their names and fields stay uniform.
//!
//! - Per-operation spans (an append, a delivery, an ack, a map write, a dispatch) are at
//!   `debug`: a production subscriber at `info` never builds them, and a disabled span costs
//!   one level check (its fields are not even evaluated).
//! - Background loops (a sink's reads and reclaims, a reader, a replica, a pool node's
//!   loops) each run in one `info` span for their whole life, so what they log carries the
//!   ids of what they serve.
//! - Stream spans carry the OpenTelemetry messaging names (`messaging.system = "pulse"`,
//!   `messaging.destination.name`, `messaging.operation.type`, …) and `otel.name` /
//!   `otel.kind`, which `tracing-opentelemetry` turns into the span's name and kind. A
//!   failed operation records `error.type` ([`Error::kind`](crate::Error::kind)) and
//!   `otel.status_code = "error"`.

use std::future::Future;

use tracing::{field::Empty, Instrument, Span};

use crate::Result;

/// Runs `fut` in `span`, recording a failure on the span.
pub(crate) async fn traced<T>(span: Span, fut: impl Future<Output = Result<T>>) -> Result<T> {
    let out = fut.instrument(span.clone()).await;
    if let Err(e) = &out {
        failed(&span, e);
    }
    out
}

/// Records `e` on `span`.
pub(crate) fn failed(span: &Span, e: &crate::Error) {
    span.record("error.type", e.kind());
    span.record("otel.status_code", "error");
}

/// An append of `count` events to `stream` (producer side).
pub(crate) fn send(stream: &str, count: usize) -> Span {
    tracing::debug_span!(
        "pulse.stream.send",
        otel.name = %format_args!("send {stream}"),
        otel.kind = "producer",
        messaging.system = "pulse",
        messaging.operation.name = "send",
        messaging.operation.type = "send",
        messaging.destination.name = stream,
        messaging.batch.message_count = count,
        messaging.message.id = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// The delivery of event `id` of `stream` to the subscribers of a reader (no `sink`) or
/// a sink instance (consumer side).
pub(crate) fn receive(
    stream: &str,
    sink: Option<&str>,
    consumer: &str,
    id: impl std::fmt::Display,
) -> Span {
    tracing::debug_span!(
        "pulse.stream.receive",
        otel.name = %format_args!("receive {stream}"),
        otel.kind = "consumer",
        messaging.system = "pulse",
        messaging.operation.name = "receive",
        messaging.operation.type = "receive",
        messaging.destination.name = stream,
        messaging.consumer.group.name = sink,
        messaging.client.id = consumer,
        messaging.message.id = %id,
    )
}

/// An acknowledgement of `count` events of `stream` by `sink`.
pub(crate) fn ack(stream: &str, sink: &str, count: usize) -> Span {
    tracing::debug_span!(
        "pulse.stream.ack",
        otel.name = %format_args!("ack {stream}"),
        otel.kind = "client",
        messaging.system = "pulse",
        messaging.operation.name = "ack",
        messaging.operation.type = "settle",
        messaging.destination.name = stream,
        messaging.consumer.group.name = sink,
        messaging.batch.message_count = count,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// Operation `op` (`"set"`, `"delete"`, …) on `key` (empty for the whole map) of `map`.
pub(crate) fn map_op(map: &str, op: &'static str, key: &str) -> Span {
    tracing::debug_span!(
        "pulse.rmap.op",
        otel.name = %format_args!("{op} {map}"),
        otel.kind = "client",
        map = map,
        op = op,
        key = key,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// Pool operation `op` (`"dispatch"`, `"stop"`, `"notify"`) on job `key`.
pub(crate) fn pool_op(pool: &str, node: &str, op: &'static str, key: &str) -> Span {
    tracing::debug_span!(
        "pulse.pool.op",
        otel.name = %format_args!("{op} {pool}"),
        otel.kind = "producer",
        pool = pool,
        node = node,
        op = op,
        job = key,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// A worker's handler running `what` (`"start"`, `"stop"`, `"notify"`) for job `key`.
pub(crate) fn job(pool: &str, worker: &str, what: &'static str, key: &str) -> Span {
    tracing::debug_span!(
        "pulse.pool.job",
        otel.name = %format_args!("{what} {pool}"),
        otel.kind = "consumer",
        pool = pool,
        worker = worker,
        op = what,
        job = key,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// The `traceparent` a producer stores with an event or job: the current span's
/// (feature `opentelemetry`; always `None` without it).
pub(crate) fn current_trace_parent() -> Option<String> {
    #[cfg(feature = "opentelemetry")]
    {
        crate::otel::trace_parent(&Span::current())
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        None
    }
}

/// Links the consumer span `span` to the producer's `traceparent` (feature
/// `opentelemetry`; nothing without it, or when `span` is disabled).
pub(crate) fn link_producer(span: &Span, trace_parent: Option<&str>) {
    #[cfg(feature = "opentelemetry")]
    if let Some(tp) = trace_parent.filter(|_| !span.is_disabled()) {
        crate::otel::link(span, tp);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, trace_parent);
}
