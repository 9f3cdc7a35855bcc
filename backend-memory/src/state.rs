//! The single critical section of the memory backend: every key, subscription and waiter.
//!
//! Invariants: an expired key is never observed (every access goes through [`State::live`]
//! or [`State::live_mut`], which drop it first); a stream append, key deletion or group
//! change wakes every blocked reader registered on that key; with a journal, every key an
//! operation creates, removes or reaches mutably is marked for it (see [`crate::journal`]),
//! which is why keys are only ever inserted or removed through the methods here.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Deref,
    sync::{Arc, Weak},
};

use bytes::Bytes;
use pulse::{backend::PubSubEvent, Error, Result};
use tokio::{
    sync::{mpsc, Notify},
    time::Instant,
};

use crate::{
    delayed::Delayed,
    journal::{Journal, KeyMark, Marks},
    streams::StreamData,
};

/// A hash's fields, ordered so a scan can resume after the last field it returned. Reads
/// go through `Deref`; every write goes through a method here, which marks the field.
#[derive(Debug, Default)]
pub(crate) struct HashFields {
    map: BTreeMap<String, Bytes>,
    pub(crate) marks: Marks<String>,
}

impl Deref for HashFields {
    type Target = BTreeMap<String, Bytes>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl HashFields {
    /// An empty hash, journaled when `journaled`.
    pub(crate) fn new(journaled: bool) -> Self {
        HashFields {
            map: BTreeMap::new(),
            marks: Marks::new(journaled),
        }
    }

    /// Sets `field`; the previous value.
    pub(crate) fn insert(&mut self, field: String, value: Bytes) -> Option<Bytes> {
        if self.marks.on() {
            self.marks.mark(field.clone());
        }
        self.map.insert(field, value)
    }

    /// Deletes `field`; its value.
    pub(crate) fn remove(&mut self, field: &str) -> Option<Bytes> {
        let old = self.map.remove(field);
        if old.is_some() {
            self.marks.mark(field.to_owned());
        }
        old
    }

    /// The value of `field`, to change in place.
    pub(crate) fn get_mut(&mut self, field: &str) -> Option<&mut Bytes> {
        if self.marks.on() && self.map.contains_key(field) {
            self.marks.mark(field.to_owned());
        }
        self.map.get_mut(field)
    }
}

/// A stored value.
#[derive(Debug)]
pub(crate) enum Value {
    Hash(HashFields),
    Stream(StreamData),
    Str(Bytes),
    Delayed(Delayed),
}

/// A key's value and expiry.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) value: Value,
    pub(crate) expires_at: Option<Instant>,
}

/// One subscription's sender and channels.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) tx: mpsc::UnboundedSender<PubSubEvent>,
    pub(crate) channels: Vec<String>,
}

/// Everything the backend stores.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) keys: HashMap<String, Entry>,
    /// channel → subscription ids.
    pub(crate) channels: HashMap<String, Vec<u64>>,
    pub(crate) subscribers: BTreeMap<u64, Subscriber>,
    pub(crate) next_subscriber: u64,
    /// key → readers blocked on it.
    pub(crate) waiters: HashMap<String, Vec<Weak<Notify>>>,
    /// What operations changed, when the backend is journaled.
    pub(crate) journal: Option<Journal>,
}

impl State {
    /// Whether values created now must record what changes in them.
    pub(crate) fn journaled(&self) -> bool {
        self.journal.is_some()
    }

    /// Marks `key` as touched by the current operation: written anew (`fresh`), its expiry
    /// changed (`meta`), or reached mutably (neither).
    pub(crate) fn mark(&mut self, key: &str, fresh: bool, meta: bool) {
        if let Some(j) = &mut self.journal {
            let mark = match j.dirty.get_mut(key) {
                Some(m) => m,
                None => j.dirty.entry(key.to_owned()).or_insert(KeyMark::default()),
            };
            mark.fresh |= fresh;
            mark.meta |= meta;
        }
    }

    /// Stores `entry` at `key`, replacing whatever was there (it is written anew).
    pub(crate) fn insert_key(&mut self, key: &str, entry: Entry) {
        self.mark(key, true, true);
        self.keys.insert(key.to_owned(), entry);
    }

    /// Drops `key` without waking anyone.
    pub(crate) fn drop_key(&mut self, key: &str) {
        if self.keys.remove(key).is_some() {
            self.mark(key, false, false);
        }
    }

    /// Sets the expiry of a live key.
    pub(crate) fn set_expiry(&mut self, key: &str, at: Option<Instant>) {
        if let Some(e) = self.keys.get_mut(key) {
            e.expires_at = at;
            self.mark(key, false, true);
        }
    }

    fn purge_if_expired(&mut self, key: &str) {
        let expired = self
            .keys
            .get(key)
            .and_then(|e| e.expires_at)
            .is_some_and(|at| at <= Instant::now());
        if expired {
            self.drop_key(key);
            self.wake(key);
        }
    }

    /// The live entry at `key`, if any.
    pub(crate) fn live(&mut self, key: &str) -> Option<&Entry> {
        self.purge_if_expired(key);
        self.keys.get(key)
    }

    /// The live entry at `key`, mutably.
    pub(crate) fn live_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.purge_if_expired(key);
        if self.keys.contains_key(key) {
            self.mark(key, false, false);
        }
        self.keys.get_mut(key)
    }

    /// The hash at `key` (`None` when missing); `WrongType` for another type.
    pub(crate) fn hash(&mut self, key: &str) -> Result<Option<&HashFields>> {
        match self.live(key) {
            None => Ok(None),
            Some(Entry {
                value: Value::Hash(h),
                ..
            }) => Ok(Some(h)),
            Some(_) => Err(wrong_type(key)),
        }
    }

    /// The value at `key`, made by `make` (told whether to journal) when missing.
    fn ensure(&mut self, key: &str, make: impl FnOnce(bool) -> Value) -> Option<&mut Value> {
        self.purge_if_expired(key);
        if !self.keys.contains_key(key) {
            let value = make(self.journaled());
            self.insert_key(
                key,
                Entry {
                    value,
                    expires_at: None,
                },
            );
        }
        self.mark(key, false, false);
        self.keys.get_mut(key).map(|e| &mut e.value)
    }

    /// The hash at `key`, created empty when missing.
    pub(crate) fn hash_mut(&mut self, key: &str) -> Result<&mut HashFields> {
        match self.ensure(key, |journaled| Value::Hash(HashFields::new(journaled))) {
            Some(Value::Hash(h)) => Ok(h),
            _ => Err(wrong_type(key)),
        }
    }

    /// The stream at `key` (`None` when missing); `WrongType` for another type.
    pub(crate) fn stream(&mut self, key: &str) -> Result<Option<&mut StreamData>> {
        match self.live_mut(key) {
            None => Ok(None),
            Some(Entry {
                value: Value::Stream(s),
                ..
            }) => Ok(Some(s)),
            Some(_) => Err(wrong_type(key)),
        }
    }

    /// The delayed events held under `key` (`None` when missing); `WrongType` for another
    /// type.
    pub(crate) fn delayed(&mut self, key: &str) -> Result<Option<&mut Delayed>> {
        match self.live_mut(key) {
            None => Ok(None),
            Some(Entry {
                value: Value::Delayed(d),
                ..
            }) => Ok(Some(d)),
            Some(_) => Err(wrong_type(key)),
        }
    }

    /// The delayed events held under `key`, created empty when missing.
    pub(crate) fn delayed_or_create(&mut self, key: &str) -> Result<&mut Delayed> {
        match self.ensure(key, |journaled| Value::Delayed(Delayed::new(journaled))) {
            Some(Value::Delayed(d)) => Ok(d),
            _ => Err(wrong_type(key)),
        }
    }

    /// The stream at `key`, created empty when missing.
    pub(crate) fn stream_or_create(&mut self, key: &str) -> Result<&mut StreamData> {
        match self.ensure(key, |journaled| Value::Stream(StreamData::new(journaled))) {
            Some(Value::Stream(s)) => Ok(s),
            _ => Err(wrong_type(key)),
        }
    }

    /// Removes `key` (waking its readers); returns whether it existed.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        let existed = self.live(key).is_some();
        self.drop_key(key);
        self.wake(key);
        existed
    }

    /// Wakes every reader blocked on `key`.
    pub(crate) fn wake(&mut self, key: &str) {
        if let Some(list) = self.waiters.remove(key) {
            for w in list.iter().filter_map(Weak::upgrade) {
                w.notify_one();
            }
        }
    }

    /// Registers `notify` to be woken when any of `keys` changes.
    pub(crate) fn register_waiter<'a>(
        &mut self,
        keys: impl IntoIterator<Item = &'a String>,
        notify: &Arc<Notify>,
    ) {
        for key in keys {
            let list = self.waiters.entry(key.clone()).or_default();
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(notify));
        }
    }

    /// The earliest expiry among `keys`, so blocked readers notice keys vanishing.
    pub(crate) fn earliest_expiry<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a String>,
    ) -> Option<Instant> {
        keys.into_iter()
            .filter_map(|k| self.keys.get(k).and_then(|e| e.expires_at))
            .min()
    }

    /// Delivers `payload` to every subscription of `channel`, in call order.
    pub(crate) fn publish(&mut self, channel: &str, payload: Bytes) -> u64 {
        let Some(ids) = self.channels.get(channel) else {
            return 0;
        };
        let mut delivered = 0;
        for id in ids {
            if let Some(sub) = self.subscribers.get(id) {
                let event = PubSubEvent::Message {
                    channel: channel.to_owned(),
                    payload: payload.clone(),
                };
                if sub.tx.send(event).is_ok() {
                    delivered += 1;
                }
            }
        }
        delivered
    }
}

pub(crate) fn wrong_type(key: &str) -> Error {
    Error::WrongType {
        key: key.to_owned(),
    }
}
