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

    /// Keeps `fields` to append to a stream once due: held as `id` (unique among the
    /// stream's delayed events; ties in due time are released in `id` order) with due time
    /// `due_ms` (milliseconds since the epoch, by the backend's clock) under the keys
    /// `index` (due times) and `data` (fields), both in the stream's hash tag. Returns the
    /// earliest due time held before the add (`None`: none), so the caller can tell whether
    /// this add moved the earliest due time forward.
    ///
    /// Errors: `InvalidArgument` (no fields), `WrongType`, `Connection`.
    /// Conformance: `delayed_events_are_released_when_due_in_due_order`.
    async fn delay_add(
        &self,
        index: &str,
        data: &str,
        id: &str,
        due_ms: u64,
        fields: Fields,
    ) -> Result<Option<u64>>;

    /// Appends to stream `key`, in due order, up to `limit` of the delayed events held
    /// under `index`/`data` that are due by the backend's clock, as [`StreamOps::stream_add`]
    /// would with `options` (trim, TTL; the stream is created when missing, whatever
    /// `options.create` says); each is appended and forgotten in one atomic step, so a
    /// release that fails or races another one neither loses nor duplicates an event.
    /// An entry that cannot be released (data missing or not a [`pack_fields`] packing:
    /// foreign data under our keys) is reported in [`DelayRelease::unreadable`] and
    /// parked, never released and never in the way: its data stays where it was, and an
    /// index entry without data is dropped.
    ///
    /// Errors: `InvalidArgument` (zero limit), `WrongType`, `Connection`.
    /// Conformance: `delayed_events_are_released_when_due_in_due_order`.
    async fn delay_release(
        &self,
        key: &str,
        index: &str,
        data: &str,
        limit: usize,
        options: &AddOptions,
    ) -> Result<DelayRelease>;

    /// How many delayed events are held under `index` and when the earliest readable one
    /// is due (ms since the epoch): a cheap look, one round trip, for an idle mover's check.
    ///
    /// Errors: `WrongType`, `Connection`.
    /// Conformance: `delayed_events_are_released_when_due_in_due_order`.
    async fn delay_info(&self, index: &str) -> Result<DelayInfo>;

    /// Forgets the delayed event `id` held under `index`/`data` before it is released, in
    /// one atomic step; returns whether it was held (false: released already, cancelled,
    /// never added).
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `delayed_events_can_be_cancelled`.
    async fn delay_cancel(&self, index: &str, data: &str, id: &str) -> Result<bool>;

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

/// What [`StreamOps::delay_release`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelayRelease {
    /// The stream IDs of the events released, in due order.
    pub released: Vec<EntryId>,
    /// The due time of the earliest event still held (ms since the epoch), if any.
    pub next_due_ms: Option<u64>,
    /// The backend's clock at the release (ms since the epoch).
    pub now_ms: u64,
    /// IDs of due entries that could not be released (see [`StreamOps::delay_release`]).
    pub unreadable: Vec<String>,
}

/// What [`StreamOps::delay_info`] sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayInfo {
    /// Delayed events held, unreadable ones included.
    pub count: u64,
    /// The due time of the earliest readable one (ms since the epoch), if any.
    pub next_due_ms: Option<u64>,
}

/// Packs fields for [`StreamOps::delay_add`]'s `data` as a backend may store them: per
/// field, a 4-byte big-endian length and the name, then the same for the value.
pub fn pack_fields(fields: &Fields) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        for part in [name.as_bytes(), value.as_ref()] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// Unpacks [`pack_fields`]' output; `Malformed` when it is not such a packing.
pub fn unpack_fields(mut packed: &[u8]) -> Result<Fields> {
    let bad = || crate::Error::malformed("delayed event", "not a packed field list");
    let take = |packed: &mut &[u8]| -> Result<Bytes> {
        let (len, rest) = packed.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_be_bytes(*len) as usize;
        let part = rest.get(..len).ok_or_else(bad)?;
        *packed = &rest[len..];
        Ok(Bytes::copy_from_slice(part))
    };
    let mut fields = Vec::new();
    while !packed.is_empty() {
        let name = take(&mut packed)?;
        let value = take(&mut packed)?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| bad())?;
        fields.push((name, value));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_fields_round_trip_and_garbage_is_malformed() {
        let fields: Fields = vec![
            ("n".into(), Bytes::from_static(b"e")),
            ("p".into(), Bytes::from_static(b"\x00\xff")),
            ("empty".into(), Bytes::new()),
        ];
        assert_eq!(unpack_fields(&pack_fields(&fields)).ok(), Some(fields));
        for garbage in [
            &b"\x00\x00"[..],
            &b"\x00\x00\x00\x05ab"[..],
            &b"\x00\x00\x00\x01n"[..],
        ] {
            assert!(unpack_fields(garbage).is_err(), "{garbage:?}");
        }
    }
}
