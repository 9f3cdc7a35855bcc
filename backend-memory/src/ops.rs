//! The trait implementations: thin adapters from the [`pulse::backend`] traits to the state,
//! plus the blocking-read loop and subscriptions.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use pulse::async_trait;
use pulse::{
    backend::{
        AddOptions, AddedOnce, AtomicOps, DelayInfo, DelayRelease, DeleteCondition, DeleteOutcome,
        EntryId, Fields, HashChunk, HashOps, IncrementOutcome, KeyExpiry, KeyOps, ListEdit,
        ListOutcome, MapTarget, MapWrite, PubSubOps, ResetOutcome, SetCondition, SetOutcome,
        StreamBatch, StreamEntry, StreamInfo, StreamOps, Subscription, Ttl,
    },
    Error, Result,
};
use tokio::{
    sync::{mpsc, Notify},
    time::Instant,
};

use crate::{
    state::{Entry, State, Subscriber},
    MemoryBackend,
};

pub(crate) fn no_group(key: &str, group: &str) -> Error {
    Error::NoGroup {
        stream: key.to_owned(),
        group: group.to_owned(),
    }
}

pub(crate) fn check_read_args(n: usize, count: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::InvalidArgument("no streams to read".into()));
    }
    if count == 0 {
        return Err(Error::InvalidArgument("count must be at least 1".into()));
    }
    Ok(())
}

impl MemoryBackend {
    /// Runs `attempt` under the lock until it yields a non-empty result, the deadline passes
    /// or (without `block`) once. Between attempts it sleeps until one of `keys` changes.
    pub(crate) async fn blocking<F>(
        &self,
        keys: &[String],
        block: Option<Duration>,
        mut attempt: F,
    ) -> Result<Vec<StreamBatch>>
    where
        F: FnMut(&mut State) -> Result<Vec<StreamBatch>> + Send,
    {
        let deadline = block.filter(|d| !d.is_zero()).map(|d| Instant::now() + d);
        loop {
            let notify = Arc::new(Notify::new());
            let wake_at = {
                let mut st = self.lock();
                let out = attempt(&mut st)?;
                let Some(deadline) = deadline else {
                    return Ok(out);
                };
                if !out.is_empty() || Instant::now() >= deadline {
                    return Ok(out);
                }
                st.register_waiter(keys, &notify);
                st.earliest_expiry(keys)
                    .map_or(deadline, |e| e.min(deadline))
            };
            let _ = tokio::time::timeout_at(wake_at, notify.notified()).await;
        }
    }
}

#[async_trait]
impl KeyOps for MemoryBackend {
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.lock().live(key).is_some())
    }

    async fn delete(&self, keys: &[String]) -> Result<u64> {
        let mut st = self.lock();
        Ok(keys.iter().filter(|k| st.remove(k)).count() as u64)
    }

    async fn expire(&self, key: &str, ttl: Ttl) -> Result<bool> {
        Ok(self.lock().apply_ttl(key, Some(ttl)))
    }

    async fn expiry(&self, key: &str) -> Result<KeyExpiry> {
        Ok(match self.lock().live(key) {
            None => KeyExpiry::Missing,
            Some(Entry {
                expires_at: None, ..
            }) => KeyExpiry::Persistent,
            Some(Entry {
                expires_at: Some(at),
                ..
            }) => KeyExpiry::In(at.saturating_duration_since(Instant::now())),
        })
    }

    async fn keys_matching(&self, prefix: &str, suffix: &str, limit: usize) -> Result<Vec<String>> {
        let now = Instant::now();
        let st = self.lock();
        let mut keys: Vec<String> = st
            .keys
            .iter()
            .filter(|(k, e)| matches(k, prefix, suffix) && e.expires_at.is_none_or(|at| at > now))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        keys.truncate(limit);
        Ok(keys)
    }
}

#[async_trait]
impl HashOps for MemoryBackend {
    async fn hash_get(&self, key: &str, field: &str) -> Result<Option<Bytes>> {
        Ok(self.lock().hash(key)?.and_then(|h| h.get(field).cloned()))
    }

    async fn hash_get_all(&self, key: &str) -> Result<Vec<(String, Bytes)>> {
        Ok(self
            .lock()
            .hash(key)?
            .map(|h| h.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    async fn hash_get_fields(&self, key: &str, fields: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let mut state = self.lock();
        let hash = state.hash(key)?;
        Ok(fields
            .iter()
            .map(|f| hash.and_then(|h| h.get(*f).cloned()))
            .collect())
    }

    /// Fields in key order; the cursor is the last field returned, so a field present the
    /// whole time is returned exactly once.
    async fn hash_scan(&self, key: &str, cursor: Option<&str>, count: usize) -> Result<HashChunk> {
        use std::ops::Bound;
        let mut state = self.lock();
        let Some(hash) = state.hash(key)? else {
            return Ok(HashChunk::default());
        };
        let from = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let fields: Vec<(String, Bytes)> = hash
            .range::<str, _>((from, Bound::Unbounded))
            .take(count.max(1))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let next = match fields.last() {
            Some((last, _))
                if hash
                    .range::<str, _>((Bound::Excluded(last.as_str()), Bound::Unbounded))
                    .next()
                    .is_some() =>
            {
                Some(last.clone())
            }
            _ => None,
        };
        Ok(HashChunk { next, fields })
    }

    async fn hash_exists(&self, key: &str, field: &str) -> Result<bool> {
        Ok(self
            .lock()
            .hash(key)?
            .is_some_and(|h| h.contains_key(field)))
    }

    async fn hash_len(&self, key: &str) -> Result<u64> {
        Ok(self.lock().hash(key)?.map_or(0, |h| h.len() as u64))
    }
}

/// Appends `entries` as one step: one lookup, one clock reading, one wake-up.
pub(crate) fn add(
    st: &mut State,
    key: &str,
    entries: Vec<Fields>,
    options: &AddOptions,
) -> Result<Vec<Option<EntryId>>> {
    if entries.iter().any(Vec::is_empty) {
        return Err(Error::InvalidArgument(
            "a stream entry needs at least one field".into(),
        ));
    }
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    if options.id.is_some() && entries.len() > 1 {
        return Err(Error::InvalidArgument(
            "an explicit ID is for a single append, not a batch".into(),
        ));
    }
    if !options.create && st.stream(key)?.is_none() {
        return Ok(vec![None; entries.len()]);
    }
    if let Some(id) = options.id {
        let last = st.stream(key)?.map_or(EntryId::ZERO, |s| s.last_id);
        if id <= last {
            return Err(explicit_id_too_small());
        }
    }
    let stream = st.stream_or_create(key)?;
    let ids = match options.id {
        Some(id) => vec![stream.add_with_id(id, entries, options.max_len)],
        None => stream.add(entries, options.max_len),
    };
    st.apply_ttl(key, options.ttl);
    st.wake(key);
    Ok(ids.into_iter().map(Some).collect())
}

/// The answer to an explicit ID not above the stream's last one (what Redis refuses too).
fn explicit_id_too_small() -> Error {
    Error::InvalidArgument("an explicit ID must be greater than the stream's last ID".into())
}

#[async_trait]
impl StreamOps for MemoryBackend {
    async fn stream_add(
        &self,
        key: &str,
        fields: Fields,
        options: &AddOptions,
    ) -> Result<Option<EntryId>> {
        Ok(add(&mut self.lock(), key, vec![fields], options)?
            .pop()
            .flatten())
    }

    async fn stream_add_batch(
        &self,
        key: &str,
        entries: Vec<Fields>,
        options: &AddOptions,
    ) -> Result<Vec<Option<EntryId>>> {
        add(&mut self.lock(), key, entries, options)
    }

    async fn stream_range(
        &self,
        key: &str,
        start: EntryId,
        end: EntryId,
        count: Option<usize>,
    ) -> Result<Vec<StreamEntry>> {
        Ok(self
            .lock()
            .stream(key)?
            .map(|s| s.range(start, end, count))
            .unwrap_or_default())
    }

    async fn stream_info(&self, key: &str) -> Result<Option<StreamInfo>> {
        Ok(self.lock().stream(key)?.map(|s| StreamInfo {
            length: s.len(),
            first_id: s.first_id(),
            last_id: s.last_id,
        }))
    }

    async fn stream_remove(&self, key: &str, ids: &[EntryId]) -> Result<u64> {
        Ok(self.lock().stream(key)?.map_or(0, |s| s.remove(ids)))
    }

    async fn stream_add_once(
        &self,
        key: &str,
        dedup: &str,
        window: Duration,
        fields: Fields,
        options: &AddOptions,
    ) -> Result<AddedOnce> {
        let mut st = self.lock();
        if let Some(earlier) = st.dedup_get(dedup)? {
            return Ok(AddedOnce {
                id: Some(earlier),
                added: false,
            });
        }
        let id = add(&mut st, key, vec![fields], options)?.pop().flatten();
        if let Some(id) = id {
            st.dedup_set(dedup, id, window);
        }
        Ok(AddedOnce {
            id,
            added: id.is_some(),
        })
    }

    async fn delay_add(
        &self,
        index: &str,
        _data: &str,
        id: &str,
        due_ms: u64,
        fields: Fields,
    ) -> Result<Option<u64>> {
        if fields.is_empty() {
            return Err(Error::InvalidArgument(
                "a stream entry needs at least one field".into(),
            ));
        }
        let mut st = self.lock();
        let delayed = st.delayed_or_create(index)?;
        let before = delayed.next_due();
        delayed.insert(id, due_ms, fields);
        Ok(before)
    }

    async fn delay_release(
        &self,
        key: &str,
        index: &str,
        _data: &str,
        limit: usize,
        options: &AddOptions,
    ) -> Result<DelayRelease> {
        if limit == 0 {
            return Err(Error::InvalidArgument("limit must be at least 1".into()));
        }
        let now_ms = crate::streams::wall_ms();
        let options = options.clone().with_create(true);
        let mut st = self.lock();
        st.stream(key)?; // a key of another type is refused before anything moves
        let mut released = Vec::new();
        let mut next_due_ms = None;
        if st.delayed(index)?.is_some() {
            while released.len() < limit {
                let Some(fields) = st.delayed_or_create(index)?.pop_due(now_ms) else {
                    break;
                };
                if let Some(id) = add(&mut st, key, vec![fields], &options)?.pop().flatten() {
                    released.push(id);
                }
            }
            let delayed = st.delayed_or_create(index)?;
            next_due_ms = delayed.next_due();
            if delayed.is_empty() {
                st.drop_key(index);
            }
        }
        Ok(DelayRelease {
            released,
            next_due_ms,
            now_ms,
            unreadable: Vec::new(),
        })
    }

    async fn delay_info(&self, index: &str) -> Result<DelayInfo> {
        let mut st = self.lock();
        Ok(st
            .delayed(index)?
            .map_or(DelayInfo::default(), |d| DelayInfo {
                count: d.len() as u64,
                next_due_ms: d.next_due(),
            }))
    }

    async fn delay_cancel(&self, index: &str, _data: &str, id: &str) -> Result<bool> {
        let mut st = self.lock();
        let Some(delayed) = st.delayed(index)? else {
            return Ok(false);
        };
        let held = delayed.remove(id);
        if delayed.is_empty() {
            st.drop_key(index);
        }
        Ok(held)
    }

    async fn stream_move(
        &self,
        from: &str,
        id: EntryId,
        to: &str,
        fields: Fields,
    ) -> Result<Option<EntryId>> {
        let mut st = self.lock();
        // Checked before anything changes, so a refusal leaves both streams as they were.
        st.stream(to)?;
        let present = match st.stream(from)? {
            Some(s) => !s.range(id, id, Some(1)).is_empty(),
            None => false,
        };
        if !present {
            return Ok(None);
        }
        let new = add(&mut st, to, vec![fields], &AddOptions::default())?
            .pop()
            .flatten();
        if let Some(s) = st.stream(from)? {
            s.remove(&[id]);
        }
        Ok(new)
    }

    async fn stream_read(
        &self,
        streams: &[(String, EntryId)],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<StreamBatch>> {
        check_read_args(streams.len(), count)?;
        let keys: Vec<String> = streams.iter().map(|(k, _)| k.clone()).collect();
        self.blocking(&keys, block, |st| {
            let mut out = Vec::new();
            for (key, cursor) in streams {
                if let Some(s) = st.stream(key)? {
                    let entries = s.after(*cursor, count);
                    if !entries.is_empty() {
                        out.push(StreamBatch {
                            stream: key.clone(),
                            entries,
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

/// Removes a subscription from the state when dropped.
struct Unsubscribe {
    backend: std::sync::Weak<std::sync::Mutex<State>>,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let Some(state) = self.backend.upgrade() else {
            return;
        };
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sub) = st.subscribers.remove(&self.id) {
            for ch in sub.channels {
                if let Some(ids) = st.channels.get_mut(&ch) {
                    ids.retain(|i| *i != self.id);
                    if ids.is_empty() {
                        st.channels.remove(&ch);
                    }
                }
            }
        }
    }
}

#[async_trait]
impl PubSubOps for MemoryBackend {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<u64> {
        Ok(self.lock().publish(channel, payload))
    }

    async fn subscribe(&self, channels: &[String]) -> Result<Subscription> {
        if channels.is_empty() {
            return Err(Error::InvalidArgument("no channels to subscribe to".into()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = self.lock();
        let id = st.next_subscriber;
        st.next_subscriber += 1;
        let mut unique = channels.to_vec();
        unique.sort();
        unique.dedup();
        for ch in &unique {
            st.channels.entry(ch.clone()).or_default().push(id);
        }
        st.subscribers.insert(
            id,
            Subscriber {
                tx,
                channels: unique,
            },
        );
        Ok(Subscription::new(
            rx,
            Unsubscribe {
                backend: Arc::downgrade(&self.state),
                id,
            },
        ))
    }
}

#[async_trait]
impl AtomicOps for MemoryBackend {
    async fn map_set(
        &self,
        map: &MapTarget,
        key: &str,
        value: Bytes,
        condition: SetCondition,
    ) -> Result<SetOutcome> {
        self.lock().map_set(map, key, value, condition)
    }

    async fn map_set_many(
        &self,
        map: &MapTarget,
        writes: Vec<MapWrite>,
    ) -> Result<Vec<SetOutcome>> {
        // One critical section: the batch is one step, published as one frame.
        self.lock().map_set_many(map, writes)
    }

    async fn map_delete(
        &self,
        map: &MapTarget,
        key: &str,
        condition: DeleteCondition,
    ) -> Result<DeleteOutcome> {
        self.lock().map_delete(map, key, condition)
    }

    async fn map_increment(
        &self,
        map: &MapTarget,
        key: &str,
        delta: i64,
    ) -> Result<IncrementOutcome> {
        self.lock().map_increment(map, key, delta)
    }

    async fn map_edit_list(
        &self,
        map: &MapTarget,
        key: &str,
        edit: ListEdit,
        items: Vec<Bytes>,
    ) -> Result<ListOutcome> {
        self.lock().map_edit_list(map, key, edit, items)
    }

    async fn map_reset(
        &self,
        map: &MapTarget,
        tests: Vec<(String, Bytes)>,
        destroy: bool,
    ) -> Result<ResetOutcome> {
        self.lock().map_reset(map, tests, destroy)
    }

    async fn lease_acquire(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.lock().lease_acquire(key, holder, ttl)
    }

    async fn lease_release(&self, key: &str, holder: &str) -> Result<bool> {
        self.lock().lease_release(key, holder)
    }
}

/// True when `key` begins with `prefix` and ends with `suffix`, the two not overlapping.
fn matches(key: &str, prefix: &str, suffix: &str) -> bool {
    key.len() >= prefix.len() + suffix.len() && key.starts_with(prefix) && key.ends_with(suffix)
}
