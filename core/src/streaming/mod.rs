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

mod delivery;
mod event;
mod reader;
mod sink;
mod stream;

pub use delivery::EventReceiver;
pub use event::{Event, Filter};
pub use reader::{Reader, ReaderOptions};
pub use sink::{Sink, SinkOptions};
pub use stream::{NewEvent, Start, Stream, StreamOptions};
