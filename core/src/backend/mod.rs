//! The backend contract: what Pulse needs from a store, as small object-safe async traits.
//!
//! The library holds a backend as `Arc<dyn Backend>`. [`Backend`] combines one trait per
//! capability family (a backend implements each with `#[pulse::async_trait]` on its `impl`
//! block; the signatures rustdoc shows are that attribute's expansion of `async fn`):
//!
//! | Trait | Capability |
//! |---|---|
//! | [`KeyOps`] | existence, deletion, absolute and sliding expiry of any key; listing keys by prefix and suffix |
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
//! - **Which error when.** [`Error::Connection`](crate::Error::Connection): the store could
//!   not be reached, the connection broke, or no reply came in time — the operation *may or
//!   may not have been applied*, and callers treat it so (the library retries only writes
//!   that are safe to repeat). [`Error::Refused`](crate::Error::Refused): the store
//!   answered with a refusal — out of memory, too many clients, read-only, busy (a
//!   [`Refusal`](crate::Refusal)) — and the operation was *not* applied; a backend that
//!   cannot promise that for a failure reports `Connection` instead.
//!   [`Error::Denied`](crate::Error::Denied): wrong or missing credentials, or an ACL that
//!   forbids the operation (a [`Denial`](crate::Denial)); nothing applied, never retried.
//!   [`Error::Backend`](crate::Error::Backend): any other error the store answered with (an
//!   unsupported command, an ACL denial inside a script); callers must not assume it was
//!   applied or not. [`Error::is_retryable`](crate::Error::is_retryable) says which
//!   variants may succeed when sent again. [`Error::WrongType`](crate::Error::WrongType): a key holds another type;
//!   [`Error::InvalidValue`](crate::Error::InvalidValue) /
//!   [`Error::Malformed`](crate::Error::Malformed): stored data cannot be used. Backends
//!   never panic on stored data. The suite's `*_under_call_faults` cases run the building
//!   blocks over a wrapper that injects both kinds of `Connection` failure.
//! - **Time.** Idle times and expiry use the backend's own clock. Stream entry IDs carry
//!   the store's wall-clock time: [`EntryId::ms`] is milliseconds since the Unix epoch when
//!   the entry was added (within minutes of true time), [`EntryId::seq`] orders entries of
//!   one millisecond, and IDs stay strictly increasing if the clock steps back. Event times
//!   ([`Event::created_at`](crate::streaming::Event::created_at)) and
//!   [`Start::At`](crate::streaming::Start::At) depend on it, so a store with
//!   sequence-numbered IDs must map them onto time (conformance:
//!   `stream_ids_carry_wall_clock_time`).
//! - **Map bookkeeping.** Besides user keys a map's hash holds `=epoch` and `=rev`, each an
//!   ASCII decimal integer (no sign, no leading zeros, `=epoch` below 2^53), and `=kind`,
//!   one of the four words `set`, `del`, `reset`, `destroy` (see [`AtomicOps`]).
//! - **Snapshots and notices agree.** [`HashOps::hash_get_all`] is an atomic snapshot: it
//!   reflects every mutation whose notice carries a revision up to the snapshot's `=rev`
//!   and none after. A notice is delivered to subscribers only once its write is visible
//!   to every reader, so a subscriber that reads after a notice sees the write.

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
pub use stream::{
    pack_fields, unpack_fields, AddedOnce, DelayInfo, DelayRelease, Fields, StreamOps,
};
pub use types::{
    AddOptions, AutoClaim, ConsumerInfo, EntryId, GroupInfo, GroupStart, HashChunk, KeyExpiry,
    PendingEntry, PendingSummary, Revision, StreamBatch, StreamEntry, StreamInfo, Ttl,
};

/// A complete backend: every capability trait, usable as `Arc<dyn Backend>`.
pub trait Backend:
    KeyOps + HashOps + StreamOps + GroupOps + PubSubOps + AtomicOps + std::fmt::Debug + 'static
{
    /// A short name for logs and reports, e.g. `"memory"` or `"redis"`.
    fn kind(&self) -> &'static str;
}
