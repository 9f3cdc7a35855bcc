//! Streams and consumer groups as plain data, manipulated under the state lock.
//!
//! Invariants: entry IDs strictly increase (`last_id` only grows, even when the wall clock
//! goes back); a group's `last_delivered` only grows; every pending entry belongs to a
//! registered consumer.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Bound,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use pulse::backend::{
    AutoClaim, ConsumerInfo, EntryId, Fields, GroupInfo, PendingEntry, PendingSummary, StreamEntry,
};
use tokio::time::Instant;

use crate::journal::{wall_of, Change, Marks, PendingRecord};

/// Stored fields, shared with every entry read from them.
pub(crate) type SharedFields = Arc<[(String, Bytes)]>;

/// A pending (delivered, unacknowledged) entry.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// Shared by every entry one read or claim delivered.
    consumer: Arc<str>,
    delivered_at: Instant,
    deliveries: u64,
}

/// A consumer group.
#[derive(Debug, Default)]
pub(crate) struct Group {
    pub(crate) last_delivered: EntryId,
    pending: BTreeMap<EntryId, Pending>,
    /// consumer → last time it read or claimed.
    consumers: BTreeMap<String, Instant>,
    /// Pending entries and consumers changed (journaled backends).
    pending_marks: Marks<EntryId>,
    consumer_marks: Marks<String>,
}

/// A stream: entries, the last generated ID and its groups.
#[derive(Debug, Default)]
pub(crate) struct StreamData {
    entries: BTreeMap<EntryId, SharedFields>,
    pub(crate) last_id: EntryId,
    pub(crate) groups: HashMap<String, Group>,
    /// What changed (journaled backends): entries, groups (created, deleted, moved on),
    /// and whether `last_id` did.
    entry_marks: Marks<EntryId>,
    group_marks: Marks<String>,
    last_id_changed: bool,
}

pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn to_entry(id: EntryId, fields: &SharedFields) -> StreamEntry {
    StreamEntry {
        id,
        fields: fields.clone(),
    }
}

impl StreamData {
    /// An empty stream, journaled when `journaled`.
    pub(crate) fn new(journaled: bool) -> Self {
        StreamData {
            entry_marks: Marks::new(journaled),
            group_marks: Marks::new(journaled),
            ..StreamData::default()
        }
    }

    /// Adds a group starting after `start`; false when it exists.
    pub(crate) fn create_group(&mut self, name: &str, start: EntryId) -> bool {
        if self.groups.contains_key(name) {
            return false;
        }
        let on = self.entry_marks.on();
        let group = Group {
            last_delivered: start,
            pending_marks: Marks::new(on),
            consumer_marks: Marks::new(on),
            ..Group::default()
        };
        self.groups.insert(name.to_owned(), group);
        self.group_marks.mark(name.to_owned());
        true
    }

    /// Deletes a group; whether it existed.
    pub(crate) fn destroy_group(&mut self, name: &str) -> bool {
        let existed = self.groups.remove(name).is_some();
        if existed {
            self.group_marks.mark(name.to_owned());
        }
        existed
    }

    /// Trims the oldest entries down to `max` (exactly, here).
    fn trim(&mut self, max: Option<u64>) {
        if let Some(max) = max {
            while self.entries.len() as u64 > max {
                if let Some((id, _)) = self.entries.pop_first() {
                    self.entry_marks.mark(id);
                }
            }
        }
    }

    /// The journal's changes for this stream: everything (`full`) or what was marked.
    pub(crate) fn changes(&mut self, key: &str, full: bool, out: &mut Vec<Change>) {
        let entry_marks = self.entry_marks.take();
        let group_marks = self.group_marks.take();
        if full || std::mem::take(&mut self.last_id_changed) {
            out.push(Change::StreamLast {
                key: key.to_owned(),
                last_id: self.last_id,
            });
        }
        let entry = |id: EntryId, fields: Option<&SharedFields>| Change::Entry {
            key: key.to_owned(),
            id,
            fields: fields.cloned(),
        };
        if full {
            out.extend(self.entries.iter().map(|(id, f)| entry(*id, Some(f))));
        } else {
            out.extend(
                entry_marks
                    .into_iter()
                    .map(|id| entry(id, self.entries.get(&id))),
            );
        }
        for (name, g) in &mut self.groups {
            if full || group_marks.contains(name) {
                out.push(Change::Group {
                    key: key.to_owned(),
                    group: name.clone(),
                    last_delivered: Some(g.last_delivered),
                });
            }
            g.changes(key, name, full, out);
        }
        for name in group_marks {
            if !self.groups.contains_key(&name) {
                out.push(Change::Group {
                    key: key.to_owned(),
                    group: name,
                    last_delivered: None,
                });
            }
        }
    }

    /// Restores an entry read back from a journal's store.
    pub(crate) fn restore_entry(&mut self, id: EntryId, fields: SharedFields) {
        self.entries.insert(id, fields);
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The oldest entry's ID.
    pub(crate) fn first_id(&self) -> Option<EntryId> {
        self.entries.keys().next().copied()
    }

    /// Every group, by name, with its lag counted exactly.
    pub(crate) fn group_list(&self) -> Vec<GroupInfo> {
        let mut out: Vec<GroupInfo> = self
            .groups
            .iter()
            .map(|(name, g)| GroupInfo {
                name: name.clone(),
                consumers: g.consumers.len() as u64,
                pending: g.pending.len() as u64,
                last_delivered: g.last_delivered,
                lag: Some(
                    self.entries
                        .range((Bound::Excluded(g.last_delivered), Bound::Unbounded))
                        .count() as u64,
                ),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Appends each entry with a fresh ID (one clock reading for all), then trims to about
    /// `max_len` (exactly, here).
    pub(crate) fn add(&mut self, entries: Vec<Fields>, max_len: Option<u64>) -> Vec<EntryId> {
        let ms = wall_ms();
        let ids = entries
            .into_iter()
            .map(|fields| {
                let id = if ms > self.last_id.ms {
                    EntryId::new(ms, 0)
                } else {
                    self.last_id.next().unwrap_or(EntryId::MAX)
                };
                self.last_id = id;
                self.entries.insert(id, fields.into());
                self.entry_marks.mark(id);
                id
            })
            .collect();
        self.last_id_changed = true;
        self.trim(max_len);
        ids
    }

    /// Appends the one entry of `entries` under `id` (checked above the last ID by the
    /// caller), trimming to about `max_len`.
    pub(crate) fn add_with_id(
        &mut self,
        id: EntryId,
        entries: Vec<Fields>,
        max_len: Option<u64>,
    ) -> EntryId {
        for fields in entries {
            self.entries.insert(id, fields.into());
            self.entry_marks.mark(id);
        }
        self.last_id = id;
        self.last_id_changed = true;
        self.trim(max_len);
        id
    }

    /// Entries in `[start, end]`, at most `count`.
    pub(crate) fn range(
        &self,
        start: EntryId,
        end: EntryId,
        count: Option<usize>,
    ) -> Vec<StreamEntry> {
        if start > end {
            return Vec::new();
        }
        self.entries
            .range(start..=end)
            .take(count.unwrap_or(usize::MAX))
            .map(|(id, f)| to_entry(*id, f))
            .collect()
    }

    /// Entries strictly after `cursor`, at most `count`.
    pub(crate) fn after(&self, cursor: EntryId, count: usize) -> Vec<StreamEntry> {
        match cursor.next() {
            Some(start) => self.range(start, EntryId::MAX, Some(count)),
            None => Vec::new(),
        }
    }

    /// Deletes entries; returns how many existed.
    pub(crate) fn remove(&mut self, ids: &[EntryId]) -> u64 {
        let mut removed = 0;
        for id in ids {
            if self.entries.remove(id).is_some() {
                self.entry_marks.mark(*id);
                removed += 1;
            }
        }
        removed
    }

    /// Delivers new entries of `group` to `consumer`.
    pub(crate) fn group_read(
        &mut self,
        group: &str,
        consumer: &str,
        count: usize,
        no_ack: bool,
    ) -> Option<Vec<StreamEntry>> {
        let g = self.groups.get_mut(group)?;
        let now = Instant::now();
        g.seen(consumer, now);
        let start = g.last_delivered.next()?;
        let batch: Vec<StreamEntry> = self
            .entries
            .range(start..)
            .take(count)
            .map(|(id, f)| to_entry(*id, f))
            .collect();
        if let Some(last) = batch.last() {
            g.last_delivered = last.id;
            self.group_marks.mark(group.to_owned());
        }
        if !no_ack {
            let consumer: Arc<str> = consumer.into();
            for e in &batch {
                g.pending.insert(
                    e.id,
                    Pending {
                        consumer: consumer.clone(),
                        delivered_at: now,
                        deliveries: 1,
                    },
                );
                g.pending_marks.mark(e.id);
            }
        }
        Some(batch)
    }
}

impl Group {
    /// Records that `consumer` read or claimed at `now`.
    fn seen(&mut self, consumer: &str, now: Instant) {
        match self.consumers.get_mut(consumer) {
            Some(at) => *at = now,
            None => {
                self.consumers.insert(consumer.to_owned(), now);
            }
        }
        if self.consumer_marks.on() {
            self.consumer_marks.mark(consumer.to_owned());
        }
    }

    /// Forgets a pending entry; whether it was pending.
    fn unpend(&mut self, id: &EntryId) -> bool {
        let was = self.pending.remove(id).is_some();
        if was {
            self.pending_marks.mark(*id);
        }
        was
    }

    /// The journal's changes for this group: everything (`full`) or what was marked.
    fn changes(&mut self, key: &str, group: &str, full: bool, out: &mut Vec<Change>) {
        let pending_marks = self.pending_marks.take();
        let consumer_marks = self.consumer_marks.take();
        let pending = |id: EntryId, p: Option<&Pending>| Change::Pending {
            key: key.to_owned(),
            group: group.to_owned(),
            id,
            pending: p.map(|p| PendingRecord {
                consumer: p.consumer.to_string(),
                delivered_at_ms: wall_of(p.delivered_at),
                deliveries: p.deliveries,
            }),
        };
        let consumer = |name: &str, seen: Option<&Instant>| Change::Consumer {
            key: key.to_owned(),
            group: group.to_owned(),
            consumer: name.to_owned(),
            seen_ms: seen.map(|at| wall_of(*at)),
        };
        if full {
            out.extend(self.pending.iter().map(|(id, p)| pending(*id, Some(p))));
            out.extend(self.consumers.iter().map(|(c, at)| consumer(c, Some(at))));
        } else {
            out.extend(
                pending_marks
                    .into_iter()
                    .map(|id| pending(id, self.pending.get(&id))),
            );
            out.extend(
                consumer_marks
                    .iter()
                    .map(|c| consumer(c, self.consumers.get(c))),
            );
        }
    }

    /// Restores a pending entry read back from a journal's store.
    pub(crate) fn restore_pending(&mut self, id: EntryId, consumer: &str, at: Instant, n: u64) {
        let pending = Pending {
            consumer: consumer.into(),
            delivered_at: at,
            deliveries: n,
        };
        self.pending.insert(id, pending);
    }

    /// Restores a consumer read back from a journal's store.
    pub(crate) fn restore_consumer(&mut self, consumer: &str, seen: Instant) {
        self.consumers.insert(consumer.to_owned(), seen);
    }

    /// Acknowledges; returns how many were pending.
    pub(crate) fn ack(&mut self, ids: &[EntryId]) -> u64 {
        ids.iter().filter(|id| self.unpend(id)).count() as u64
    }

    /// `XCLAIM … IDLE … JUSTID`: pending `ids` to `consumer`, idle `idle`, counts kept.
    pub(crate) fn set_idle(
        &mut self,
        consumer: &str,
        ids: &[EntryId],
        idle: Duration,
    ) -> Vec<EntryId> {
        let now = Instant::now();
        self.seen(consumer, now);
        let who: Arc<str> = consumer.into();
        let since = now.checked_sub(idle).unwrap_or(now);
        let mut out = Vec::new();
        for id in ids {
            if let Some(p) = self.pending.get_mut(id) {
                p.consumer = who.clone();
                p.delivered_at = since;
                self.pending_marks.mark(*id);
                out.push(*id);
            }
        }
        out
    }

    fn transfer(&mut self, id: EntryId, consumer: &Arc<str>, now: Instant) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.consumer = consumer.clone();
            p.delivered_at = now;
            p.deliveries += 1;
            self.pending_marks.mark(id);
        }
    }

    /// `XAUTOCLAIM` semantics.
    pub(crate) fn claim_idle(
        &mut self,
        entries: &BTreeMap<EntryId, SharedFields>,
        consumer: &str,
        min_idle: Duration,
        start: EntryId,
        count: usize,
    ) -> AutoClaim {
        let now = Instant::now();
        self.seen(consumer, now);
        let who: Arc<str> = consumer.into();
        let mut claimed = Vec::new();
        let mut deleted = Vec::new();
        let mut next = EntryId::ZERO;
        let candidates: Vec<(EntryId, Instant)> = self
            .pending
            .range(start..)
            .map(|(id, p)| (*id, p.delivered_at))
            .collect();
        for (id, delivered_at) in candidates {
            if claimed.len() + deleted.len() >= count {
                next = id;
                break;
            }
            if now.saturating_duration_since(delivered_at) < min_idle {
                continue;
            }
            match entries.get(&id) {
                Some(f) => {
                    self.transfer(id, &who, now);
                    claimed.push(to_entry(id, f));
                }
                None => {
                    self.unpend(&id);
                    deleted.push(id);
                }
            }
        }
        AutoClaim {
            next,
            entries: claimed,
            deleted,
        }
    }

    /// `XCLAIM` semantics.
    pub(crate) fn claim(
        &mut self,
        entries: &BTreeMap<EntryId, SharedFields>,
        consumer: &str,
        min_idle: Duration,
        ids: &[EntryId],
    ) -> Vec<StreamEntry> {
        let now = Instant::now();
        self.seen(consumer, now);
        let who: Arc<str> = consumer.into();
        let mut out = Vec::new();
        for id in ids {
            let Some(p) = self.pending.get(id) else {
                continue;
            };
            if now.saturating_duration_since(p.delivered_at) < min_idle {
                continue;
            }
            match entries.get(id) {
                Some(f) => {
                    self.transfer(*id, &who, now);
                    out.push(to_entry(*id, f));
                }
                None => {
                    self.unpend(id);
                }
            }
        }
        out
    }

    /// Pending summary.
    pub(crate) fn summary(&self) -> PendingSummary {
        let mut per: BTreeMap<&str, u64> = BTreeMap::new();
        for p in self.pending.values() {
            *per.entry(&p.consumer).or_default() += 1;
        }
        PendingSummary {
            count: self.pending.len() as u64,
            min: self.pending.keys().next().copied(),
            max: self.pending.keys().next_back().copied(),
            consumers: per.into_iter().map(|(c, n)| (c.to_owned(), n)).collect(),
        }
    }

    /// Pending entries from `start`.
    pub(crate) fn pending(
        &self,
        consumer: Option<&str>,
        start: EntryId,
        count: usize,
    ) -> Vec<PendingEntry> {
        let now = Instant::now();
        self.pending
            .range(start..)
            .filter(|(_, p)| consumer.is_none_or(|c| c == &*p.consumer))
            .take(count)
            .map(|(id, p)| PendingEntry {
                id: *id,
                consumer: p.consumer.to_string(),
                idle: now.saturating_duration_since(p.delivered_at),
                deliveries: p.deliveries,
            })
            .collect()
    }

    /// Consumers sorted by name.
    pub(crate) fn consumers(&self) -> Vec<ConsumerInfo> {
        let now = Instant::now();
        self.consumers
            .iter()
            .map(|(name, seen)| ConsumerInfo {
                name: name.clone(),
                pending: self
                    .pending
                    .values()
                    .filter(|p| *p.consumer == **name)
                    .count() as u64,
                idle: now.saturating_duration_since(*seen),
            })
            .collect()
    }

    /// Registers a consumer; false if it existed.
    pub(crate) fn create_consumer(&mut self, consumer: &str) -> bool {
        if self.consumers.contains_key(consumer) {
            return false;
        }
        self.seen(consumer, Instant::now());
        true
    }

    /// Deletes a consumer and its pending entries; returns how many it had.
    pub(crate) fn delete_consumer(&mut self, consumer: &str) -> u64 {
        if self.consumers.remove(consumer).is_none() {
            return 0;
        }
        self.consumer_marks.mark(consumer.to_owned());
        let held: Vec<EntryId> = self
            .pending
            .iter()
            .filter(|(_, p)| &*p.consumer == consumer)
            .map(|(id, _)| *id)
            .collect();
        held.iter().filter(|id| self.unpend(id)).count() as u64
    }
}

impl StreamData {
    /// Splits borrows: a group and the entries.
    pub(crate) fn group_and_entries(
        &mut self,
        group: &str,
    ) -> Option<(&mut Group, &BTreeMap<EntryId, SharedFields>)> {
        let g = self.groups.get_mut(group)?;
        Some((g, &self.entries))
    }
}
