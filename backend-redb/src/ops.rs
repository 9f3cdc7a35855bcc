//! The contract's traits on [`RedbBackend`]: each call runs on the journaled memory state;
//! one that may change something then waits until its changes are committed
//! ([`RedbBackend::written`]); reads and pub/sub never wait.

use std::time::Duration;

use bytes::Bytes;
use pulse::{
    async_trait,
    backend::{
        AddOptions, AddedOnce, AtomicOps, AutoClaim, ConsumerInfo, DelayInfo, DelayRelease,
        DeleteCondition, DeleteOutcome, EntryId, Fields, GroupInfo, GroupOps, GroupStart,
        HashChunk, HashOps, IncrementOutcome, KeyExpiry, KeyOps, ListEdit, ListOutcome, MapTarget,
        MapWrite, PendingEntry, PendingSummary, PubSubOps, ResetOutcome, SetCondition, SetOutcome,
        StreamBatch, StreamEntry, StreamInfo, StreamOps, Subscription, Ttl,
    },
    Result,
};

use crate::RedbBackend;

/// Wall-clock milliseconds now.
pub(crate) fn wall_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedbBackend {
    /// The result of a call that may have changed something, once its changes are
    /// committed (a failed call changed nothing: it returns at once).
    async fn written<T>(&self, result: Result<T>) -> Result<T> {
        let value = result?;
        self.settle(false).await?;
        Ok(value)
    }
}

#[async_trait]
impl KeyOps for RedbBackend {
    async fn exists(&self, key: &str) -> Result<bool> {
        self.shared.mem.exists(key).await
    }

    async fn delete(&self, keys: &[String]) -> Result<u64> {
        self.written(self.shared.mem.delete(keys).await).await
    }

    async fn expire(&self, key: &str, ttl: Ttl) -> Result<bool> {
        self.written(self.shared.mem.expire(key, ttl).await).await
    }

    async fn expiry(&self, key: &str) -> Result<KeyExpiry> {
        self.shared.mem.expiry(key).await
    }

    async fn keys_matching(&self, prefix: &str, suffix: &str, limit: usize) -> Result<Vec<String>> {
        self.shared.mem.keys_matching(prefix, suffix, limit).await
    }
}

#[async_trait]
impl HashOps for RedbBackend {
    async fn hash_get(&self, key: &str, field: &str) -> Result<Option<Bytes>> {
        self.shared.mem.hash_get(key, field).await
    }

    async fn hash_get_all(&self, key: &str) -> Result<Vec<(String, Bytes)>> {
        self.shared.mem.hash_get_all(key).await
    }

    async fn hash_get_fields(&self, key: &str, fields: &[&str]) -> Result<Vec<Option<Bytes>>> {
        self.shared.mem.hash_get_fields(key, fields).await
    }

    async fn hash_scan(&self, key: &str, cursor: Option<&str>, count: usize) -> Result<HashChunk> {
        self.shared.mem.hash_scan(key, cursor, count).await
    }

    async fn hash_exists(&self, key: &str, field: &str) -> Result<bool> {
        self.shared.mem.hash_exists(key, field).await
    }

    async fn hash_len(&self, key: &str) -> Result<u64> {
        self.shared.mem.hash_len(key).await
    }
}

#[async_trait]
impl StreamOps for RedbBackend {
    async fn stream_add(
        &self,
        key: &str,
        fields: Fields,
        options: &AddOptions,
    ) -> Result<Option<EntryId>> {
        self.written(self.shared.mem.stream_add(key, fields, options).await)
            .await
    }

    async fn stream_add_batch(
        &self,
        key: &str,
        entries: Vec<Fields>,
        options: &AddOptions,
    ) -> Result<Vec<Option<EntryId>>> {
        self.written(
            self.shared
                .mem
                .stream_add_batch(key, entries, options)
                .await,
        )
        .await
    }

    async fn stream_range(
        &self,
        key: &str,
        start: EntryId,
        end: EntryId,
        count: Option<usize>,
    ) -> Result<Vec<StreamEntry>> {
        self.shared.mem.stream_range(key, start, end, count).await
    }

    async fn stream_info(&self, key: &str) -> Result<Option<StreamInfo>> {
        self.shared.mem.stream_info(key).await
    }

    async fn stream_remove(&self, key: &str, ids: &[EntryId]) -> Result<u64> {
        self.written(self.shared.mem.stream_remove(key, ids).await)
            .await
    }

    async fn stream_add_once(
        &self,
        key: &str,
        dedup: &str,
        window: Duration,
        fields: Fields,
        options: &AddOptions,
    ) -> Result<AddedOnce> {
        self.written(
            self.shared
                .mem
                .stream_add_once(key, dedup, window, fields, options)
                .await,
        )
        .await
    }

    async fn delay_add(
        &self,
        index: &str,
        data: &str,
        id: &str,
        due_ms: u64,
        fields: Fields,
    ) -> Result<Option<u64>> {
        self.written(
            self.shared
                .mem
                .delay_add(index, data, id, due_ms, fields)
                .await,
        )
        .await
    }

    async fn delay_release(
        &self,
        key: &str,
        index: &str,
        data: &str,
        limit: usize,
        options: &AddOptions,
    ) -> Result<DelayRelease> {
        self.written(
            self.shared
                .mem
                .delay_release(key, index, data, limit, options)
                .await,
        )
        .await
    }

    async fn delay_info(&self, index: &str) -> Result<DelayInfo> {
        self.shared.mem.delay_info(index).await
    }

    async fn delay_cancel(&self, index: &str, data: &str, id: &str) -> Result<bool> {
        self.written(self.shared.mem.delay_cancel(index, data, id).await)
            .await
    }

    async fn stream_move(
        &self,
        from: &str,
        id: EntryId,
        to: &str,
        fields: Fields,
    ) -> Result<Option<EntryId>> {
        self.written(self.shared.mem.stream_move(from, id, to, fields).await)
            .await
    }

    async fn stream_read(
        &self,
        streams: &[(String, EntryId)],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<StreamBatch>> {
        self.shared.mem.stream_read(streams, count, block).await
    }
}

#[async_trait]
impl GroupOps for RedbBackend {
    async fn group_create(
        &self,
        key: &str,
        group: &str,
        start: GroupStart,
        create_stream: bool,
    ) -> Result<bool> {
        self.written(
            self.shared
                .mem
                .group_create(key, group, start, create_stream)
                .await,
        )
        .await
    }

    async fn group_read(
        &self,
        group: &str,
        consumer: &str,
        keys: &[String],
        count: usize,
        block: Option<Duration>,
        no_ack: bool,
    ) -> Result<Vec<StreamBatch>> {
        self.written(
            self.shared
                .mem
                .group_read(group, consumer, keys, count, block, no_ack)
                .await,
        )
        .await
    }

    async fn group_ack(&self, key: &str, group: &str, ids: &[EntryId]) -> Result<u64> {
        self.written(self.shared.mem.group_ack(key, group, ids).await)
            .await
    }

    async fn group_claim_idle(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        start: EntryId,
        count: usize,
    ) -> Result<AutoClaim> {
        self.written(
            self.shared
                .mem
                .group_claim_idle(key, group, consumer, min_idle, start, count)
                .await,
        )
        .await
    }

    async fn group_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        ids: &[EntryId],
    ) -> Result<Vec<StreamEntry>> {
        self.written(
            self.shared
                .mem
                .group_claim(key, group, consumer, min_idle, ids)
                .await,
        )
        .await
    }

    async fn group_set_idle(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        ids: &[EntryId],
        idle: Duration,
    ) -> Result<Vec<EntryId>> {
        self.written(
            self.shared
                .mem
                .group_set_idle(key, group, consumer, ids, idle)
                .await,
        )
        .await
    }

    async fn group_dead_letter(
        &self,
        key: &str,
        group: &str,
        id: EntryId,
        dead: &str,
        fields: Fields,
    ) -> Result<Option<EntryId>> {
        self.written(
            self.shared
                .mem
                .group_dead_letter(key, group, id, dead, fields)
                .await,
        )
        .await
    }

    async fn group_pending_summary(&self, key: &str, group: &str) -> Result<PendingSummary> {
        self.shared.mem.group_pending_summary(key, group).await
    }

    async fn group_pending(
        &self,
        key: &str,
        group: &str,
        consumer: Option<&str>,
        start: EntryId,
        count: usize,
    ) -> Result<Vec<PendingEntry>> {
        self.shared
            .mem
            .group_pending(key, group, consumer, start, count)
            .await
    }

    async fn group_consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
        self.shared.mem.group_consumers(key, group).await
    }

    async fn group_create_consumer(&self, key: &str, group: &str, consumer: &str) -> Result<bool> {
        self.written(
            self.shared
                .mem
                .group_create_consumer(key, group, consumer)
                .await,
        )
        .await
    }

    async fn group_delete_consumer(&self, key: &str, group: &str, consumer: &str) -> Result<u64> {
        self.written(
            self.shared
                .mem
                .group_delete_consumer(key, group, consumer)
                .await,
        )
        .await
    }

    async fn group_list(&self, key: &str) -> Result<Vec<GroupInfo>> {
        self.shared.mem.group_list(key).await
    }

    async fn group_destroy(&self, key: &str, group: &str) -> Result<bool> {
        self.written(self.shared.mem.group_destroy(key, group).await)
            .await
    }
}

#[async_trait]
impl PubSubOps for RedbBackend {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<u64> {
        self.shared.mem.publish(channel, payload).await
    }

    async fn subscribe(&self, channels: &[String]) -> Result<Subscription> {
        self.shared.mem.subscribe(channels).await
    }
}

#[async_trait]
impl AtomicOps for RedbBackend {
    async fn map_set(
        &self,
        map: &MapTarget,
        key: &str,
        value: Bytes,
        condition: SetCondition,
    ) -> Result<SetOutcome> {
        self.written(self.shared.mem.map_set(map, key, value, condition).await)
            .await
    }

    async fn map_set_many(
        &self,
        map: &MapTarget,
        writes: Vec<MapWrite>,
    ) -> Result<Vec<SetOutcome>> {
        self.written(self.shared.mem.map_set_many(map, writes).await)
            .await
    }

    async fn map_delete(
        &self,
        map: &MapTarget,
        key: &str,
        condition: DeleteCondition,
    ) -> Result<DeleteOutcome> {
        self.written(self.shared.mem.map_delete(map, key, condition).await)
            .await
    }

    async fn map_increment(
        &self,
        map: &MapTarget,
        key: &str,
        delta: i64,
    ) -> Result<IncrementOutcome> {
        self.written(self.shared.mem.map_increment(map, key, delta).await)
            .await
    }

    async fn map_edit_list(
        &self,
        map: &MapTarget,
        key: &str,
        edit: ListEdit,
        items: Vec<Bytes>,
    ) -> Result<ListOutcome> {
        self.written(self.shared.mem.map_edit_list(map, key, edit, items).await)
            .await
    }

    async fn map_reset(
        &self,
        map: &MapTarget,
        tests: Vec<(String, Bytes)>,
        destroy: bool,
    ) -> Result<ResetOutcome> {
        self.written(self.shared.mem.map_reset(map, tests, destroy).await)
            .await
    }

    async fn lease_acquire(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.written(self.shared.mem.lease_acquire(key, holder, ttl).await)
            .await
    }

    async fn lease_release(&self, key: &str, holder: &str) -> Result<bool> {
        self.written(self.shared.mem.lease_release(key, holder).await)
            .await
    }
}
