//! The on-disk layout: the journal's [`Change`]s written into redb tables, and read back.
//!
//! Every table maps bytes to bytes. A key's parts share the prefix `len(key) as u32 BE ++
//! key`, so everything of one key (or of one group) is one contiguous range, deleted in one
//! step when the key is. Entry IDs are `ms ++ seq`, big-endian, so byte order is ID order.
//!
//! | table | key | value |
//! |---|---|---|
//! | `keys` | key | kind (1 byte: h, s, t, d), expiry flag (1), expiry ms (8) |
//! | `hash_fields` | P(key) ++ field | value |
//! | `strings` | key | value |
//! | `streams` | key | last ID (16) |
//! | `entries` | P(key) ++ ID | packed fields |
//! | `groups` | P(key) ++ group | last delivered ID (16) |
//! | `pending` | P(key) ++ P(group) ++ ID | delivered ms (8), deliveries (8), consumer |
//! | `consumers` | P(key) ++ P(group) ++ consumer | last seen ms (8) |
//! | `delayed` | P(key) ++ id | due ms (8), packed fields |
//! | `meta` | `"format"` | `1` |
//!
//! Anything that does not decode is reported as [`Error::Malformed`] naming the table,
//! never a panic: a file written by something else fails its open, it is not guessed at.

use std::{path::Path, sync::Arc};

use bytes::Bytes;
use pulse::{
    backend::{pack_fields, unpack_fields, EntryId},
    Error, Result,
};
use pulse_memory::journal::{Change, Kind, PendingRecord};
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

const KEYS: Def = TableDefinition::new("keys");
const FIELDS: Def = TableDefinition::new("hash_fields");
const STRINGS: Def = TableDefinition::new("strings");
const STREAMS: Def = TableDefinition::new("streams");
const ENTRIES: Def = TableDefinition::new("entries");
const GROUPS: Def = TableDefinition::new("groups");
const PENDING: Def = TableDefinition::new("pending");
const CONSUMERS: Def = TableDefinition::new("consumers");
const DELAYED: Def = TableDefinition::new("delayed");
const META: Def = TableDefinition::new("meta");

/// The layout version this code writes and reads.
const FORMAT: &[u8] = b"1";

/// A storage failure, as the contract's error.
pub(crate) fn storage(op: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        op,
        message: e.to_string(),
        source: None,
    }
}

fn malformed(table: &str) -> Error {
    Error::malformed("redb file", format!("undecodable record in table {table}"))
}

/// `len(part) as u32 BE ++ part`.
fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part);
}

fn prefix(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 24);
    push_part(&mut out, key.as_bytes());
    out
}

fn group_prefix(key: &str, group: &str) -> Vec<u8> {
    let mut out = prefix(key);
    push_part(&mut out, group.as_bytes());
    out
}

fn with(mut p: Vec<u8>, tail: &[u8]) -> Vec<u8> {
    p.extend_from_slice(tail);
    p
}

fn id_bytes(id: EntryId) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&id.ms.to_be_bytes());
    out[8..].copy_from_slice(&id.seq.to_be_bytes());
    out
}

fn id_of(b: &[u8]) -> Option<EntryId> {
    let (ms, seq) = b.split_first_chunk::<8>()?;
    let seq: [u8; 8] = seq.try_into().ok()?;
    Some(EntryId::new(
        u64::from_be_bytes(*ms),
        u64::from_be_bytes(seq),
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Splits a `len ++ part` off the front of `b`.
fn take_part(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = b.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

fn text(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

/// The smallest byte string above every string that starts with `p` (`None`: no bound).
fn prefix_end(p: &[u8]) -> Option<Vec<u8>> {
    let mut end = p.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Deletes every record of `table` whose key starts with `p`.
fn delete_prefix(table: &mut Table<&[u8], &[u8]>, p: &[u8]) -> Result<()> {
    let done = match prefix_end(p) {
        Some(end) => table.retain_in::<&[u8], _>(p..end.as_slice(), |_, _| false),
        None => table.retain_in::<&[u8], _>(p.., |_, _| false),
    };
    done.map_err(|e| storage("redb delete", e))
}

/// The open tables of one write transaction.
struct Tables<'t> {
    keys: Table<'t, &'static [u8], &'static [u8]>,
    fields: Table<'t, &'static [u8], &'static [u8]>,
    strings: Table<'t, &'static [u8], &'static [u8]>,
    streams: Table<'t, &'static [u8], &'static [u8]>,
    entries: Table<'t, &'static [u8], &'static [u8]>,
    groups: Table<'t, &'static [u8], &'static [u8]>,
    pending: Table<'t, &'static [u8], &'static [u8]>,
    consumers: Table<'t, &'static [u8], &'static [u8]>,
    delayed: Table<'t, &'static [u8], &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self> {
        let open = |def: Def| {
            txn.open_table(def)
                .map_err(|e| storage("redb open table", e))
        };
        Ok(Tables {
            keys: open(KEYS)?,
            fields: open(FIELDS)?,
            strings: open(STRINGS)?,
            streams: open(STREAMS)?,
            entries: open(ENTRIES)?,
            groups: open(GROUPS)?,
            pending: open(PENDING)?,
            consumers: open(CONSUMERS)?,
            delayed: open(DELAYED)?,
        })
    }

    fn apply(&mut self, change: &Change) -> Result<()> {
        let put = |t: &mut Table<&[u8], &[u8]>, k: &[u8], v: &[u8]| {
            t.insert(k, v)
                .map(|_| ())
                .map_err(|e| storage("redb write", e))
        };
        let del = |t: &mut Table<&[u8], &[u8]>, k: &[u8]| {
            t.remove(k)
                .map(|_| ())
                .map_err(|e| storage("redb write", e))
        };
        match change {
            Change::Delete { key } => {
                let p = prefix(key);
                del(&mut self.keys, key.as_bytes())?;
                del(&mut self.strings, key.as_bytes())?;
                del(&mut self.streams, key.as_bytes())?;
                for t in [
                    &mut self.fields,
                    &mut self.entries,
                    &mut self.groups,
                    &mut self.pending,
                    &mut self.consumers,
                    &mut self.delayed,
                ] {
                    delete_prefix(t, &p)?;
                }
            }
            Change::Key {
                key,
                kind,
                expires_at_ms,
            } => {
                let mut v = vec![
                    match kind {
                        Kind::Hash => b'h',
                        Kind::Stream => b's',
                        Kind::Str => b't',
                        Kind::Delayed => b'd',
                    },
                    u8::from(expires_at_ms.is_some()),
                ];
                v.extend_from_slice(&expires_at_ms.unwrap_or(0).to_be_bytes());
                put(&mut self.keys, key.as_bytes(), &v)?;
            }
            Change::HashField { key, field, value } => {
                let k = with(prefix(key), field.as_bytes());
                match value {
                    Some(v) => put(&mut self.fields, &k, v)?,
                    None => del(&mut self.fields, &k)?,
                }
            }
            Change::Str { key, value } => put(&mut self.strings, key.as_bytes(), value)?,
            Change::StreamLast { key, last_id } => {
                put(&mut self.streams, key.as_bytes(), &id_bytes(*last_id))?;
            }
            Change::Entry { key, id, fields } => {
                let k = with(prefix(key), &id_bytes(*id));
                match fields {
                    Some(f) => put(&mut self.entries, &k, &pack_fields(&f.to_vec()))?,
                    None => del(&mut self.entries, &k)?,
                }
            }
            Change::Group {
                key,
                group,
                last_delivered,
            } => {
                let k = with(prefix(key), group.as_bytes());
                match last_delivered {
                    Some(id) => put(&mut self.groups, &k, &id_bytes(*id))?,
                    None => {
                        del(&mut self.groups, &k)?;
                        let p = group_prefix(key, group);
                        delete_prefix(&mut self.pending, &p)?;
                        delete_prefix(&mut self.consumers, &p)?;
                    }
                }
            }
            Change::Pending {
                key,
                group,
                id,
                pending,
            } => {
                let k = with(group_prefix(key, group), &id_bytes(*id));
                match pending {
                    Some(p) => {
                        let mut v = Vec::with_capacity(16 + p.consumer.len());
                        v.extend_from_slice(&p.delivered_at_ms.to_be_bytes());
                        v.extend_from_slice(&p.deliveries.to_be_bytes());
                        v.extend_from_slice(p.consumer.as_bytes());
                        put(&mut self.pending, &k, &v)?;
                    }
                    None => del(&mut self.pending, &k)?,
                }
            }
            Change::Consumer {
                key,
                group,
                consumer,
                seen_ms,
            } => {
                let k = with(group_prefix(key, group), consumer.as_bytes());
                match seen_ms {
                    Some(ms) => put(&mut self.consumers, &k, &ms.to_be_bytes())?,
                    None => del(&mut self.consumers, &k)?,
                }
            }
            Change::Delayed { key, id, held } => {
                let k = with(prefix(key), id.as_bytes());
                match held {
                    Some((due, fields)) => {
                        let v = with(due.to_be_bytes().to_vec(), &pack_fields(fields));
                        put(&mut self.delayed, &k, &v)?;
                    }
                    None => del(&mut self.delayed, &k)?,
                }
            }
        }
        Ok(())
    }
}

/// The database file.
#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
}

impl Store {
    /// Opens (creating when missing) the file at `path`; `InUse` when another process has it.
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<Store> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse {
                    path: path.display().to_string(),
                },
                e => storage("redb open", format!("{}: {e}", path.display())),
            })?;
        let store = Store { db };
        store.check_format()?;
        Ok(store)
    }

    /// Stamps a new file with the layout version, and refuses a file of another one.
    fn check_format(&self) -> Result<()> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| storage("redb begin", e))?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| storage("redb open table", e))?;
            let found = meta
                .get(b"format".as_slice())
                .map_err(|e| storage("redb read", e))?
                .map(|v| v.value().to_vec());
            match found {
                None => {
                    meta.insert(b"format".as_slice(), FORMAT)
                        .map_err(|e| storage("redb write", e))?;
                }
                Some(v) if v == FORMAT => {}
                Some(_) => {
                    return Err(Error::malformed(
                        "redb file",
                        "written in a layout this version does not know",
                    ))
                }
            }
            Tables::open(&txn)?; // every table exists from now on
        }
        txn.commit().map_err(|e| storage("redb commit", e))
    }

    /// Writes `changes` in one transaction, fsynced when `durable`.
    pub(crate) fn write(&self, changes: &[Change], durable: bool) -> Result<()> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| storage("redb begin", e))?;
        let level = if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        txn.set_durability(level)
            .map_err(|e| storage("redb durability", e))?;
        {
            let mut tables = Tables::open(&txn)?;
            for change in changes {
                tables.apply(change)?;
            }
        }
        txn.commit().map_err(|e| storage("redb commit", e))
    }

    /// Frees what compaction can give back to the file system (no transaction may be open).
    pub(crate) fn compact(&mut self) -> Result<bool> {
        self.db.compact().map_err(|e| storage("redb compact", e))
    }

    /// Everything stored, as changes that rebuild it: each live key's [`Change::Key`]
    /// first, then its parts. Keys expired at `now_ms` are left out and returned apart.
    pub(crate) fn load(&self, now_ms: u64) -> Result<(Vec<Change>, Vec<String>)> {
        let txn = self.db.begin_read().map_err(|e| storage("redb begin", e))?;
        let open = |def: Def| {
            txn.open_table(def)
                .map_err(|e| storage("redb open table", e))
        };
        let mut out = Vec::new();
        let mut expired = Vec::new();
        let rows = |def: Def| -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            let t = open(def)?;
            let mut rows = Vec::new();
            for row in t.iter().map_err(|e| storage("redb read", e))? {
                let (k, v) = row.map_err(|e| storage("redb read", e))?;
                rows.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(rows)
        };
        for (k, v) in rows(KEYS)? {
            let bad = || malformed("keys");
            let key = text(&k).ok_or_else(bad)?;
            let kind = match v.first() {
                Some(b'h') => Kind::Hash,
                Some(b's') => Kind::Stream,
                Some(b't') => Kind::Str,
                Some(b'd') => Kind::Delayed,
                _ => return Err(bad()),
            };
            let expires_at_ms = match v.get(1) {
                Some(0) => None,
                Some(1) => Some(u64_at(&v, 2).ok_or_else(bad)?),
                _ => return Err(bad()),
            };
            if expires_at_ms.is_some_and(|at| at <= now_ms) {
                expired.push(key);
                continue;
            }
            out.push(Change::Key {
                key,
                kind,
                expires_at_ms,
            });
        }
        for (k, v) in rows(STRINGS)? {
            let key = text(&k).ok_or_else(|| malformed("strings"))?;
            out.push(Change::Str {
                key,
                value: Bytes::from(v),
            });
        }
        for (k, v) in rows(STREAMS)? {
            let bad = || malformed("streams");
            let key = text(&k).ok_or_else(bad)?;
            let last_id = id_of(&v).ok_or_else(bad)?;
            out.push(Change::StreamLast { key, last_id });
        }
        for (k, v) in rows(FIELDS)? {
            let bad = || malformed("hash_fields");
            let (key, field) = take_part(&k).ok_or_else(bad)?;
            out.push(Change::HashField {
                key: text(key).ok_or_else(bad)?,
                field: text(field).ok_or_else(bad)?,
                value: Some(Bytes::from(v)),
            });
        }
        for (k, v) in rows(ENTRIES)? {
            let bad = || malformed("entries");
            let (key, id) = take_part(&k).ok_or_else(bad)?;
            let fields: Arc<[(String, Bytes)]> = unpack_fields(&v).map_err(|_| bad())?.into();
            out.push(Change::Entry {
                key: text(key).ok_or_else(bad)?,
                id: id_of(id).ok_or_else(bad)?,
                fields: Some(fields),
            });
        }
        for (k, v) in rows(GROUPS)? {
            let bad = || malformed("groups");
            let (key, group) = take_part(&k).ok_or_else(bad)?;
            out.push(Change::Group {
                key: text(key).ok_or_else(bad)?,
                group: text(group).ok_or_else(bad)?,
                last_delivered: Some(id_of(&v).ok_or_else(bad)?),
            });
        }
        for (k, v) in rows(PENDING)? {
            let bad = || malformed("pending");
            let (key, rest) = take_part(&k).ok_or_else(bad)?;
            let (group, id) = take_part(rest).ok_or_else(bad)?;
            out.push(Change::Pending {
                key: text(key).ok_or_else(bad)?,
                group: text(group).ok_or_else(bad)?,
                id: id_of(id).ok_or_else(bad)?,
                pending: Some(PendingRecord {
                    delivered_at_ms: u64_at(&v, 0).ok_or_else(bad)?,
                    deliveries: u64_at(&v, 8).ok_or_else(bad)?,
                    consumer: text(v.get(16..).ok_or_else(bad)?).ok_or_else(bad)?,
                }),
            });
        }
        for (k, v) in rows(CONSUMERS)? {
            let bad = || malformed("consumers");
            let (key, rest) = take_part(&k).ok_or_else(bad)?;
            let (group, consumer) = take_part(rest).ok_or_else(bad)?;
            out.push(Change::Consumer {
                key: text(key).ok_or_else(bad)?,
                group: text(group).ok_or_else(bad)?,
                consumer: text(consumer).ok_or_else(bad)?,
                seen_ms: Some(u64_at(&v, 0).ok_or_else(bad)?),
            });
        }
        for (k, v) in rows(DELAYED)? {
            let bad = || malformed("delayed");
            let (key, id) = take_part(&k).ok_or_else(bad)?;
            let due = u64_at(&v, 0).ok_or_else(bad)?;
            let fields = unpack_fields(&v[8..]).map_err(|_| bad())?;
            out.push(Change::Delayed {
                key: text(key).ok_or_else(bad)?,
                id: text(id).ok_or_else(bad)?,
                held: Some((due, fields)),
            });
        }
        Ok((out, expired))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_bounds_exactly_its_own_records() {
        let p = prefix("a");
        let end = prefix_end(&p).unwrap_or_default();
        assert!(with(p.clone(), b"\xff\xff").as_slice() < end.as_slice());
        assert!(prefix("b").as_slice() >= end.as_slice());
        // A key that is a prefix of another key's bytes is not confused with it.
        assert!(prefix("ab").as_slice() >= end.as_slice());
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn ids_sort_as_bytes_in_id_order() {
        let a = id_bytes(EntryId::new(5, u64::MAX));
        let b = id_bytes(EntryId::new(6, 0));
        assert!(a < b);
        assert_eq!(id_of(&b), Some(EntryId::new(6, 0)));
    }
}
