//! Events as stored in a stream, and the filters readers and sinks apply to them.
//!
//! An event is a stream entry with fields `n` (name, text), `p` (payload, bytes) and,
//! optionally, `t` (topic, text), `tp` (the producer's W3C `traceparent`) and `h:<name>`
//! (headers, `super::headers`). Entries without `n` or `p` (foreign writers) are not
//! events: [`Event::from_entry`] rejects them and readers and sinks skip them with a warning.

use std::{fmt, sync::Arc, time::SystemTime};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::{
    backend::{EntryId, StreamEntry},
    codec, Error, Result,
};

/// Field holding the event name.
pub(crate) const NAME: &str = "n";
/// Field holding the payload.
pub(crate) const PAYLOAD: &str = "p";
/// Field holding the optional topic.
pub(crate) const TOPIC: &str = "t";
/// Field holding the optional W3C `traceparent` of the producer.
pub(crate) const TRACE_PARENT: &str = "tp";

/// One event read from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The entry ID (`ms-seq`, the server's clock).
    pub id: EntryId,
    /// The stream it was read from (its name, not its key).
    pub stream: String,
    /// The sink (consumer group) that delivered it; `None` for reader events.
    pub sink: Option<String>,
    /// The event name.
    pub name: String,
    /// The topic, if one was given when it was added.
    pub topic: Option<String>,
    /// The payload.
    pub payload: Bytes,
    /// How many times a sink has delivered this event, this delivery included: 1 the first
    /// time, more when it is redelivered (not acknowledged in time, or its instance died).
    /// Always 1 for reader events.
    pub deliveries: u64,
    /// The W3C `traceparent` of the span that added it, if it was traced (see
    /// `pulse::otel`, feature `opentelemetry`) or given one
    /// ([`NewEvent::with_trace_parent`](super::NewEvent::with_trace_parent)).
    pub trace_parent: Option<String>,
    /// The headers it was added with
    /// ([`NewEvent::with_header`](super::NewEvent::with_header)), by name.
    pub headers: std::collections::BTreeMap<String, String>,
}

impl Event {
    /// Builds an event from a raw entry; `Malformed` when `n` or `p` is missing or `n`/`t`
    /// is not UTF-8.
    pub fn from_entry(stream: &str, sink: Option<&str>, entry: StreamEntry) -> Result<Event> {
        let text = |v: &Bytes, what: &'static str| {
            std::str::from_utf8(v)
                .map(str::to_owned)
                .map_err(|_| Error::malformed(what, "not UTF-8"))
        };
        let name = entry
            .field(NAME)
            .ok_or_else(|| Error::malformed("event", "no name field"))?;
        let payload = entry
            .field(PAYLOAD)
            .ok_or_else(|| Error::malformed("event", "no payload field"))?;
        Ok(Event {
            id: entry.id,
            stream: stream.to_owned(),
            sink: sink.map(str::to_owned),
            name: text(name, "event name")?,
            topic: entry
                .field(TOPIC)
                .map(|t| text(t, "event topic"))
                .transpose()?,
            payload: payload.clone(),
            deliveries: 1,
            // Only propagated context: a value that is not text is dropped, not an error.
            trace_parent: entry
                .field(TRACE_PARENT)
                .and_then(|t| std::str::from_utf8(t).ok())
                .map(str::to_owned),
            headers: super::headers::read(&entry),
        })
    }

    /// The value of header `name`, if the event has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// When the event was added (the millisecond part of its ID).
    pub fn created_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(self.id.ms)
    }

    /// Decodes a payload written by [`Stream::add_typed`](super::Stream::add_typed).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        codec::decode("event payload", &self.payload)
    }
}

/// Which events a reader or sink delivers. Filtering is client-side; a sink acknowledges
/// the events it filters out, so they never stay pending.
#[derive(Clone, Default)]
pub enum Filter {
    /// Every event.
    #[default]
    All,
    /// Events whose topic is exactly this.
    Topic(String),
    /// Events whose topic (a dotted subject) matches this pattern: `*` one segment, `>`
    /// one or more trailing segments (see [`SubjectPattern`](super::SubjectPattern)).
    Subject(super::SubjectPattern),
    /// Events whose topic matches this regular expression (unanchored).
    Pattern(regex_lite::Regex),
    /// Events for which the function returns true.
    Custom(Arc<dyn Fn(&Event) -> bool + Send + Sync>),
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::All => f.write_str("All"),
            Filter::Topic(t) => f.debug_tuple("Topic").field(t).finish(),
            Filter::Subject(p) => f.debug_tuple("Subject").field(&p.as_str()).finish(),
            Filter::Pattern(p) => f.debug_tuple("Pattern").field(&p.as_str()).finish(),
            Filter::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl Filter {
    /// A topic pattern filter.
    ///
    /// Errors: [`Error::InvalidArgument`] "topic pattern must be a valid regex: …".
    pub fn pattern(pattern: &str) -> Result<Filter> {
        regex_lite::Regex::new(pattern)
            .map(Filter::Pattern)
            .map_err(|e| {
                Error::InvalidArgument(format!("topic pattern must be a valid regex: {e}"))
            })
    }

    /// A subject pattern filter (`orders.*.created`, `orders.>`).
    ///
    /// Errors: [`Error::InvalidArgument`] naming the subject rule that failed.
    pub fn subject(pattern: &str) -> Result<Filter> {
        super::SubjectPattern::new(pattern).map(Filter::Subject)
    }

    /// A filter from a predicate.
    pub fn custom(f: impl Fn(&Event) -> bool + Send + Sync + 'static) -> Filter {
        Filter::Custom(Arc::new(f))
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Filter::All => true,
            Filter::Topic(t) => event.topic.as_deref() == Some(t.as_str()),
            Filter::Subject(p) => event.topic.as_deref().is_some_and(|t| p.matches(t)),
            Filter::Pattern(p) => event.topic.as_deref().is_some_and(|t| p.is_match(t)),
            Filter::Custom(f) => f(event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &[u8])]) -> StreamEntry {
        StreamEntry {
            id: EntryId::new(1_700_000_000_123, 4),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), Bytes::copy_from_slice(v)))
                .collect(),
        }
    }

    #[test]
    fn entries_become_events_or_typed_errors() {
        let e = Event::from_entry(
            "s",
            Some("g"),
            entry(&[("n", b"ev"), ("p", b"\x00"), ("t", b"top")]),
        )
        .unwrap();
        assert_eq!(
            (e.name.as_str(), e.topic.as_deref(), e.sink.as_deref()),
            ("ev", Some("top"), Some("g"))
        );
        assert_eq!(
            e.created_at(),
            SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123)
        );
        for bad in [
            &[("p", &b"x"[..])][..],
            &[("n", b"x")],
            &[("n", b"\xff"), ("p", b"")],
            &[("x", b"y")],
        ] {
            assert!(matches!(
                Event::from_entry("s", None, entry(bad)),
                Err(Error::Malformed { .. })
            ));
        }
    }

    #[test]
    fn filters() {
        let e = Event::from_entry(
            "s",
            None,
            entry(&[("n", b"ev"), ("p", b""), ("t", b"orders.eu")]),
        )
        .unwrap();
        assert!(Filter::All.matches(&e));
        assert!(Filter::Topic("orders.eu".into()).matches(&e));
        assert!(!Filter::Topic("orders".into()).matches(&e));
        assert!(Filter::pattern(r"^orders\.").unwrap().matches(&e));
        assert!(!Filter::pattern("^x").unwrap().matches(&e));
        assert!(Filter::custom(|e| e.name == "ev").matches(&e));
        let err = Filter::pattern("(").unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.starts_with("topic pattern must be a valid regex: "))
        );
    }
}
