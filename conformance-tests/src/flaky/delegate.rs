//! The capability traits of [`FlakyBackend`]: each method delegates to the wrapped backend
//! through [`FlakyBackend::call`], naming its [`Op`], the key it addresses and whether it
//! is a short call or a long-lived one (blocking read, subscription), so the fault
//! settings of the parent module apply to every operation the same way.

use std::time::Duration;

use bytes::Bytes;
use pulse::async_trait;
use pulse::{
    backend::{
        AddOptions, AddedOnce, AtomicOps, AutoClaim, ConsumerInfo, DelayInfo, DelayRelease,
        DeleteCondition, DeleteOutcome, EntryId, Fields, GroupInfo, GroupOps, GroupStart,
        HashChunk, HashOps, IncrementOutcome, KeyExpiry, KeyOps, ListEdit, ListOutcome, MapTarget,
        MapWrite, PendingEntry, PendingSummary, PubSubOps, ResetOutcome, SetCondition, SetOutcome,
        StreamBatch, StreamEntry, StreamInfo, StreamOps, Subscription, Ttl,
    },
    Backend, Result,
};

use super::{exposure_of, first, Exposure, FlakyBackend, Op};

impl Backend for FlakyBackend {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

#[async_trait]
impl KeyOps for FlakyBackend {
    async fn exists(&self, key: &str) -> Result<bool> {
        self.call(Op::Exists, key, Exposure::Call, self.inner.exists(key))
            .await
    }
    async fn delete(&self, keys: &[String]) -> Result<u64> {
        self.call(
            Op::Delete,
            first(keys),
            Exposure::Call,
            self.inner.delete(keys),
        )
        .await
    }
    async fn expire(&self, key: &str, ttl: Ttl) -> Result<bool> {
        self.call(Op::Expire, key, Exposure::Call, self.inner.expire(key, ttl))
            .await
    }
    async fn expiry(&self, key: &str) -> Result<KeyExpiry> {
        self.call(Op::Expiry, key, Exposure::Call, self.inner.expiry(key))
            .await
    }
    async fn keys_matching(&self, prefix: &str, suffix: &str, limit: usize) -> Result<Vec<String>> {
        let call = self.inner.keys_matching(prefix, suffix, limit);
        self.call(Op::KeysMatching, prefix, Exposure::Call, call)
            .await
    }
}

#[async_trait]
impl HashOps for FlakyBackend {
    async fn hash_get(&self, key: &str, field: &str) -> Result<Option<Bytes>> {
        let call = self.inner.hash_get(key, field);
        self.call(Op::HashGet, key, Exposure::Call, call).await
    }
    async fn hash_get_all(&self, key: &str) -> Result<Vec<(String, Bytes)>> {
        let call = self.inner.hash_get_all(key);
        self.call(Op::HashGetAll, key, Exposure::Call, call).await
    }
    async fn hash_get_fields(&self, key: &str, fields: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let call = self.inner.hash_get_fields(key, fields);
        self.call(Op::HashGetFields, key, Exposure::Call, call)
            .await
    }
    async fn hash_scan(&self, key: &str, cursor: Option<&str>, count: usize) -> Result<HashChunk> {
        let call = self.inner.hash_scan(key, cursor, count);
        self.call(Op::HashScan, key, Exposure::Call, call).await
    }
    async fn hash_exists(&self, key: &str, field: &str) -> Result<bool> {
        let call = self.inner.hash_exists(key, field);
        self.call(Op::HashExists, key, Exposure::Call, call).await
    }
    async fn hash_len(&self, key: &str) -> Result<u64> {
        let call = self.inner.hash_len(key);
        self.call(Op::HashLen, key, Exposure::Call, call).await
    }
}

#[async_trait]
impl StreamOps for FlakyBackend {
    async fn stream_add(
        &self,
        key: &str,
        fields: Fields,
        options: &AddOptions,
    ) -> Result<Option<EntryId>> {
        let call = self.inner.stream_add(key, fields, options);
        self.call(Op::StreamAdd, key, Exposure::Call, call).await
    }
    async fn stream_add_batch(
        &self,
        key: &str,
        entries: Vec<Fields>,
        options: &AddOptions,
    ) -> Result<Vec<Option<EntryId>>> {
        let call = self.inner.stream_add_batch(key, entries, options);
        self.call(Op::StreamAddBatch, key, Exposure::Call, call)
            .await
    }
    async fn stream_range(
        &self,
        key: &str,
        start: EntryId,
        end: EntryId,
        count: Option<usize>,
    ) -> Result<Vec<StreamEntry>> {
        let call = self.inner.stream_range(key, start, end, count);
        self.call(Op::StreamRange, key, Exposure::Call, call).await
    }
    async fn stream_info(&self, key: &str) -> Result<Option<StreamInfo>> {
        let call = self.inner.stream_info(key);
        self.call(Op::StreamInfo, key, Exposure::Call, call).await
    }
    async fn stream_remove(&self, key: &str, ids: &[EntryId]) -> Result<u64> {
        let call = self.inner.stream_remove(key, ids);
        self.call(Op::StreamRemove, key, Exposure::Call, call).await
    }
    async fn stream_add_once(
        &self,
        key: &str,
        dedup: &str,
        window: Duration,
        fields: Fields,
        options: &AddOptions,
    ) -> Result<AddedOnce> {
        let call = self
            .inner
            .stream_add_once(key, dedup, window, fields, options);
        self.call(Op::StreamAddOnce, key, Exposure::Call, call)
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
        let call = self.inner.delay_add(index, data, id, due_ms, fields);
        self.call(Op::DelayAdd, index, Exposure::Call, call).await
    }
    async fn delay_release(
        &self,
        key: &str,
        index: &str,
        data: &str,
        limit: usize,
        options: &AddOptions,
    ) -> Result<DelayRelease> {
        let call = self.inner.delay_release(key, index, data, limit, options);
        self.call(Op::DelayRelease, key, Exposure::Call, call).await
    }
    async fn delay_info(&self, index: &str) -> Result<DelayInfo> {
        let call = self.inner.delay_info(index);
        self.call(Op::DelayInfo, index, Exposure::Call, call).await
    }
    async fn delay_cancel(&self, index: &str, data: &str, id: &str) -> Result<bool> {
        let call = self.inner.delay_cancel(index, data, id);
        self.call(Op::DelayCancel, index, Exposure::Call, call)
            .await
    }
    async fn stream_move(
        &self,
        from: &str,
        id: EntryId,
        to: &str,
        fields: Fields,
    ) -> Result<Option<EntryId>> {
        let call = self.inner.stream_move(from, id, to, fields);
        self.call(Op::StreamMove, from, Exposure::Call, call).await
    }
    async fn stream_read(
        &self,
        streams: &[(String, EntryId)],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<StreamBatch>> {
        let key = streams.first().map_or("", |(k, _)| k.as_str());
        let call = self.inner.stream_read(streams, count, block);
        self.call(Op::StreamRead, key, exposure_of(block), call)
            .await
    }
}

#[async_trait]
impl GroupOps for FlakyBackend {
    async fn group_create(
        &self,
        key: &str,
        group: &str,
        start: GroupStart,
        create_stream: bool,
    ) -> Result<bool> {
        let call = self.inner.group_create(key, group, start, create_stream);
        self.call(Op::GroupCreate, key, Exposure::Call, call).await
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
        let call = self
            .inner
            .group_read(group, consumer, keys, count, block, no_ack);
        self.call(Op::GroupRead, first(keys), exposure_of(block), call)
            .await
    }
    async fn group_ack(&self, key: &str, group: &str, ids: &[EntryId]) -> Result<u64> {
        let call = self.inner.group_ack(key, group, ids);
        self.call(Op::GroupAck, key, Exposure::Call, call).await
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
        let call = self
            .inner
            .group_claim_idle(key, group, consumer, min_idle, start, count);
        self.call(Op::GroupClaimIdle, key, Exposure::Call, call)
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
        let call = self.inner.group_claim(key, group, consumer, min_idle, ids);
        self.call(Op::GroupClaim, key, Exposure::Call, call).await
    }
    async fn group_set_idle(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        ids: &[EntryId],
        idle: Duration,
    ) -> Result<Vec<EntryId>> {
        let call = self.inner.group_set_idle(key, group, consumer, ids, idle);
        self.call(Op::GroupSetIdle, key, Exposure::Call, call).await
    }
    async fn group_dead_letter(
        &self,
        key: &str,
        group: &str,
        id: EntryId,
        dead: &str,
        fields: Fields,
    ) -> Result<Option<EntryId>> {
        let call = self.inner.group_dead_letter(key, group, id, dead, fields);
        self.call(Op::GroupDeadLetter, key, Exposure::Call, call)
            .await
    }
    async fn group_pending_summary(&self, key: &str, group: &str) -> Result<PendingSummary> {
        let call = self.inner.group_pending_summary(key, group);
        self.call(Op::GroupPendingSummary, key, Exposure::Call, call)
            .await
    }
    async fn group_pending(
        &self,
        key: &str,
        group: &str,
        consumer: Option<&str>,
        start: EntryId,
        count: usize,
    ) -> Result<Vec<PendingEntry>> {
        let call = self.inner.group_pending(key, group, consumer, start, count);
        self.call(Op::GroupPending, key, Exposure::Call, call).await
    }
    async fn group_consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
        let call = self.inner.group_consumers(key, group);
        self.call(Op::GroupConsumers, key, Exposure::Call, call)
            .await
    }
    async fn group_list(&self, key: &str) -> Result<Vec<GroupInfo>> {
        let call = self.inner.group_list(key);
        self.call(Op::GroupList, key, Exposure::Call, call).await
    }
    async fn group_create_consumer(&self, key: &str, group: &str, consumer: &str) -> Result<bool> {
        let call = self.inner.group_create_consumer(key, group, consumer);
        self.call(Op::GroupCreateConsumer, key, Exposure::Call, call)
            .await
    }
    async fn group_delete_consumer(&self, key: &str, group: &str, consumer: &str) -> Result<u64> {
        let call = self.inner.group_delete_consumer(key, group, consumer);
        self.call(Op::GroupDeleteConsumer, key, Exposure::Call, call)
            .await
    }
    async fn group_destroy(&self, key: &str, group: &str) -> Result<bool> {
        let call = self.inner.group_destroy(key, group);
        self.call(Op::GroupDestroy, key, Exposure::Call, call).await
    }
}

#[async_trait]
impl PubSubOps for FlakyBackend {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<u64> {
        let call = self.inner.publish(channel, payload);
        self.call(Op::Publish, channel, Exposure::Call, call).await
    }
    async fn subscribe(&self, channels: &[String]) -> Result<Subscription> {
        let call = self.inner.subscribe(channels);
        self.call(Op::Subscribe, first(channels), Exposure::LongLived, call)
            .await
    }
}

#[async_trait]
impl AtomicOps for FlakyBackend {
    async fn map_set(
        &self,
        map: &MapTarget,
        key: &str,
        value: Bytes,
        condition: SetCondition,
    ) -> Result<SetOutcome> {
        let call = self.inner.map_set(map, key, value, condition);
        self.call(Op::MapSet, &map.hash, Exposure::Call, call).await
    }
    async fn map_set_many(
        &self,
        map: &MapTarget,
        writes: Vec<MapWrite>,
    ) -> Result<Vec<SetOutcome>> {
        let call = self.inner.map_set_many(map, writes);
        self.call(Op::MapSetMany, &map.hash, Exposure::Call, call)
            .await
    }
    async fn map_delete(
        &self,
        map: &MapTarget,
        key: &str,
        condition: DeleteCondition,
    ) -> Result<DeleteOutcome> {
        let call = self.inner.map_delete(map, key, condition);
        self.call(Op::MapDelete, &map.hash, Exposure::Call, call)
            .await
    }
    async fn map_increment(
        &self,
        map: &MapTarget,
        key: &str,
        delta: i64,
    ) -> Result<IncrementOutcome> {
        let call = self.inner.map_increment(map, key, delta);
        self.call(Op::MapIncrement, &map.hash, Exposure::Call, call)
            .await
    }
    async fn map_edit_list(
        &self,
        map: &MapTarget,
        key: &str,
        edit: ListEdit,
        items: Vec<Bytes>,
    ) -> Result<ListOutcome> {
        let call = self.inner.map_edit_list(map, key, edit, items);
        self.call(Op::MapEditList, &map.hash, Exposure::Call, call)
            .await
    }
    async fn map_reset(
        &self,
        map: &MapTarget,
        tests: Vec<(String, Bytes)>,
        destroy: bool,
    ) -> Result<ResetOutcome> {
        let call = self.inner.map_reset(map, tests, destroy);
        self.call(Op::MapReset, &map.hash, Exposure::Call, call)
            .await
    }
    async fn lease_acquire(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let call = self.inner.lease_acquire(key, holder, ttl);
        self.call(Op::LeaseAcquire, key, Exposure::Call, call).await
    }
    async fn lease_release(&self, key: &str, holder: &str) -> Result<bool> {
        let call = self.inner.lease_release(key, holder);
        self.call(Op::LeaseRelease, key, Exposure::Call, call).await
    }
}
