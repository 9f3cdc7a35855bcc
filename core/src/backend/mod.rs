//! The backend contract: what Pulse needs from a store, as small object-safe async traits.
//!
//! The library holds a backend as `Arc<dyn Backend>`. [`Backend`] combines one trait per
//! capability family:
//!
//! | Trait | Capability |
//! |---|---|
//! | [`KeyOps`] | existence, deletion, absolute and sliding expiry of any key |
//! | [`HashOps`] | reads of hashes (map content) |
//! | [`StreamOps`] | append (trim, create, TTL in one step), ranges, blocking multi-stream reads |
//! | [`GroupOps`] | consumer groups: create, blocking group reads, ack, claim, pending, consumers |
//! | [`PubSubOps`] | publish, and subscriptions that report connection loss and recovery |
//! | [`AtomicOps`] | typed atomic operations: map mutations, pool admission, leases |
//!
//! # Contract
//! - Every method documents its atomicity, ordering and error variants; the conformance suite
//!   (`pulse-conformance`) checks each one, and a backend is correct when it passes it.
//! - Keys are opaque strings built by [`crate::keys::Keyspace`]; backends never interpret
//!   them. Everything one atomic operation touches shares a Redis Cluster hash tag.
//! - A failure to reach the store is [`Error::Connection`](crate::Error::Connection): the
//!   operation may or may not have been applied. A key of the wrong type is
//!   [`Error::WrongType`](crate::Error::WrongType). Backends never panic on stored data.
//! - Time-dependent behaviour (idle times, expiry) uses the backend's clock; callers pass
//!   "now" explicitly where the comparison is theirs (pool admission).

mod atomic;
mod ext;
mod group;
mod keyspace;
mod pubsub;
mod stream;
mod types;

pub use atomic::{
    new_epoch, AtomicOps, DeleteCondition, DeleteOutcome, IncrementOutcome, ListEdit, ListOutcome,
    MapTarget, MapWrite, ResetOutcome, SetCondition, SetOutcome,
};
pub use ext::stream_last_id;
pub use group::GroupOps;
pub use keyspace::{HashOps, KeyOps};
pub use pubsub::{PubSubEvent, PubSubOps, Subscription};
pub use stream::{Fields, StreamOps};
pub use types::{
    AddOptions, AutoClaim, ConsumerInfo, EntryId, GroupStart, KeyExpiry, PendingEntry,
    PendingSummary, Revision, StreamBatch, StreamEntry, StreamInfo, Ttl,
};

/// A complete backend: every capability trait, usable as `Arc<dyn Backend>`.
pub trait Backend:
    KeyOps + HashOps + StreamOps + GroupOps + PubSubOps + AtomicOps + std::fmt::Debug + 'static
{
    /// A short name for logs and reports, e.g. `"memory"` or `"redis"`.
    fn kind(&self) -> &'static str;
}
