//! Key-level and hash read operations.

use async_trait::async_trait;
use bytes::Bytes;

use super::types::{HashChunk, KeyExpiry, Ttl};
use crate::error::Result;

/// Operations on whole keys, whatever their type.
#[async_trait]
pub trait KeyOps: Send + Sync {
    /// True when `key` exists (and has not expired).
    ///
    /// Errors: [`Error::Connection`](crate::Error::Connection). Conformance: `key_exists_and_delete`.
    async fn exists(&self, key: &str) -> Result<bool>;

    /// Deletes the keys; returns how many existed. Deleting a stream deletes its groups.
    ///
    /// Errors: `Connection`. Conformance: `key_exists_and_delete`.
    async fn delete(&self, keys: &[String]) -> Result<u64>;

    /// Sets an expiry on an existing key. [`Ttl::Absolute`] only applies when the key has
    /// no expiry yet; [`Ttl::Sliding`] always (re)sets it. Returns true if the expiry was set.
    /// A missing key is left missing and `false` is returned.
    ///
    /// Errors: `Connection`. Conformance: `expire_absolute_keeps_first_deadline`,
    /// `expire_sliding_extends`, `expired_keys_vanish`.
    async fn expire(&self, key: &str, ttl: Ttl) -> Result<bool>;

    /// The key's current expiry.
    ///
    /// Errors: `Connection`. Conformance: `expire_absolute_keeps_first_deadline`.
    async fn expiry(&self, key: &str) -> Result<KeyExpiry>;

    /// The keys that begin with `prefix` and end with `suffix` (compared byte for byte,
    /// no pattern; the two do not overlap), sorted, without duplicates, at most `limit` of
    /// them — the first `limit` in that order.
    ///
    /// Not a snapshot: a key that exists for the whole call is listed (when within the
    /// limit); one created, deleted or — on a cluster — migrated meanwhile may or may not
    /// be. It walks the whole keyspace in small steps (Redis: `SCAN … MATCH` on every
    /// master, never blocking the server for long), so it is an operator's tool for
    /// listing what exists, not for hot paths.
    ///
    /// Errors: `Connection`, `Denied`. Conformance: `keys_matching_lists_sorted_and_limited`.
    async fn keys_matching(&self, prefix: &str, suffix: &str, limit: usize) -> Result<Vec<String>>;
}

/// Read operations on hashes. Writes to hashes happen only through the atomic map
/// operations of [`AtomicOps`](super::AtomicOps), which keep revisions and notices in step.
#[async_trait]
pub trait HashOps: Send + Sync {
    /// One field of hash `key`; `None` when the field or the hash is missing.
    ///
    /// Errors: [`Error::WrongType`](crate::Error::WrongType) when `key` is not a hash;
    /// `Connection`. Conformance: `hash_reads`, `hash_wrong_type`.
    async fn hash_get(&self, key: &str, field: &str) -> Result<Option<Bytes>>;

    /// Every field of hash `key` (empty when missing), in no particular order, read in one
    /// atomic step: for a map's hash the snapshot reflects every mutation up to its `=rev`
    /// and none after, which is what lets a replica resync from it and then apply the
    /// notices of later revisions.
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `hash_reads`.
    async fn hash_get_all(&self, key: &str) -> Result<Vec<(String, Bytes)>>;

    /// Several fields of hash `key` in one atomic read, in the order asked (`None` for a
    /// missing field or hash). No fields is an empty result, nothing is sent.
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `hash_scan_visits_every_field`,
    /// `hash_wrong_type`.
    async fn hash_get_fields(&self, key: &str, fields: &[&str]) -> Result<Vec<Option<Bytes>>>;

    /// One step of a cursor-based read of hash `key`: start with `None` and pass the
    /// returned [`HashChunk::next`] back until it is `None` (the cursor is opaque, only
    /// meaningful to the backend that returned it). `count` is a hint of how many
    /// fields one step should visit (at least 1); a backend may return more (a small hash,
    /// or an in-process store, may return everything in one step) and never blocks the store
    /// for long on one step whatever the hash's size.
    ///
    /// Each step is atomic on its own, the whole iteration is not. Like Redis `HSCAN`: a
    /// field present with the same value from the start to the end of an iteration is
    /// returned (at least once); a field absent the whole time is not; a field
    /// changed during the iteration may be returned with any value it had meanwhile, or
    /// not at all. Readers that need a consistent view combine it with the map's notices
    /// (see `pulse::rmap`). A missing hash is one empty, final step.
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `hash_scan_visits_every_field`,
    /// `hash_scan_under_writes`, `hash_wrong_type`.
    async fn hash_scan(&self, key: &str, cursor: Option<&str>, count: usize) -> Result<HashChunk>;

    /// True when the field exists.
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `hash_reads`.
    async fn hash_exists(&self, key: &str, field: &str) -> Result<bool>;

    /// Number of fields (0 when missing).
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `hash_reads`.
    async fn hash_len(&self, key: &str) -> Result<u64>;
}
