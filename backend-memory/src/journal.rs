//! The change journal: what each operation changed, for a store that keeps the data
//! somewhere else too (`pulse-redb` writes it to disk).
//!
//! A journaled backend ([`MemoryBackend::journaled`](crate::MemoryBackend::journaled))
//! marks what an operation touches while it holds the state lock — the key, and inside it
//! the hash fields, stream entries, groups, pending entries, consumers or delayed events —
//! and, when the lock is released, turns the marks into [`Change`]s carrying the values as
//! they are then. So:
//! - one operation's changes are appended together, after every earlier operation's (the
//!   lock orders them), and a consumer that takes a prefix of the journal never splits an
//!   operation;
//! - a change states a value, not a delta: applying the same change twice is harmless;
//! - a key written anew (created, or deleted and re-created in one operation) is a
//!   [`Change::Delete`] followed by its whole content, so nothing of an earlier value
//!   survives on the other side;
//! - times are wall-clock milliseconds since the Unix epoch (expiry, delivery and
//!   last-seen times), so they keep their meaning in another process; the state itself
//!   keeps `tokio` instants, converted both ways here.
//!
//! A backend without a journal pays one branch per operation for all of this.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use pulse::backend::{EntryId, Fields};
use tokio::time::Instant;

use crate::{
    delayed::Delayed,
    state::{Entry, HashFields, State, Value},
    streams::StreamData,
};

/// The type of value a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A hash (a map, a pool's records).
    Hash,
    /// A stream with its consumer groups.
    Stream,
    /// A string (a lease, a dedup key).
    Str,
    /// The delayed events of a stream.
    Delayed,
}

/// A pending (delivered, unacknowledged) entry of a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRecord {
    /// The consumer that holds it.
    pub consumer: String,
    /// When it was last delivered (wall-clock ms).
    pub delivered_at_ms: u64,
    /// How many times it was delivered.
    pub deliveries: u64,
}

/// One change, stating the value after it (`None`: gone).
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// `key` holds nothing: every part of it is gone.
    Delete {
        /// The key.
        key: String,
    },
    /// `key` exists, with this type and expiry (wall-clock ms, `None`: never).
    Key {
        /// The key.
        key: String,
        /// What it holds.
        kind: Kind,
        /// When it expires.
        expires_at_ms: Option<u64>,
    },
    /// A field of a hash.
    HashField {
        /// The hash's key.
        key: String,
        /// The field.
        field: String,
        /// Its value.
        value: Option<Bytes>,
    },
    /// The value of a string key.
    Str {
        /// The key.
        key: String,
        /// Its value.
        value: Bytes,
    },
    /// The last ID a stream generated (kept when entries are trimmed).
    StreamLast {
        /// The stream's key.
        key: String,
        /// The last ID.
        last_id: EntryId,
    },
    /// An entry of a stream.
    Entry {
        /// The stream's key.
        key: String,
        /// The entry's ID.
        id: EntryId,
        /// Its fields.
        fields: Option<Arc<[(String, Bytes)]>>,
    },
    /// A consumer group; `None` deletes it with its pending entries and consumers.
    Group {
        /// The stream's key.
        key: String,
        /// The group.
        group: String,
        /// The last entry delivered to the group.
        last_delivered: Option<EntryId>,
    },
    /// A pending entry of a group.
    Pending {
        /// The stream's key.
        key: String,
        /// The group.
        group: String,
        /// The entry's ID.
        id: EntryId,
        /// Who holds it, since when, how often delivered.
        pending: Option<PendingRecord>,
    },
    /// A consumer of a group and when it was last seen (wall-clock ms).
    Consumer {
        /// The stream's key.
        key: String,
        /// The group.
        group: String,
        /// The consumer.
        consumer: String,
        /// When it last read or claimed.
        seen_ms: Option<u64>,
    },
    /// A delayed event and its due time (wall-clock ms).
    Delayed {
        /// The key of the stream's delayed events.
        key: String,
        /// The event's unique ID.
        id: String,
        /// Its due time and fields.
        held: Option<(u64, Fields)>,
    },
}

/// What an operation did to a key.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyMark {
    /// Written anew: delete whatever was there, then write all of it.
    pub(crate) fresh: bool,
    /// Its expiry changed.
    pub(crate) meta: bool,
}

/// Called (under the state lock: it must be quick) whenever changes are appended.
pub type OnChange = Arc<dyn Fn() + Send + Sync>;

/// The journal of a journaled backend.
pub(crate) struct Journal {
    /// Keys touched by the operation holding the lock.
    pub(crate) dirty: BTreeMap<String, KeyMark>,
    /// Changes not yet taken.
    pub(crate) changes: Vec<Change>,
    /// How many changes were ever appended.
    pub(crate) position: u64,
    /// Told when changes are appended.
    pub(crate) on_change: OnChange,
}

impl Journal {
    pub(crate) fn new(on_change: OnChange) -> Self {
        Journal {
            dirty: BTreeMap::new(),
            changes: Vec::new(),
            position: 0,
            on_change,
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dirty", &self.dirty.len())
            .field("changes", &self.changes.len())
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// The sub-items of one value an operation touched; off (`None`) without a journal.
#[derive(Debug)]
pub(crate) struct Marks<T: Ord>(Option<BTreeSet<T>>);

impl<T: Ord> Default for Marks<T> {
    fn default() -> Self {
        Marks(None)
    }
}

impl<T: Ord> Marks<T> {
    /// Marks that record when `on`.
    pub(crate) fn new(on: bool) -> Self {
        Marks(on.then(BTreeSet::new))
    }

    /// Whether this value is journaled.
    pub(crate) fn on(&self) -> bool {
        self.0.is_some()
    }

    /// Records that `item` changed.
    pub(crate) fn mark(&mut self, item: T) {
        if let Some(set) = &mut self.0 {
            set.insert(item);
        }
    }

    /// Takes what was recorded.
    pub(crate) fn take(&mut self) -> BTreeSet<T> {
        self.0.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

/// Wall-clock milliseconds now.
pub(crate) fn wall_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wall-clock time of an instant of the state's clock.
pub(crate) fn wall_of(at: Instant) -> u64 {
    let now = Instant::now();
    let wall = wall_now_ms();
    if at >= now {
        wall.saturating_add((at - now).as_millis() as u64)
    } else {
        wall.saturating_sub((now - at).as_millis() as u64)
    }
}

/// The instant of the state's clock at a wall-clock time.
pub(crate) fn instant_of(ms: u64) -> Instant {
    let now = Instant::now();
    let wall = wall_now_ms();
    if ms >= wall {
        now + Duration::from_millis(ms - wall)
    } else {
        now.checked_sub(Duration::from_millis(wall - ms))
            .unwrap_or(now)
    }
}

impl State {
    /// Turns the marks of the operation that held the lock into changes (the lock is being
    /// released). With `emit` false the marks are only cleared (after a restore).
    pub(crate) fn flush_journal(&mut self, emit: bool) {
        let Some(j) = &mut self.journal else { return };
        if j.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut j.dirty);
        let mut out = Vec::new();
        for (key, mark) in dirty {
            let start = out.len();
            match self.keys.get_mut(&key) {
                None => out.push(Change::Delete { key }),
                Some(entry) => {
                    if mark.fresh {
                        out.push(Change::Delete { key: key.clone() });
                    }
                    if mark.fresh || mark.meta {
                        out.push(Change::Key {
                            key: key.clone(),
                            kind: entry.value.kind(),
                            expires_at_ms: entry.expires_at.map(wall_of),
                        });
                    }
                    entry.value.changes(&key, mark.fresh, &mut out);
                }
            }
            if !emit {
                out.truncate(start);
            }
        }
        if let Some(j) = &mut self.journal {
            if !out.is_empty() {
                j.position += out.len() as u64;
                j.changes.append(&mut out);
                (j.on_change)();
            }
        }
    }

    /// Applies a change read back from a journal's store (no marks: nothing to write back).
    pub(crate) fn restore(&mut self, change: Change) {
        let journaled = self.journaled();
        match change {
            Change::Delete { key } => {
                self.keys.remove(&key);
            }
            Change::Key {
                key,
                kind,
                expires_at_ms,
            } => {
                let value = match kind {
                    Kind::Hash => Value::Hash(HashFields::new(journaled)),
                    Kind::Stream => Value::Stream(StreamData::new(journaled)),
                    Kind::Str => Value::Str(Bytes::new()),
                    Kind::Delayed => Value::Delayed(Delayed::new(journaled)),
                };
                let expires_at = expires_at_ms.map(instant_of);
                self.mark(&key, true, false);
                self.keys.insert(key, Entry { value, expires_at });
            }
            Change::HashField { key, field, value } => {
                if let (Some(Value::Hash(h)), Some(v)) = (self.value_mut(&key), value) {
                    h.insert(field, v);
                }
            }
            Change::Str { key, value } => {
                if let Some(Value::Str(s)) = self.value_mut(&key) {
                    *s = value;
                }
            }
            Change::StreamLast { key, last_id } => {
                if let Some(Value::Stream(s)) = self.value_mut(&key) {
                    s.last_id = last_id;
                }
            }
            Change::Entry { key, id, fields } => {
                if let (Some(Value::Stream(s)), Some(f)) = (self.value_mut(&key), fields) {
                    s.restore_entry(id, f);
                }
            }
            Change::Group {
                key,
                group,
                last_delivered,
            } => {
                if let (Some(Value::Stream(s)), Some(last)) = (self.value_mut(&key), last_delivered)
                {
                    s.create_group(&group, last);
                }
            }
            Change::Pending {
                key,
                group,
                id,
                pending,
            } => {
                if let (Some(Value::Stream(s)), Some(p)) = (self.value_mut(&key), pending) {
                    if let Some(g) = s.groups.get_mut(&group) {
                        let at = instant_of(p.delivered_at_ms);
                        g.restore_pending(id, &p.consumer, at, p.deliveries);
                    }
                }
            }
            Change::Consumer {
                key,
                group,
                consumer,
                seen_ms,
            } => {
                if let (Some(Value::Stream(s)), Some(ms)) = (self.value_mut(&key), seen_ms) {
                    if let Some(g) = s.groups.get_mut(&group) {
                        g.restore_consumer(&consumer, instant_of(ms));
                    }
                }
            }
            Change::Delayed { key, id, held } => {
                if let (Some(Value::Delayed(d)), Some((due, fields))) = (self.value_mut(&key), held)
                {
                    d.insert(&id, due, fields);
                }
            }
        }
    }

    fn value_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.keys.get_mut(key).map(|e| &mut e.value)
    }
}

impl Value {
    /// The type this value is.
    fn kind(&self) -> Kind {
        match self {
            Value::Hash(_) => Kind::Hash,
            Value::Stream(_) => Kind::Stream,
            Value::Str(_) => Kind::Str,
            Value::Delayed(_) => Kind::Delayed,
        }
    }

    /// The journal's changes for this value: everything (`full`) or what was marked.
    fn changes(&mut self, key: &str, full: bool, out: &mut Vec<Change>) {
        match self {
            Value::Hash(h) => {
                let marks = h.marks.take();
                let field = |f: &str, v: Option<&Bytes>| Change::HashField {
                    key: key.to_owned(),
                    field: f.to_owned(),
                    value: v.cloned(),
                };
                if full {
                    out.extend(h.iter().map(|(f, v)| field(f, Some(v))));
                } else {
                    out.extend(marks.iter().map(|f| field(f, h.get(f))));
                }
            }
            Value::Str(v) => {
                if full {
                    out.push(Change::Str {
                        key: key.to_owned(),
                        value: v.clone(),
                    });
                }
            }
            Value::Stream(s) => s.changes(key, full, out),
            Value::Delayed(d) => d.changes(key, full, out),
        }
    }
}
