//! `pulse dump` and `pulse restore`: a stream to and from JSON lines, one entry each, with
//! its ID and every field as stored (name, payload, subject, headers, trace parent, and
//! anything a foreign writer put there), so a restore is the same stream again.
//!
//! A line: `{"id": "1700000000000-0", "fields": [["n", "created"], ["p", {"base64": "AP8="}]]}`
//! — a field value is a string when it is UTF-8 text, `{"base64": …}` otherwise.

use base64::Engine as _;
use bytes::Bytes;
use pulse::backend::{AddOptions, EntryId, Fields};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use super::Ctx;
use crate::Failure;

fn field_value(v: &[u8]) -> Value {
    match std::str::from_utf8(v) {
        Ok(text) => json!(text),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(v)}),
    }
}

pub(crate) async fn dump(cx: &Ctx, name: &str) -> Result<(), Failure> {
    let stream = cx.stream(name)?;
    let mut from = EntryId::ZERO;
    loop {
        let page = cx
            .backend
            .stream_range(stream.key(), from, EntryId::MAX, Some(1000))
            .await?;
        let Some(last) = page.last().map(|e| e.id) else {
            return Ok(());
        };
        for entry in page {
            let fields: Vec<Value> = entry
                .fields
                .iter()
                .map(|(k, v)| json!([k, field_value(v)]))
                .collect();
            println!("{}", json!({"id": entry.id.to_string(), "fields": fields}));
        }
        match last.next() {
            Some(n) => from = n,
            None => return Ok(()),
        }
    }
}

/// One line of a dump, as an ID and fields.
fn parse_line(line: &str) -> Result<(EntryId, Fields), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let id: EntryId = v["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or("no valid \"id\"")?;
    let pairs = v["fields"].as_array().ok_or("no \"fields\" array")?;
    let mut fields = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let (Some(k), Some(value)) = (pair[0].as_str(), pair.get(1)) else {
            return Err("a field is [name, value]".into());
        };
        let bytes = match value {
            Value::String(text) => Bytes::from(text.clone()),
            Value::Object(o) => {
                let b64 = o
                    .get("base64")
                    .and_then(Value::as_str)
                    .ok_or("a value is a string or {\"base64\": …}")?;
                Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| format!("bad base64: {e}"))?,
                )
            }
            _ => return Err("a value is a string or {\"base64\": …}".into()),
        };
        fields.push((k.to_owned(), bytes));
    }
    Ok((id, fields))
}

pub(crate) async fn restore(cx: &Ctx, name: &str) -> Result<(), Failure> {
    let stream = cx.stream(name)?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut restored = 0u64;
    let mut number = 0u64;
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| Failure::Input(format!("reading standard input: {e}")))?
    {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let (id, fields) =
            parse_line(&line).map_err(|e| Failure::Input(format!("line {number}: {e}")))?;
        cx.backend
            .stream_add(stream.key(), fields, &AddOptions::default().with_id(id))
            .await
            .map_err(|e| match e {
                pulse::Error::InvalidArgument(m) => Failure::Input(format!(
                    "line {number} ({id}): {m} ({restored} restored before it)"
                )),
                other => Failure::Pulse(other),
            })?;
        restored += 1;
    }
    cx.out.print(json!({"restored": restored}), || {
        let mut t = crate::output::Table::new(&["restored"]);
        t.row(vec![restored.to_string()]);
        t
    });
    Ok(())
}
