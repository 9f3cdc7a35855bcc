//! [`GroupOps`] on the in-memory state: consumer groups, pending lists, claims and the
//! dead-letter move, each under the one state lock (so each call is atomic, as a Redis
//! command or script is).

use std::time::Duration;

use pulse::async_trait;
use pulse::{
    backend::{
        AddOptions, AutoClaim, ConsumerInfo, EntryId, Fields, GroupInfo, GroupOps, GroupStart,
        PendingEntry, PendingSummary, StreamBatch, StreamEntry,
    },
    Error, Result,
};

use crate::{
    ops::{add, check_read_args, no_group},
    state::State,
    streams::Group,
    MemoryBackend,
};

/// Runs `f` on the group, mapping a missing stream or group to `NoGroup`.
fn with_group<T>(
    st: &mut State,
    key: &str,
    group: &str,
    f: impl FnOnce(&mut Group) -> T,
) -> Result<T> {
    let s = st.stream(key)?.ok_or_else(|| no_group(key, group))?;
    let g = s
        .groups
        .get_mut(group)
        .ok_or_else(|| no_group(key, group))?;
    Ok(f(g))
}

#[async_trait]
impl GroupOps for MemoryBackend {
    async fn group_create(
        &self,
        key: &str,
        group: &str,
        start: GroupStart,
        create_stream: bool,
    ) -> Result<bool> {
        let mut st = self.lock();
        let s = match st.stream(key)? {
            Some(s) => s,
            None if create_stream => st.stream_or_create(key)?,
            None => return Err(no_group(key, group)),
        };
        let after = match start {
            GroupStart::Newest => s.last_id,
            GroupStart::After(id) => id,
        };
        Ok(s.create_group(group, after))
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
        check_read_args(keys.len(), count)?;
        self.blocking(keys, block, |st| {
            let mut out = Vec::new();
            for key in keys {
                let s = st.stream(key)?.ok_or_else(|| no_group(key, group))?;
                let entries = s
                    .group_read(group, consumer, count, no_ack)
                    .ok_or_else(|| no_group(key, group))?;
                if !entries.is_empty() {
                    out.push(StreamBatch {
                        stream: key.clone(),
                        entries,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn group_ack(&self, key: &str, group: &str, ids: &[EntryId]) -> Result<u64> {
        let mut st = self.lock();
        Ok(match st.stream(key)? {
            Some(s) => s.groups.get_mut(group).map_or(0, |g| g.ack(ids)),
            None => 0,
        })
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
        if count == 0 {
            return Err(Error::InvalidArgument("count must be at least 1".into()));
        }
        let mut st = self.lock();
        let s = st.stream(key)?.ok_or_else(|| no_group(key, group))?;
        let (g, entries) = s
            .group_and_entries(group)
            .ok_or_else(|| no_group(key, group))?;
        Ok(g.claim_idle(entries, consumer, min_idle, start, count))
    }

    async fn group_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        ids: &[EntryId],
    ) -> Result<Vec<StreamEntry>> {
        let mut st = self.lock();
        let s = st.stream(key)?.ok_or_else(|| no_group(key, group))?;
        let (g, entries) = s
            .group_and_entries(group)
            .ok_or_else(|| no_group(key, group))?;
        Ok(g.claim(entries, consumer, min_idle, ids))
    }

    async fn group_set_idle(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        ids: &[EntryId],
        idle: Duration,
    ) -> Result<Vec<EntryId>> {
        with_group(&mut self.lock(), key, group, |g| {
            g.set_idle(consumer, ids, idle)
        })
    }

    async fn group_dead_letter(
        &self,
        key: &str,
        group: &str,
        id: EntryId,
        dead: &str,
        fields: Fields,
    ) -> Result<Option<EntryId>> {
        let mut st = self.lock();
        st.stream(dead)?;
        let pending = with_group(&mut st, key, group, |g| {
            g.pending(None, id, 1).first().is_some_and(|p| p.id == id)
        })?;
        if !pending {
            return Ok(None);
        }
        let new = add(&mut st, dead, vec![fields], &AddOptions::default())?
            .pop()
            .flatten();
        if let Some(s) = st.stream(key)? {
            if let Some(g) = s.groups.get_mut(group) {
                g.ack(&[id]);
            }
        }
        Ok(new)
    }

    async fn group_pending_summary(&self, key: &str, group: &str) -> Result<PendingSummary> {
        with_group(&mut self.lock(), key, group, |g| g.summary())
    }

    async fn group_pending(
        &self,
        key: &str,
        group: &str,
        consumer: Option<&str>,
        start: EntryId,
        count: usize,
    ) -> Result<Vec<PendingEntry>> {
        with_group(&mut self.lock(), key, group, |g| {
            g.pending(consumer, start, count)
        })
    }

    async fn group_consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
        with_group(&mut self.lock(), key, group, |g| g.consumers())
    }

    async fn group_create_consumer(&self, key: &str, group: &str, consumer: &str) -> Result<bool> {
        with_group(&mut self.lock(), key, group, |g| {
            g.create_consumer(consumer)
        })
    }

    async fn group_delete_consumer(&self, key: &str, group: &str, consumer: &str) -> Result<u64> {
        with_group(&mut self.lock(), key, group, |g| {
            g.delete_consumer(consumer)
        })
    }

    async fn group_list(&self, key: &str) -> Result<Vec<GroupInfo>> {
        Ok(self
            .lock()
            .stream(key)?
            .map_or_else(Vec::new, |s| s.group_list()))
    }

    async fn group_destroy(&self, key: &str, group: &str) -> Result<bool> {
        let mut st = self.lock();
        let removed = match st.stream(key)? {
            Some(s) => s.destroy_group(group),
            None => false,
        };
        st.wake(key);
        Ok(removed)
    }
}
