//! # Pulse
//!
//! Building blocks for event-driven distributed systems on Redis:
//! - **replicated maps** — a map mirrored in memory on every process, local reads, atomic
//!   writes, change notifications;
//! - **event streams** — readers and consumer-group sinks with ack and redelivery;
//! - **a keyed worker pool** — long-running jobs routed by key to exactly one worker.
//!
//! Everything is written against the [`backend::Backend`] trait. Two implementations exist:
//! `pulse-redis` (production) and `pulse-memory` (in-process: the embedded default and the
//! way to unit-test services). Both pass the shared conformance suite `pulse-conformance`,
//! which any third-party backend can run against itself.
//!
//! This crate holds the building blocks — [`rmap`], [`streaming`], [`pool`] — and what they
//! stand on: the backend contract ([`backend`]), the error type ([`Error`]), the key layout
//! ([`keys`]) and the wire format of internal messages ([`codec`]).

pub mod backend;
pub mod codec;
pub mod error;
mod ids;
pub mod keys;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub mod pool;
pub mod rmap;
pub mod rpc;
mod spans;
pub mod streaming;
pub mod telemetry;

pub use backend::Backend;

/// The attribute that lets a trait have `async fn`s behind `dyn`: Pulse's traits you
/// implement ([`pool::JobHandler`], [`pool::Producer`], the [`backend`] capability traits)
/// use it, and so does your `impl` block — write `#[pulse::async_trait]` on it, with no
/// dependency of your own on the `async-trait` crate.
pub use async_trait::async_trait;

/// The capability traits, for `use pulse::prelude::*;` (their methods need them in scope).
pub mod prelude {
    pub use crate::backend::{AtomicOps, Backend, GroupOps, HashOps, KeyOps, PubSubOps, StreamOps};
}
pub use error::{Denial, Error, Refusal, Result};
