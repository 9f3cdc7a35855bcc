//! Trace context propagation (cargo feature `opentelemetry`): W3C `traceparent` values
//! between [`tracing`] spans bridged to OpenTelemetry by `tracing-opentelemetry`.
//!
//! With the feature on, Pulse does this by itself:
//! - a producer ([`Stream::add`](crate::streaming::Stream::add) and its siblings,
//!   [`Node::dispatch_job`](crate::pool::Node::dispatch_job)) stores the `traceparent` of
//!   the current span (Pulse's own `send`/`dispatch` span when enabled, else yours) with the
//!   event ([`Event::trace_parent`](crate::streaming::Event::trace_parent)) or the job
//!   record ([`Job::trace_parent`](crate::pool::Job::trace_parent)), unless one was given
//!   explicitly ([`NewEvent::with_trace_parent`](crate::streaming::NewEvent::with_trace_parent));
//! - the consumer spans (`receive` of a delivery, a worker's `start` of a job) get a
//!   *link* to it — a link rather than a parent, as the OpenTelemetry messaging
//!   conventions ask, since one consumer span may follow many producers.
//!
//! Your own processing span links the same way with [`link`]. Without an OpenTelemetry
//! layer in the subscriber, spans have no valid context: nothing is stored, nothing
//! linked. Without the feature none of this is compiled; the `trace_parent` fields stay
//! (set them by hand to propagate another way).

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C `traceparent` of `span` (`00-<trace id>-<span id>-<flags>`); `None` when it has
/// no valid OpenTelemetry context (no OpenTelemetry layer, or a disabled span).
pub fn trace_parent(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| format_trace_parent(&sc))
}

/// Adds to `span` a link to the span that `trace_parent` names; false (nothing linked)
/// when the value is not a valid W3C `traceparent`.
pub fn link(span: &Span, trace_parent: &str) -> bool {
    match parse_trace_parent(trace_parent) {
        Some(sc) => {
            span.add_link(sc);
            true
        }
        None => false,
    }
}

fn format_trace_parent(sc: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

/// Parses a `traceparent` (version `00`, or a later version's first four fields).
fn parse_trace_parent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_parents_round_trip_and_bad_ones_are_refused() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_trace_parent(good).expect("valid");
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(format_trace_parent(&sc), good);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_trace_parent(bad).is_none(), "{bad:?}");
        }
        // A later version may carry more fields.
        assert!(
            parse_trace_parent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more")
                .is_some()
        );
    }
}
