//! Event streams: durable, ordered logs of events with two ways to consume them.
//!
//! - A [`Reader`] gives every subscriber every event, from its own in-memory cursor per
//!   stream; readers never acknowledge anything.
//! - A [`Sink`] is a consumer group: all instances of a sink (same name, any process) share
//!   one cursor, each event goes to one instance, which acknowledges it; unacknowledged
//!   events are redelivered (at-least-once).
//!
//! Both read several streams at once, take streams in and out at run time by name, filter
//! by topic (exact, pattern, or any predicate), and close promptly.
//!
//! Events may carry headers, a dedup key (an idempotent add) or a due time (a delayed
//! event, [`Stream::add_delayed`]: held beside the stream, invisible until due, then
//! appended in due order by the mover that the stream's readers and sinks run, one per
//! stream across processes). Sinks bound redelivery (`max_deliveries`, back-off, `nack`,
//! `fail`) and move what exceeds it to their [`DeadLetters`].
//!
//! ```
//! use std::sync::Arc;
//! use pulse::streaming::{ReaderOptions, SinkOptions, Start, Stream, StreamOptions};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulse::Result<()> {
//! let backend = Arc::new(pulse_memory::MemoryBackend::new());
//! let stream = Stream::new(backend, "orders", StreamOptions::default())?;
//! let sink = stream.new_sink("billing", SinkOptions::default().with_start(Start::Oldest)).await?;
//! let mut events = sink.subscribe()?;
//! stream.add("created", "order #1").await?;
//! let event = events.recv().await.expect("an event");
//! assert_eq!((event.name.as_str(), &event.payload[..]), ("created", &b"order #1"[..]));
//! sink.ack(&event).await?;
//! sink.close().await?;
//! # Ok(()) }
//! ```

mod dead_letters;
mod dedup;
mod delayed;
mod delivery;
mod event;
mod headers;
mod health;
mod liveness;
mod mover;
mod pending;
mod reader;
mod redelivery;
mod sink;
mod sink_options;
mod sink_reads;
mod state;
mod stream;
mod subject;

pub use dead_letters::{DeadLetter, DeadLetters};
pub use dedup::MAX_DEDUP_KEY;
pub use delayed::{DelayedInfo, Due, Scheduled, MAX_DELAY};
pub use delivery::EventReceiver;
pub use event::{Event, Filter};
pub use headers::{MAX_HEADERS, MAX_HEADERS_TOTAL, MAX_HEADER_NAME, MAX_HEADER_VALUE};
pub use health::ReadHealth;
pub use pending::PendingEvent;
pub use reader::{Reader, ReaderOptions};
pub use sink::Sink;
pub use sink_options::{RedeliveryBackoff, SinkOptions};
pub use state::{SinkState, StreamState};
pub use stream::{NewEvent, Start, Stream, StreamOptions};
pub use subject::{validate_subject, SubjectPattern};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn option_defaults_are_documented_values() {
        let r = ReaderOptions::default();
        assert_eq!(
            (r.block, r.max_polled, r.buffer, r.start),
            (Duration::from_secs(5), 1000, 1000, Start::Newest)
        );
        let s = SinkOptions::default();
        assert_eq!(
            (s.block, s.max_polled, s.buffer, s.start),
            (Duration::from_secs(5), 1000, 1000, Start::Newest)
        );
        assert_eq!(
            (s.ack_grace, s.check_interval, s.no_ack),
            (Duration::from_secs(20), Duration::from_secs(5), false)
        );
        let st = StreamOptions::default();
        assert_eq!((st.max_len, st.ttl), (None, None));
    }
}
