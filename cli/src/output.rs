//! What the command prints: aligned tables for people, JSON for scripts (`--json`), and the
//! JSON form of the library's values (events, payloads, times) that the dump and the
//! gateway share.
//!
//! Payloads are UTF-8 text when they are (`"payload"`), base64 otherwise
//! (`"payload_base64"`), so a JSON consumer never sees mangled bytes.

use std::{
    fmt::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use bytes::Bytes;
use pulse::streaming::Event;
use serde_json::{json, Map, Value};

/// How results are printed.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    /// JSON instead of tables.
    pub json: bool,
}

impl Out {
    /// Prints one result: `value` as JSON, or `table` for people.
    pub fn print(&self, value: Value, table: impl FnOnce() -> Table) {
        if self.json {
            println!("{value}");
        } else {
            print!("{}", table());
        }
    }

    /// Prints one item of a live feed: a JSON line, or `human`.
    pub fn line(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", human());
        }
    }
}

/// A table with a header row, printed with aligned columns.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = |i: usize| {
            std::iter::once(&self.headers)
                .chain(&self.rows)
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.headers.len()).map(width).collect();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        if self.rows.is_empty() {
            writeln!(f, "(none)")?;
        }
        Ok(())
    }
}

/// Puts `payload` into `obj`: `payload` when it is UTF-8, `payload_base64` otherwise.
pub fn put_payload(obj: &mut Map<String, Value>, payload: &[u8]) {
    match std::str::from_utf8(payload) {
        Ok(text) => obj.insert("payload".into(), json!(text)),
        Err(_) => obj.insert(
            "payload_base64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(payload)),
        ),
    };
}

/// The payload of a JSON object: `payload` (text) or `payload_base64`; `None` when
/// neither is there, `Err` for bad base64.
pub fn take_payload(obj: &Map<String, Value>) -> Result<Option<Bytes>, String> {
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    payload_from(text("payload"), text("payload_base64"))
}

/// A payload given as text or as base64 (not both); `None` when neither, `Err` for both or
/// for bad base64.
pub fn payload_from(text: Option<String>, b64: Option<String>) -> Result<Option<Bytes>, String> {
    match (text, b64) {
        (Some(_), Some(_)) => Err("give payload or payload_base64, not both".into()),
        (Some(t), None) => Ok(Some(Bytes::from(t))),
        (None, Some(b)) => LENIENT
            .decode(b)
            .map(|b| Some(Bytes::from(b)))
            .map_err(|e| format!("payload_base64 is not base64: {e}")),
        (None, None) => Ok(None),
    }
}

/// Standard base64 that does not insist the unused bits of the last character be zero.
const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Decodes base64 text given on the command line.
pub fn base64_arg(text: &str) -> Result<Bytes, String> {
    LENIENT
        .decode(text.trim())
        .map(Bytes::from)
        .map_err(|e| format!("not base64: {e}"))
}

/// A payload for a table cell: its text, or `<n bytes>` when it is not text; cut at 60
/// characters.
pub fn payload_cell(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) if text.chars().count() > 60 => {
            format!("{}…", text.chars().take(60).collect::<String>())
        }
        Ok(text) => text.to_owned(),
        Err(_) => format!("<{} bytes>", payload.len()),
    }
}

/// An event as JSON: id, name, subject, headers, deliveries, trace parent, payload.
pub fn event_json(e: &Event) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), json!(e.id.to_string()));
    obj.insert("name".into(), json!(e.name));
    if let Some(t) = &e.topic {
        obj.insert("subject".into(), json!(t));
    }
    if !e.headers.is_empty() {
        obj.insert("headers".into(), json!(e.headers));
    }
    if e.sink.is_some() {
        obj.insert("deliveries".into(), json!(e.deliveries));
    }
    if let Some(tp) = &e.trace_parent {
        obj.insert("trace_parent".into(), json!(tp));
    }
    put_payload(&mut obj, &e.payload);
    Value::Object(obj)
}

/// A stream's state as JSON (what `stream info` and the gateway print).
pub fn stream_state_json(
    state: &pulse::streaming::StreamState,
    delayed: &pulse::streaming::DelayedInfo,
) -> Value {
    let sinks: Vec<Value> = state
        .sinks
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "pending": s.pending,
                "lag": s.lag,
                "last_delivered": s.last_delivered.to_string(),
                "members": s.consumers.len(),
            })
        })
        .collect();
    json!({
        "stream": state.name,
        "length": state.length,
        "first_id": state.first_id.map(|i| i.to_string()),
        "last_id": state.last_id.to_string(),
        "delayed": delayed.count,
        "next_due_ms": delayed.next_due.map(ms),
        "sinks": sinks,
    })
}

/// A job as JSON (what `pool jobs` and the gateway print).
pub fn job_json(j: &pulse::pool::JobInfo) -> Value {
    use pulse::pool::JobStatus;
    let status = match &j.status {
        JobStatus::Running {
            worker,
            node,
            since,
        } => json!({
            "state": "running", "worker": worker, "node": node, "since_ms": since.map(ms),
        }),
        JobStatus::Waiting { reason, since } => json!({
            "state": "waiting", "reason": format!("{reason:?}"), "since_ms": since.map(ms),
        }),
        _ => json!({"state": "unknown"}),
    };
    json!({
        "key": j.key, "group": j.group, "moves": j.moves,
        "dispatched_ms": ms(j.dispatched_at), "payload_len": j.payload_len,
        "status": status,
    })
}

/// A worker as JSON.
pub fn worker_json(w: &pulse::pool::WorkerInfo) -> Value {
    json!({
        "worker": w.id, "node": w.node, "group": w.group, "jobs": w.jobs,
        "alive": w.alive, "registered_ms": ms(w.registered_at),
    })
}

/// A pool's state as JSON: jobs, workers, ranges, the longest wait.
pub fn pool_state_json(state: &pulse::pool::PoolState) -> Value {
    json!({
        "jobs": state.jobs.iter().map(job_json).collect::<Vec<_>>(),
        "workers": state.workers.iter().map(worker_json).collect::<Vec<_>>(),
        "ranges": state.ranges,
        "longest_wait_ms": state.longest_wait().map(|d| d.as_millis() as u64),
    })
}

/// Milliseconds since the epoch.
pub fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How long ago `t` was, for people (`3s`, `2m10s`, `1h5m`).
pub fn ago(t: SystemTime) -> String {
    SystemTime::now()
        .duration_since(t)
        .map_or_else(|_| "now".to_owned(), |d| format!("{} ago", span(d)))
}

/// A duration for people.
pub fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// A pool event as JSON: `event` names it, the rest are its fields.
pub fn pool_event_json(e: &pulse::pool::PoolEvent) -> serde_json::Value {
    use pulse::pool::PoolEvent;
    match e {
        PoolEvent::JobStarted { key, worker, moves } => {
            json!({"event": "job_started", "key": key, "worker": worker, "moves": moves})
        }
        PoolEvent::JobMoved { key, from, to } => {
            json!({"event": "job_moved", "key": key, "from": from, "to": to})
        }
        PoolEvent::JobStopped {
            key,
            worker,
            reason,
        } => {
            json!({"event": "job_stopped", "key": key, "worker": worker, "reason": format!("{reason:?}")})
        }
        PoolEvent::JobRemoved { key } => json!({"event": "job_removed", "key": key}),
        PoolEvent::WorkerJoined {
            worker,
            node,
            group,
        } => json!({"event": "worker_joined", "worker": worker, "node": node, "group": group}),
        PoolEvent::WorkerLeft { worker } => json!({"event": "worker_left", "worker": worker}),
        PoolEvent::WorkerFenced { worker } => json!({"event": "worker_fenced", "worker": worker}),
        PoolEvent::RangesChanged => json!({"event": "ranges_changed"}),
        PoolEvent::JobsWaiting { group, count } => {
            json!({"event": "jobs_waiting", "group": group, "count": count})
        }
        PoolEvent::StateLost => json!({"event": "state_lost"}),
        PoolEvent::StateRecovered { jobs } => json!({"event": "state_recovered", "jobs": jobs}),
        PoolEvent::Lagged => json!({"event": "lagged"}),
        other => json!({"event": format!("{other:?}")}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_say_when_empty() {
        let mut t = Table::new(&["key", "value"]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "2".into()]);
        assert_eq!(t.to_string(), "key     value\na       1\nlonger  2\n");
        assert_eq!(Table::new(&["x"]).to_string(), "x\n(none)\n");
    }

    #[test]
    fn payloads_round_trip_as_text_or_base64() {
        for payload in [&b"hello"[..], b"\x00\xff\xfe", b""] {
            let mut obj = Map::new();
            put_payload(&mut obj, payload);
            assert_eq!(
                take_payload(&obj).unwrap().unwrap(),
                Bytes::copy_from_slice(payload)
            );
        }
        let mut bad = Map::new();
        bad.insert("payload_base64".into(), json!("!!!"));
        assert!(take_payload(&bad).is_err());
        assert_eq!(payload_cell(b"\xff\x00"), "<2 bytes>");
    }
}
