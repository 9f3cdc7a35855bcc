//! Typed atomic operations ("scripts"): each reads, conditionally mutates and publishes in
//! one indivisible step. (Pool admission needs no operation of its own: it is a
//! set-if-absent of the job record, see `docs/ARCHITECTURE.md`.)
//!
//! # Map mutations
//! A replicated map lives in one hash ([`MapTarget::hash`]). Besides user keys the hash holds
//! three bookkeeping fields: `=epoch` (generation, chosen from [`MapTarget::epoch_seed`]
//! when the hash is created), `=rev` (revision, +1 per committed mutation) and `=kind`
//! (`set`, `del`, `reset` or `destroy`: the last mutation's kind). Every mutation that
//! changes the map, in one step:
//! 1. applies the change,
//! 2. bumps `=rev` and records `=kind`,
//! 3. publishes a [`MapNotice`](crate::codec::MapNotice) frame on [`MapTarget::channel`]
//!    (the sets of one [`map_set_many`](AtomicOps::map_set_many) step may share one batch
//!    frame, their revisions consecutive; a value that would take a frame past
//!    [`NOTICE_VALUE_BUDGET`](crate::codec::NOTICE_VALUE_BUDGET) travels as
//!    [`MapChange::Changed`](crate::codec::MapChange::Changed), key only, so no frame
//!    outgrows what pub/sub can carry),
//! 4. applies [`MapTarget::ttl`] to the hash.
//!
//! A mutation whose condition fails changes nothing and publishes nothing, but still applies
//! the TTL (a sliding TTL is refreshed by any write attempt). Reset re-creates the hash
//! holding only the bookkeeping fields (a *tombstone*), keeping the epoch and revision
//! sequence; a new absolute TTL window starts with it. Destroy deletes the hash (publishing
//! `Destroy` if it existed): nothing is left behind, and a later write starts a new
//! generation with a new epoch.
//!
//! Keys are validated with [`validate_map_key`](crate::keys::validate_map_key) before
//! anything is sent ([`Error::InvalidKey`](crate::Error::InvalidKey)).

use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

use super::types::{Revision, Ttl};
use crate::error::Result;

/// The map a mutation applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapTarget {
    /// The hash holding the map.
    pub hash: String,
    /// The channel notices are published on.
    pub channel: String,
    /// Expiry applied with every mutation.
    pub ttl: Option<Ttl>,
    /// Epoch used if this mutation creates the hash: non-zero and below 2^53.
    pub epoch_seed: u64,
    /// Largest value a list edit may leave at a key, in bytes (the size of a list's
    /// result is only known inside the atomic operation; callers check the values of
    /// sets themselves). Default: no limit.
    pub max_value: usize,
}

impl MapTarget {
    /// A target with no TTL and a fresh random epoch seed.
    pub fn new(hash: impl Into<String>, channel: impl Into<String>) -> Self {
        MapTarget {
            hash: hash.into(),
            channel: channel.into(),
            ttl: None,
            epoch_seed: new_epoch(),
            max_value: usize::MAX,
        }
    }

    /// Sets [`MapTarget::max_value`].
    pub fn with_max_value(mut self, bytes: usize) -> Self {
        self.max_value = bytes;
        self
    }

    /// Sets the TTL applied with every mutation.
    pub fn with_ttl(mut self, ttl: Option<Ttl>) -> Self {
        self.ttl = ttl;
        self
    }

    /// This target with a fresh random epoch seed: a mutation that creates the hash (first
    /// write, or after destroy or expiry) then starts a generation no earlier one used.
    pub fn with_fresh_epoch(&self) -> Self {
        MapTarget {
            epoch_seed: new_epoch(),
            ..self.clone()
        }
    }
}

/// A fresh random epoch: non-zero, below 2^53 (exact in a Lua number).
pub fn new_epoch() -> u64 {
    (crate::ids::random_u64() & ((1 << 53) - 1)).max(1)
}

/// One write of a batch ([`AtomicOps::map_set_many`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapWrite {
    /// The map key.
    pub key: String,
    /// The value to store.
    pub value: Bytes,
    /// When the write applies.
    pub condition: SetCondition,
}

impl MapWrite {
    /// A write of `value` at `key` when `condition` holds.
    pub fn new(key: &str, value: Bytes, condition: SetCondition) -> Self {
        MapWrite {
            key: key.to_owned(),
            value,
            condition,
        }
    }

    /// Validates every key of a batch ([`validate_map_key`](crate::keys::validate_map_key)),
    /// so a batch with one bad key sends nothing.
    pub fn validate_all(writes: &[MapWrite]) -> Result<()> {
        writes
            .iter()
            .try_for_each(|w| crate::keys::validate_map_key(&w.key))
    }
}

/// When a set applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetCondition {
    /// Always.
    Always,
    /// Only if the key is absent.
    IfAbsent,
    /// Only if the key currently holds exactly this value (an absent key never matches).
    IfEqual(Bytes),
}

/// Result of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetOutcome {
    /// The value before the operation (`None`: absent; `Some("")`: empty).
    pub previous: Option<Bytes>,
    /// Whether the value was written.
    pub written: bool,
    /// The map's revision after the operation.
    pub revision: Revision,
}

/// When a delete applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteCondition {
    /// Whenever the key exists.
    Always,
    /// Only if the key currently holds exactly this value.
    IfEqual(Bytes),
}

/// Result of a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The value before the operation.
    pub previous: Option<Bytes>,
    /// Whether the key was deleted.
    pub deleted: bool,
    /// The map's revision after the operation.
    pub revision: Revision,
}

/// Result of an increment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncrementOutcome {
    /// The value after the increment.
    pub value: i64,
    /// The map's revision after the operation.
    pub revision: Revision,
}

/// A list edit (list values are encoded with [`encode_list`](crate::codec::encode_list)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListEdit {
    /// Append every item (duplicates kept).
    Append,
    /// Append the items not already present (and each only once).
    AppendUnique,
    /// Remove every occurrence of each item; delete the key when nothing is left.
    Remove,
}

/// Result of a list edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOutcome {
    /// The list after the edit; `None` when the key is absent afterwards.
    pub list: Option<Vec<Bytes>>,
    /// Whether the stored value changed (a no-op edit publishes nothing).
    pub changed: bool,
    /// The map's revision after the operation.
    pub revision: Revision,
}

/// Result of a reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetOutcome {
    /// Whether the map was cleared.
    pub reset: bool,
    /// The map's revision after the operation.
    pub revision: Revision,
}

/// Typed atomic operations.
#[async_trait]
pub trait AtomicOps: Send + Sync {
    /// Sets `key` to `value` if `condition` holds. Publishes `Set` when written.
    ///
    /// Errors: `InvalidKey`, `WrongType`, `Connection`. Conformance: `map_set_*`,
    /// `map_concurrent_test_and_set_one_winner`, `map_notices_in_commit_order`.
    async fn map_set(
        &self,
        map: &MapTarget,
        key: &str,
        value: Bytes,
        condition: SetCondition,
    ) -> Result<SetOutcome>;

    /// Applies `writes` in order, each exactly as [`map_set`](Self::map_set) would (its own
    /// condition, revision bump and `Set` notice), and returns one outcome per write. Every
    /// key is validated before anything is sent.
    ///
    /// The default runs `map_set` one write after another. Both built-in backends apply a
    /// batch in one step (one script call, or one critical section), which is how
    /// [`Map`](crate::rmap::Map) turns concurrent writes into few round trips; a backend may
    /// also split a large batch into several steps. On an error, writes before the failing
    /// step may have been applied.
    ///
    /// Errors: as `map_set`. Conformance: `map_set_many_in_order`.
    async fn map_set_many(
        &self,
        map: &MapTarget,
        writes: Vec<MapWrite>,
    ) -> Result<Vec<SetOutcome>> {
        MapWrite::validate_all(&writes)?;
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            out.push(self.map_set(map, &w.key, w.value, w.condition).await?);
        }
        Ok(out)
    }

    /// Deletes `key` if present and `condition` holds. Publishes `Delete` when deleted.
    ///
    /// Errors: `InvalidKey`, `WrongType`, `Connection`. Conformance: `map_delete_*`.
    async fn map_delete(
        &self,
        map: &MapTarget,
        key: &str,
        condition: DeleteCondition,
    ) -> Result<DeleteOutcome>;

    /// Adds `delta` to the decimal integer at `key` (absent = 0). Publishes `Set` with the
    /// new decimal value.
    ///
    /// Errors: [`InvalidValue`](crate::Error::InvalidValue) when the value is not a 64-bit
    /// decimal integer or the result overflows (value unchanged); `InvalidKey`, `WrongType`,
    /// `Connection`. Conformance: `map_increment`, `map_increment_invalid`.
    async fn map_increment(
        &self,
        map: &MapTarget,
        key: &str,
        delta: i64,
    ) -> Result<IncrementOutcome>;

    /// Edits the list at `key` (absent = empty). Publishes `Set` with the new encoded list,
    /// or `Delete` when [`ListEdit::Remove`] empties it; nothing when nothing changed.
    ///
    /// Errors: `InvalidValue` when the stored value is not a list (unchanged);
    /// [`PayloadTooLarge`](crate::Error::PayloadTooLarge) when the resulting list would be
    /// larger than [`MapTarget::max_value`] (unchanged); `InvalidKey`, `WrongType`,
    /// `Connection`. Conformance: `map_list_*`, `map_list_result_size_is_bounded`.
    async fn map_edit_list(
        &self,
        map: &MapTarget,
        key: &str,
        edit: ListEdit,
        items: Vec<Bytes>,
    ) -> Result<ListOutcome>;

    /// Clears every user key if each `(key, value)` in `tests` currently holds (an absent
    /// key never matches; no tests = unconditional). A reset leaves a tombstone
    /// (`=kind` = `reset`) and publishes `Reset`; with `destroy` the hash is deleted and
    /// `Destroy` is published (nothing when it did not exist).
    ///
    /// Errors: `InvalidKey`, `WrongType`, `Connection`. Conformance: `map_reset_*`.
    async fn map_reset(
        &self,
        map: &MapTarget,
        tests: Vec<(String, Bytes)>,
        destroy: bool,
    ) -> Result<ResetOutcome>;

    /// Acquires or renews the lease `key` for `holder` for `ttl`: succeeds when the lease is
    /// free (never taken or expired) or already held by `holder`. Expiry is kept by the
    /// backend's clock, so holders need no synchronised clocks.
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `lease_exclusive`, `lease_expires`.
    async fn lease_acquire(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool>;

    /// Releases the lease if `holder` holds it; returns whether it did.
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `lease_exclusive`.
    async fn lease_release(&self, key: &str, holder: &str) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    // `map_set_many` is left out, so the mock runs the trait's default.
    mockall::mock! {
        Atomic {}
        #[async_trait]
        impl AtomicOps for Atomic {
            async fn map_set(&self, map: &MapTarget, key: &str, value: Bytes, condition: SetCondition)
                -> Result<SetOutcome>;
            async fn map_delete(&self, map: &MapTarget, key: &str, condition: DeleteCondition)
                -> Result<DeleteOutcome>;
            async fn map_increment(&self, map: &MapTarget, key: &str, delta: i64)
                -> Result<IncrementOutcome>;
            async fn map_edit_list(&self, map: &MapTarget, key: &str, edit: ListEdit, items: Vec<Bytes>)
                -> Result<ListOutcome>;
            async fn map_reset(&self, map: &MapTarget, tests: Vec<(String, Bytes)>, destroy: bool)
                -> Result<ResetOutcome>;
            async fn lease_acquire(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool>;
            async fn lease_release(&self, key: &str, holder: &str) -> Result<bool>;
        }
    }

    fn write(key: &str) -> MapWrite {
        MapWrite {
            key: key.into(),
            value: Bytes::from(key.to_owned()),
            condition: SetCondition::Always,
        }
    }

    #[tokio::test]
    async fn the_default_batch_sets_each_write_in_order() {
        let mut ops = MockAtomic::new();
        let mut seq = mockall::Sequence::new();
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            ops.expect_map_set()
                .withf(move |_, k, v, _| k == key && v.as_ref() == key.as_bytes())
                .times(1)
                .in_sequence(&mut seq)
                .returning(move |_, _, _, _| {
                    Ok(SetOutcome {
                        previous: None,
                        written: true,
                        revision: Revision {
                            epoch: 1,
                            rev: i as u64 + 1,
                        },
                    })
                });
        }
        let map = MapTarget::new("h", "c");
        let out = ops
            .map_set_many(&map, vec![write("a"), write("b"), write("c")])
            .await
            .unwrap();
        let revs: Vec<u64> = out.iter().map(|o| o.revision.rev).collect();
        assert_eq!(revs, [1, 2, 3]);
    }

    #[tokio::test]
    async fn the_default_batch_sends_nothing_when_a_key_is_invalid() {
        let mut ops = MockAtomic::new();
        ops.expect_map_set().never();
        let map = MapTarget::new("h", "c");
        let err = ops
            .map_set_many(&map, vec![write("a"), write("=rev")])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    }
}
