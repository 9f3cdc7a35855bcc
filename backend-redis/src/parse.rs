//! Decoding of raw RESP2 replies into the backend types. Never panics: a reply of the wrong
//! shape is [`Error::Malformed`](pulse::Error::Malformed).

use std::time::Duration;

use bytes::Bytes;
use pulse::{
    backend::{
        ConsumerInfo, EntryId, GroupInfo, PendingEntry, PendingSummary, StreamBatch, StreamEntry,
    },
    Result,
};
use redis::Value;

use crate::errors::unexpected;

/// Bytes of a string-like reply.
pub(crate) fn bytes(v: Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        Value::Okay => Some(Bytes::from_static(b"OK")),
        Value::Int(i) => Some(Bytes::from(i.to_string())),
        _ => None,
    }
}

/// Text of a string-like reply (lossy for foreign non-UTF-8 data).
pub(crate) fn text(v: Value) -> Option<String> {
    bytes(v).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// An integer reply (or a decimal string).
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// The elements of an array reply; `Nil` is empty.
pub(crate) fn array(what: &'static str, v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(what, &other)),
    }
}

/// An entry ID reply.
pub(crate) fn entry_id(v: Value) -> Result<EntryId> {
    let t = text(v).ok_or_else(|| pulse::Error::malformed("stream entry id", "not a string"))?;
    t.parse()
}

/// One `[id, [field, value, …]]` entry; `Nil` (deleted entry in old servers) is `None`.
pub(crate) fn entry(v: Value) -> Result<Option<StreamEntry>> {
    if v == Value::Nil {
        return Ok(None);
    }
    let mut parts = array("stream entry", v)?.into_iter();
    let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
        return Err(pulse::Error::malformed(
            "stream entry",
            "missing id or fields",
        ));
    };
    let id = entry_id(id)?;
    let mut flat = array("stream entry fields", fields)?.into_iter();
    let mut fields = Vec::new();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        let k = text(k).ok_or_else(|| pulse::Error::malformed("stream field", "bad name"))?;
        let v = bytes(v).ok_or_else(|| pulse::Error::malformed("stream field", "bad value"))?;
        fields.push((k, v));
    }
    Ok(Some(StreamEntry::new(id, fields)))
}

/// An array of entries (XRANGE, XCLAIM).
pub(crate) fn entries(v: Value) -> Result<Vec<StreamEntry>> {
    let mut out = Vec::new();
    for e in array("stream entries", v)? {
        if let Some(e) = entry(e)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// An XREAD / XREADGROUP reply: `[[key, entries], …]` or `Nil`.
pub(crate) fn batches(v: Value) -> Result<Vec<StreamBatch>> {
    let mut out = Vec::new();
    for item in array("read reply", v)? {
        let mut kv = array("read reply stream", item)?.into_iter();
        let (Some(k), Some(es)) = (kv.next(), kv.next()) else {
            return Err(pulse::Error::malformed(
                "read reply",
                "missing stream or entries",
            ));
        };
        let stream = text(k).ok_or_else(|| pulse::Error::malformed("read reply", "bad key"))?;
        let entries = entries(es)?;
        if !entries.is_empty() {
            out.push(StreamBatch { stream, entries });
        }
    }
    Ok(out)
}

/// A flat `[name, value, name, value, …]` reply as pairs.
pub(crate) fn pairs(what: &'static str, v: Value) -> Result<Vec<(String, Value)>> {
    let mut flat = array(what, v)?.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        out.push((text(k).unwrap_or_default(), v));
    }
    Ok(out)
}

/// The XPENDING summary form.
pub(crate) fn pending_summary(v: Value) -> Result<PendingSummary> {
    let mut it = array("pending summary", v)?.into_iter();
    let count = it.next().as_ref().and_then(int).unwrap_or(0).max(0) as u64;
    let min = it
        .next()
        .filter(|v| *v != Value::Nil)
        .map(entry_id)
        .transpose()?;
    let max = it
        .next()
        .filter(|v| *v != Value::Nil)
        .map(entry_id)
        .transpose()?;
    let mut consumers = Vec::new();
    if let Some(list) = it.next() {
        for c in array("pending consumers", list)? {
            let mut c = array("pending consumer", c)?.into_iter();
            let name = c.next().and_then(text).unwrap_or_default();
            let n = c.next().as_ref().and_then(int).unwrap_or(0).max(0) as u64;
            consumers.push((name, n));
        }
    }
    consumers.sort();
    Ok(PendingSummary {
        count,
        min,
        max,
        consumers,
    })
}

/// The XPENDING extended form.
pub(crate) fn pending_entries(v: Value) -> Result<Vec<PendingEntry>> {
    let mut out = Vec::new();
    for p in array("pending entries", v)? {
        let mut p = array("pending entry", p)?.into_iter();
        let (Some(id), Some(consumer), Some(idle), Some(n)) =
            (p.next(), p.next(), p.next(), p.next())
        else {
            return Err(pulse::Error::malformed("pending entry", "too few elements"));
        };
        out.push(PendingEntry {
            id: entry_id(id)?,
            consumer: text(consumer).unwrap_or_default(),
            idle: Duration::from_millis(int(&idle).unwrap_or(0).max(0) as u64),
            deliveries: int(&n).unwrap_or(0).max(0) as u64,
        });
    }
    Ok(out)
}

/// The XINFO CONSUMERS reply.
/// An `XINFO GROUPS` reply, sorted by name. A `lag` of nil (unknown) stays `None`.
pub(crate) fn groups(v: Value) -> Result<Vec<GroupInfo>> {
    let mut out = Vec::new();
    for g in array("groups", v)? {
        let mut info = GroupInfo {
            name: String::new(),
            consumers: 0,
            pending: 0,
            last_delivered: EntryId::ZERO,
            lag: None,
        };
        for (k, v) in pairs("group", g)? {
            match k.as_str() {
                "name" => info.name = text(v).unwrap_or_default(),
                "consumers" => info.consumers = int(&v).unwrap_or(0).max(0) as u64,
                "pending" => info.pending = int(&v).unwrap_or(0).max(0) as u64,
                "last-delivered-id" => info.last_delivered = entry_id(v)?,
                "lag" => info.lag = int(&v).map(|n| n.max(0) as u64),
                _ => {}
            }
        }
        out.push(info);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(crate) fn consumers(v: Value) -> Result<Vec<ConsumerInfo>> {
    let mut out = Vec::new();
    for c in array("consumers", v)? {
        let mut info = ConsumerInfo {
            name: String::new(),
            pending: 0,
            idle: Duration::ZERO,
        };
        for (k, v) in pairs("consumer", c)? {
            match k.as_str() {
                "name" => info.name = text(v).unwrap_or_default(),
                "pending" => info.pending = int(&v).unwrap_or(0).max(0) as u64,
                "idle" => info.idle = Duration::from_millis(int(&v).unwrap_or(0).max(0) as u64),
                _ => {}
            }
        }
        out.push(info);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
