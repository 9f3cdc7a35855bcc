//! Stream operations: append, ranges, blocking reads.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::types::{AddOptions, EntryId, StreamBatch, StreamEntry, StreamInfo};
use crate::error::Result;

/// Field name / value pairs of one entry to append.
pub type Fields = Vec<(String, Bytes)>;

/// Operations on streams (append-only logs of entries with increasing IDs).
#[async_trait]
pub trait StreamOps: Send + Sync {
    /// Appends one entry with a backend-generated ID, applying `options` (trim, create,
    /// expiry) in the same atomic step. Returns the new ID, or `None` when
    /// `options.create` is false and the stream does not exist.
    ///
    /// IDs are strictly increasing within a stream, even if the clock goes backwards.
    ///
    /// Errors: [`InvalidArgument`](crate::Error::InvalidArgument) for an entry without
    /// fields; `WrongType`; `Connection`. Conformance: `stream_add_and_range`,
    /// `stream_add_without_create`, `stream_add_trims`, `stream_add_ttl`.
    async fn stream_add(
        &self,
        key: &str,
        fields: Fields,
        options: &AddOptions,
    ) -> Result<Option<EntryId>>;

    /// Appends several entries in order, sending them together. Returns one ID per entry
    /// (`None` entries as for [`stream_add`](Self::stream_add)).
    ///
    /// Not atomic as a whole: on a connection failure a prefix may have been written.
    /// Errors: as `stream_add`. Conformance: `stream_add_batch`.
    async fn stream_add_batch(
        &self,
        key: &str,
        entries: Vec<Fields>,
        options: &AddOptions,
    ) -> Result<Vec<Option<EntryId>>>;

    /// Entries with `start <= id <= end`, oldest first, at most `count` (all when `None`).
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `stream_add_and_range`.
    async fn stream_range(
        &self,
        key: &str,
        start: EntryId,
        end: EntryId,
        count: Option<usize>,
    ) -> Result<Vec<StreamEntry>>;

    /// Length, first entry and last generated ID, or `None` when the stream does not exist.
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `stream_info_tracks_last_id`.
    async fn stream_info(&self, key: &str) -> Result<Option<StreamInfo>>;

    /// Deletes entries by ID; returns how many existed.
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `stream_remove`.
    async fn stream_remove(&self, key: &str, ids: &[EntryId]) -> Result<u64>;

    /// Appends `fields` once per dedup key: in one atomic step, when the key `dedup`
    /// (in the stream's hash tag) holds the ID of an earlier append, returns that ID with
    /// `added: false` and writes nothing; otherwise appends as [`StreamOps::stream_add`]
    /// does (trim, create, TTL) and stores the new ID under `dedup` for `window`. With
    /// `create` off and the stream missing: no ID, nothing stored. Correct under
    /// concurrent appends from many processes: the check and the append are one step.
    ///
    /// Errors: `InvalidArgument` (no fields), `WrongType`, `Connection`.
    /// Conformance: `stream_add_once_dedups_within_its_window`.
    async fn stream_add_once(
        &self,
        key: &str,
        dedup: &str,
        window: Duration,
        fields: Fields,
        options: &AddOptions,
    ) -> Result<AddedOnce>;

    /// Moves entry `id` of stream `from` to stream `to` in one atomic step: appends
    /// `fields` to `to` (created if missing) as a new entry and deletes `id` from `from`,
    /// only if `id` is in `from`. Returns the new entry's ID, or `None` when `id` is not
    /// in `from` (moved already, deleted, never there): nothing is written then. Both keys
    /// share a hash tag. Requeues a dead letter exactly once.
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `stream_move_is_atomic_and_once`.
    async fn stream_move(
        &self,
        from: &str,
        id: EntryId,
        to: &str,
        fields: Fields,
    ) -> Result<Option<EntryId>>;

    /// Reads entries with IDs greater than each stream's cursor, at most `count` per stream.
    ///
    /// With `block: None` (or a zero duration) it returns at once. With `Some(d)` it waits
    /// up to `d` for the first entry on any of the streams and returns as soon as one
    /// arrives (no polling). Missing streams are treated as empty. Only streams with
    /// entries appear in the result. Dropping the returned future cancels the wait
    /// promptly and leaves the backend usable.
    ///
    /// Errors: [`InvalidArgument`](crate::Error::InvalidArgument) for no streams or a zero
    /// count; `WrongType`; `Connection`. Conformance: `read_after_cursor`,
    /// `read_blocks_until_data`, `read_times_out_empty`, `read_many_streams`,
    /// `read_cancel_is_prompt`.
    async fn stream_read(
        &self,
        streams: &[(String, EntryId)],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<StreamBatch>>;
}

/// What [`StreamOps::stream_add_once`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddedOnce {
    /// The entry's ID: the new one, or the earlier append's; `None` when the stream was
    /// missing and not to be created.
    pub id: Option<EntryId>,
    /// Whether this call appended.
    pub added: bool,
}
