//! The typed atomic operations, each run entirely under the state lock so that the change,
//! the revision bump, the notice and the TTL happen as one step, and notices are published
//! in commit order.

use std::time::Duration;

use bytes::Bytes;
use pulse::{
    backend::{
        DeleteCondition, DeleteOutcome, EntryId, IncrementOutcome, ListEdit, ListOutcome,
        MapTarget, MapWrite, ResetOutcome, Revision, SetCondition, SetOutcome, Ttl,
    },
    codec::{self, MapChange, MapNotice},
    keys::validate_map_key,
    Error, Result,
};
use tokio::time::Instant;

use crate::state::{wrong_type, Entry, HashFields, State, Value};

const REV: &str = "=rev";
const EPOCH: &str = "=epoch";
const KIND: &str = "=kind";

fn parse_u64(h: &HashFields, field: &str) -> Option<u64> {
    h.get(field)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
}

/// The revision of an existing hash (`0/0` when missing).
fn revision_of(h: Option<&HashFields>) -> Revision {
    match h {
        None => Revision::default(),
        Some(h) => Revision {
            epoch: parse_u64(h, EPOCH).unwrap_or(0),
            rev: parse_u64(h, REV).unwrap_or(0),
        },
    }
}

/// Sets a bookkeeping field, without allocating its name again when it is already there.
fn put(h: &mut HashFields, field: &str, value: Bytes) {
    match h.get_mut(field) {
        Some(slot) => *slot = value,
        None => {
            h.insert(field.to_owned(), value);
        }
    }
}

/// Bumps the revision of `h`, creating the epoch if needed.
fn bump(h: &mut HashFields, seed: u64, kind: &'static str) -> Result<Revision> {
    let epoch = match parse_u64(h, EPOCH) {
        Some(e) if e > 0 => e,
        _ => {
            put(h, EPOCH, Bytes::from(seed.to_string()));
            seed
        }
    };
    let rev = match h.get(REV) {
        None => 0,
        Some(_) => parse_u64(h, REV).ok_or_else(|| Error::InvalidValue {
            key: REV.to_owned(),
            reason: "revision is not an integer".into(),
        })?,
    } + 1;
    put(h, REV, Bytes::from(rev.to_string()));
    put(h, KIND, Bytes::from_static(kind.as_bytes()));
    Ok(Revision { epoch, rev })
}

impl State {
    /// Publishes the notice of `change`; a set of a value over the notice budget travels
    /// as `Changed` (see [`codec::NOTICE_VALUE_BUDGET`]).
    fn notify(&mut self, map: &MapTarget, revision: Revision, change: MapChange) -> Result<()> {
        let notice = match change {
            MapChange::Set { key, value } => {
                MapNotice::set(revision.epoch, revision.rev, &key, &value)
            }
            change => MapNotice {
                epoch: revision.epoch,
                rev: revision.rev,
                change,
            },
        };
        let frame = notice.encode()?;
        self.publish(&map.channel, Bytes::from(frame));
        Ok(())
    }

    /// Applies a TTL to an existing key, as `PEXPIRE [NX]`.
    pub(crate) fn apply_ttl(&mut self, key: &str, ttl: Option<Ttl>) -> bool {
        let Some(ttl) = ttl else { return false };
        let Some(entry) = self.live(key) else {
            return false;
        };
        let at = Instant::now() + Duration::from_millis(ttl.millis());
        match ttl {
            Ttl::Absolute(_) if entry.expires_at.is_some() => false,
            _ => {
                self.set_expiry(key, Some(at));
                true
            }
        }
    }

    fn current(&mut self, map: &MapTarget) -> Result<Revision> {
        Ok(revision_of(self.hash(&map.hash)?))
    }

    pub(crate) fn map_set(
        &mut self,
        map: &MapTarget,
        key: &str,
        value: Bytes,
        cond: SetCondition,
    ) -> Result<SetOutcome> {
        let mut outcomes = self.map_set_many(map, vec![MapWrite::new(key, value, cond)])?;
        outcomes
            .pop()
            .ok_or_else(|| Error::malformed("map_set", "no outcome"))
    }

    /// Applies the writes in order; publishes one frame for the sets written (a plain set
    /// notice for one, a batch for several), as the Redis script does.
    pub(crate) fn map_set_many(
        &mut self,
        map: &MapTarget,
        writes: Vec<MapWrite>,
    ) -> Result<Vec<SetOutcome>> {
        MapWrite::validate_all(&writes)?;
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        // A revision that is not an integer fails the batch before anything is written.
        let existed = self.hash(&map.hash)?.is_some();
        let h = self.hash_mut(&map.hash)?;
        let mut rev = match h.get(REV) {
            None => 0,
            Some(_) => parse_u64(h, REV).ok_or_else(|| Error::InvalidValue {
                key: REV.to_owned(),
                reason: "revision is not an integer".into(),
            })?,
        };
        // As the Redis script does: values as they come, the bookkeeping once at the end.
        let mut epoch = parse_u64(h, EPOCH).unwrap_or(0);
        let new_generation = epoch == 0;
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut written: Vec<(String, Bytes)> = Vec::new();
        for MapWrite {
            key,
            value,
            condition,
        } in writes
        {
            let previous = h.get(&key).cloned();
            let write = match (&condition, &previous) {
                (SetCondition::Always, _) => true,
                (SetCondition::IfAbsent, p) => p.is_none(),
                (SetCondition::IfEqual(test), Some(p)) => p == test,
                (SetCondition::IfEqual(_), None) => false,
            };
            if write {
                h.insert(key.clone(), value.clone());
            }
            if write {
                if new_generation {
                    epoch = map.epoch_seed;
                }
                rev += 1;
                written.push((key, value));
            }
            outcomes.push(SetOutcome {
                previous,
                written: write,
                revision: Revision { epoch, rev },
            });
        }
        if written.is_empty() {
            if !existed {
                self.drop_key(&map.hash);
            }
        } else {
            if new_generation {
                put(h, EPOCH, Bytes::from(epoch.to_string()));
            }
            put(h, REV, Bytes::from(rev.to_string()));
            put(h, KIND, Bytes::from_static(b"set"));
            let first = rev + 1 - written.len() as u64;
            let sets: Vec<(&str, &[u8])> = written
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_ref()))
                .collect();
            let frame = MapNotice::encode_sets(epoch, first, &sets)?;
            self.publish(&map.channel, Bytes::from(frame));
        }
        self.apply_ttl(&map.hash, map.ttl);
        Ok(outcomes)
    }

    pub(crate) fn map_delete(
        &mut self,
        map: &MapTarget,
        key: &str,
        cond: DeleteCondition,
    ) -> Result<DeleteOutcome> {
        validate_map_key(key)?;
        let previous = self.hash(&map.hash)?.and_then(|h| h.get(key).cloned());
        let delete = match (&cond, &previous) {
            (_, None) => false,
            (DeleteCondition::Always, Some(_)) => true,
            (DeleteCondition::IfEqual(test), Some(p)) => p == test,
        };
        let revision = if delete {
            let h = self.hash_mut(&map.hash)?;
            h.remove(key);
            let revision = bump(h, map.epoch_seed, "del")?;
            self.notify(
                map,
                revision,
                MapChange::Delete {
                    key: key.to_owned(),
                },
            )?;
            revision
        } else {
            self.current(map)?
        };
        self.apply_ttl(&map.hash, map.ttl);
        Ok(DeleteOutcome {
            previous,
            deleted: delete,
            revision,
        })
    }

    pub(crate) fn map_increment(
        &mut self,
        map: &MapTarget,
        key: &str,
        delta: i64,
    ) -> Result<IncrementOutcome> {
        validate_map_key(key)?;
        let invalid = |reason: &str| Error::InvalidValue {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let current = match self.hash(&map.hash)?.and_then(|h| h.get(key)) {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .filter(|s| is_redis_integer(s))
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| invalid("hash value is not an integer"))?,
        };
        let value = current
            .checked_add(delta)
            .ok_or_else(|| invalid("increment would overflow"))?;
        let text = Bytes::from(value.to_string());
        let h = self.hash_mut(&map.hash)?;
        h.insert(key.to_owned(), text.clone());
        let revision = bump(h, map.epoch_seed, "set")?;
        self.notify(
            map,
            revision,
            MapChange::Set {
                key: key.to_owned(),
                value: text,
            },
        )?;
        self.apply_ttl(&map.hash, map.ttl);
        Ok(IncrementOutcome { value, revision })
    }

    pub(crate) fn map_edit_list(
        &mut self,
        map: &MapTarget,
        key: &str,
        edit: ListEdit,
        items: Vec<Bytes>,
    ) -> Result<ListOutcome> {
        validate_map_key(key)?;
        let stored = self.hash(&map.hash)?.and_then(|h| h.get(key).cloned());
        let current = match &stored {
            None => None,
            Some(v) => Some(codec::decode_list(v).map_err(|_| Error::InvalidValue {
                key: key.to_owned(),
                reason: "value is not a list".into(),
            })?),
        };
        let mut list = current.clone().unwrap_or_default();
        let changed = match edit {
            ListEdit::Append => {
                list.extend(items);
                list.len() != current.as_ref().map_or(0, Vec::len)
            }
            ListEdit::AppendUnique => {
                let before = list.len();
                for item in items {
                    if !list.contains(&item) {
                        list.push(item);
                    }
                }
                list.len() != before
            }
            ListEdit::Remove => {
                let before = list.len();
                list.retain(|v| !items.contains(v));
                current.is_some() && list.len() != before
            }
        };
        if !changed {
            let revision = self.current(map)?;
            self.apply_ttl(&map.hash, map.ttl);
            return Ok(ListOutcome {
                list: current,
                changed: false,
                revision,
            });
        }
        let h = self.hash_mut(&map.hash)?;
        let (revision, out) = if list.is_empty() && edit == ListEdit::Remove {
            h.remove(key);
            let revision = bump(h, map.epoch_seed, "del")?;
            self.notify(
                map,
                revision,
                MapChange::Delete {
                    key: key.to_owned(),
                },
            )?;
            (revision, None)
        } else {
            let value = Bytes::from(codec::encode_list(&list));
            if value.len() > map.max_value {
                return Err(Error::PayloadTooLarge {
                    size: value.len(),
                    limit: map.max_value,
                });
            }
            h.insert(key.to_owned(), value.clone());
            let revision = bump(h, map.epoch_seed, "set")?;
            self.notify(
                map,
                revision,
                MapChange::Set {
                    key: key.to_owned(),
                    value,
                },
            )?;
            (revision, Some(list))
        };
        self.apply_ttl(&map.hash, map.ttl);
        Ok(ListOutcome {
            list: out,
            changed: true,
            revision,
        })
    }

    pub(crate) fn map_reset(
        &mut self,
        map: &MapTarget,
        tests: Vec<(String, Bytes)>,
        destroy: bool,
    ) -> Result<ResetOutcome> {
        for (k, _) in &tests {
            validate_map_key(k)?;
        }
        let hash = self.hash(&map.hash)?;
        let matches = tests
            .iter()
            .all(|(k, v)| hash.and_then(|h| h.get(k)) == Some(v));
        if !matches {
            let revision = self.current(map)?;
            self.apply_ttl(&map.hash, map.ttl);
            return Ok(ResetOutcome {
                reset: false,
                revision,
            });
        }
        let before = revision_of(hash);
        if destroy {
            // Nothing is left behind; a later write starts a new generation.
            let existed = self.remove(&map.hash);
            let revision = Revision {
                epoch: if before.epoch > 0 {
                    before.epoch
                } else {
                    map.epoch_seed
                },
                rev: before.rev + 1,
            };
            if existed && before.epoch > 0 {
                self.notify(map, revision, MapChange::Destroy)?;
            }
            return Ok(ResetOutcome {
                reset: true,
                revision,
            });
        }
        let mut tomb = HashFields::new(self.journaled());
        if before.epoch > 0 {
            tomb.insert(EPOCH.to_owned(), Bytes::from(before.epoch.to_string()));
        }
        if before.rev > 0 {
            tomb.insert(REV.to_owned(), Bytes::from(before.rev.to_string()));
        }
        let (kind, change) = if destroy {
            ("destroy", MapChange::Destroy)
        } else {
            ("reset", MapChange::Reset)
        };
        let revision = bump(&mut tomb, map.epoch_seed, kind)?;
        // Re-created: the old expiry is dropped, like DEL + HSET.
        self.insert_key(
            &map.hash,
            Entry {
                value: Value::Hash(tomb),
                expires_at: None,
            },
        );
        self.notify(map, revision, change)?;
        self.apply_ttl(&map.hash, map.ttl);
        Ok(ResetOutcome {
            reset: true,
            revision,
        })
    }

    pub(crate) fn lease_acquire(&mut self, key: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let free = match self.live(key) {
            None => true,
            Some(Entry {
                value: Value::Str(v),
                ..
            }) => v.as_ref() == holder.as_bytes(),
            Some(_) => return Err(wrong_type(key)),
        };
        if free {
            let expires_at = Some(Instant::now() + ttl.max(Duration::from_millis(1)));
            let value = Value::Str(Bytes::copy_from_slice(holder.as_bytes()));
            self.insert_key(key, Entry { value, expires_at });
        }
        Ok(free)
    }

    /// The entry ID a dedup key holds (a string key, as on Redis).
    pub(crate) fn dedup_get(&mut self, key: &str) -> Result<Option<EntryId>> {
        match self.live(key) {
            None => Ok(None),
            Some(Entry {
                value: Value::Str(v),
                ..
            }) => Ok(std::str::from_utf8(v).ok().and_then(|s| s.parse().ok())),
            Some(_) => Err(wrong_type(key)),
        }
    }

    /// Stores `id` under dedup key `key` for `window`.
    pub(crate) fn dedup_set(&mut self, key: &str, id: EntryId, window: Duration) {
        let expires_at = Some(Instant::now() + window.max(Duration::from_millis(1)));
        let value = Value::Str(Bytes::from(id.to_string()));
        self.insert_key(key, Entry { value, expires_at });
    }

    pub(crate) fn lease_release(&mut self, key: &str, holder: &str) -> Result<bool> {
        match self.live(key) {
            Some(Entry {
                value: Value::Str(v),
                ..
            }) if v.as_ref() == holder.as_bytes() => {
                self.drop_key(key);
                Ok(true)
            }
            None
            | Some(Entry {
                value: Value::Str(_),
                ..
            }) => Ok(false),
            Some(_) => Err(wrong_type(key)),
        }
    }
}

/// Redis' integer syntax: optional `-`, digits, no leading zeros, no `+`.
fn is_redis_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_integer_syntax() {
        assert!(is_redis_integer("-12") && !is_redis_integer("+1") && !is_redis_integer("01"));
    }
}
