//! Consumer-group operations: shared cursors, acknowledgement, pending lists, claiming.

use std::time::Duration;

use async_trait::async_trait;

use super::types::{
    AutoClaim, ConsumerInfo, EntryId, GroupInfo, GroupStart, PendingEntry, PendingSummary,
    StreamBatch, StreamEntry,
};
use crate::error::Result;

/// Consumer groups on streams.
///
/// Unless stated otherwise, a method that addresses a group fails with
/// [`Error::NoGroup`](crate::Error::NoGroup) when the stream or the group does not exist.
#[async_trait]
pub trait GroupOps: Send + Sync {
    /// Creates group `group` on stream `key`, starting at `start`. With `create_stream`, a
    /// missing stream is created empty; otherwise a missing stream is `NoGroup`.
    /// Returns `true` if created, `false` if the group already existed (its position is
    /// left unchanged).
    ///
    /// Errors: `NoGroup`, `WrongType`, `Connection`. Conformance: `group_create_positions`,
    /// `group_create_existing`.
    async fn group_create(
        &self,
        key: &str,
        group: &str,
        start: GroupStart,
        create_stream: bool,
    ) -> Result<bool>;

    /// Delivers up to `count` never-delivered entries per stream to `consumer` (created on
    /// first use), advancing the group's cursor. Unless `no_ack`, delivered entries enter
    /// the group's pending list until acknowledged. Blocking behaves as for
    /// [`StreamOps::stream_read`](super::StreamOps::stream_read); a stream or group deleted
    /// while blocked ends the wait with `NoGroup`.
    ///
    /// Errors: `InvalidArgument` (no streams, zero count), `NoGroup`, `WrongType`,
    /// `Connection`. Conformance: `group_read_shares_entries`, `group_read_blocks`,
    /// `group_read_no_group`, `group_read_no_ack`.
    async fn group_read(
        &self,
        group: &str,
        consumer: &str,
        keys: &[String],
        count: usize,
        block: Option<Duration>,
        no_ack: bool,
    ) -> Result<Vec<StreamBatch>>;

    /// Acknowledges entries; returns how many were pending. Unknown IDs, a missing group or
    /// a missing stream count as zero (not an error).
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `group_ack`.
    async fn group_ack(&self, key: &str, group: &str, ids: &[EntryId]) -> Result<u64>;

    /// Scans the pending list from `start` and transfers to `consumer` up to `count` entries
    /// idle for at least `min_idle`, resetting their idle time and counting a delivery.
    ///
    /// Errors: `InvalidArgument` (zero count), `NoGroup`, `Connection`.
    /// Conformance: `group_claim_idle`, `group_claim_reports_deleted`.
    async fn group_claim_idle(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        start: EntryId,
        count: usize,
    ) -> Result<AutoClaim>;

    /// Transfers the listed pending entries idle for at least `min_idle` to `consumer` and
    /// returns those that still exist. IDs not pending (or not idle enough) are skipped.
    ///
    /// Errors: `NoGroup`, `Connection`. Conformance: `group_claim_specific`.
    async fn group_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        ids: &[EntryId],
    ) -> Result<Vec<StreamEntry>>;

    /// Gives the pending entries `ids` to `consumer` with their idle time set to `idle`,
    /// leaving their delivery counts unchanged (`XCLAIM … IDLE … JUSTID`): how a sink
    /// defers the redelivery of an event it negatively acknowledged. IDs not pending are
    /// skipped; returns those changed.
    ///
    /// Errors: `NoGroup`, `Connection`. Conformance: `group_set_idle_and_dead_letter`.
    async fn group_set_idle(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        ids: &[EntryId],
        idle: Duration,
    ) -> Result<Vec<EntryId>>;

    /// Moves pending entry `id` of `group` on stream `key` to the dead-letter stream
    /// `dead` in one atomic step: appends `fields` to `dead` (created if missing) and
    /// acknowledges `id`, only if `id` is still pending in the group. Returns the dead
    /// letter's ID, or `None` when `id` was not pending (acknowledged, or moved already):
    /// nothing is written then, so a mover that crashed and tries again never duplicates.
    /// Both keys share a hash tag. The entry itself stays in `key` for other groups.
    ///
    /// Errors: `NoGroup`, `WrongType` (`dead` holds something else), `Connection`.
    /// Conformance: `group_set_idle_and_dead_letter`.
    async fn group_dead_letter(
        &self,
        key: &str,
        group: &str,
        id: EntryId,
        dead: &str,
        fields: super::stream::Fields,
    ) -> Result<Option<EntryId>>;

    /// Summary of the group's pending list.
    ///
    /// Errors: `NoGroup`, `Connection`. Conformance: `group_pending`.
    async fn group_pending_summary(&self, key: &str, group: &str) -> Result<PendingSummary>;

    /// Pending entries with IDs `>= start`, oldest first, at most `count`, optionally only
    /// those of one consumer.
    ///
    /// Errors: `NoGroup`, `Connection`. Conformance: `group_pending`.
    async fn group_pending(
        &self,
        key: &str,
        group: &str,
        consumer: Option<&str>,
        start: EntryId,
        count: usize,
    ) -> Result<Vec<PendingEntry>>;

    /// The group's consumers, sorted by name.
    ///
    /// Errors: `NoGroup`, `Connection`. Conformance: `group_consumers_lifecycle`.
    async fn group_consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>>;

    /// Registers a consumer; returns `false` if it already existed.
    ///
    /// Errors: `NoGroup`, `Connection`. Conformance: `group_consumers_lifecycle`.
    async fn group_create_consumer(&self, key: &str, group: &str, consumer: &str) -> Result<bool>;

    /// Deletes a consumer and its pending entries (which are then lost to the group);
    /// returns how many pending entries it had. A missing consumer returns 0.
    ///
    /// Errors: `NoGroup`, `Connection`. Conformance: `group_consumers_lifecycle`.
    async fn group_delete_consumer(&self, key: &str, group: &str, consumer: &str) -> Result<u64>;

    /// The stream's consumer groups, sorted by name; empty when the stream does not exist.
    ///
    /// Errors: `WrongType`, `Connection`. Conformance: `group_list_reports_each_group`.
    async fn group_list(&self, key: &str) -> Result<Vec<GroupInfo>>;

    /// Destroys the group (cursor and pending list); returns `false` when the group or the
    /// stream did not exist.
    ///
    /// Errors: `Connection`. Conformance: `group_destroy`.
    async fn group_destroy(&self, key: &str, group: &str) -> Result<bool>;
}
