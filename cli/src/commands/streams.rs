//! `pulse stream …` and `pulse request`: a stream's state, its events (read back, or
//! followed live), adding one, its sinks' dead letters, and one request/reply call.

use pulse::{
    backend::EntryId,
    rpc::RequestOptions,
    streaming::{Event, Filter, NewEvent, ReaderOptions, Start},
};
use serde_json::json;

use super::{count_cell, entry_id, interrupted, Ctx};
use crate::{
    args::{AddArgs, DeadLettersCmd, RequestArgs, StreamCmd, TailArgs},
    listing,
    output::{base64_arg, event_json, ms, payload_cell, put_payload, Table},
    Failure,
};

pub(crate) async fn run(cx: &Ctx, cmd: StreamCmd) -> Result<(), Failure> {
    match cmd {
        StreamCmd::Ls(a) => list(cx, a.limit).await,
        StreamCmd::Info { stream } => info(cx, &stream).await,
        StreamCmd::Tail(a) => tail(cx, a).await,
        StreamCmd::Add(a) => add(cx, a).await,
        StreamCmd::DeadLetters(c) => dead_letters(cx, c).await,
    }
}

/// The streams with their lengths and last IDs (one backend read each).
async fn list(cx: &Ctx, limit: usize) -> Result<(), Failure> {
    let rows = listing::streams(cx.backend.as_ref(), &cx.keyspace, limit).await?;
    cx.out.print(json!(rows), || {
        let mut t = Table::new(&["stream", "length", "last"]);
        for r in &rows {
            let last = r.last_id.clone();
            t.row(vec![
                r.name.clone(),
                count_cell(r.length),
                last.unwrap_or_else(|| "(not a stream)".into()),
            ]);
        }
        t
    });
    Ok(())
}

async fn info(cx: &Ctx, name: &str) -> Result<(), Failure> {
    let stream = cx.stream(name)?;
    let state = stream.state().await?;
    let delayed = stream.delayed().await?;
    let value = crate::output::stream_state_json(&state, &delayed);
    cx.out.print(value, || state_table(&state, delayed.count));
    Ok(())
}

/// The stream's row followed by one row per sink.
fn state_table(state: &pulse::streaming::StreamState, delayed: u64) -> Table {
    let mut t = Table::new(&["", "name", "length/pending", "first/lag", "last", "delayed"]);
    t.row(vec![
        "stream".into(),
        state.name.clone(),
        state.length.to_string(),
        state.first_id.map_or("-".into(), |i| i.to_string()),
        state.last_id.to_string(),
        delayed.to_string(),
    ]);
    for sink in &state.sinks {
        t.row(vec![
            "sink".into(),
            sink.name.clone(),
            sink.pending.to_string(),
            sink.lag.map_or("?".into(), |l| l.to_string()),
            sink.last_delivered.to_string(),
            String::new(),
        ]);
    }
    t
}

fn start_of(from: &str) -> Result<Start, Failure> {
    Ok(match from {
        "oldest" => Start::Oldest,
        "newest" => Start::Newest,
        id => Start::After(entry_id(id)?),
    })
}

fn print_event(cx: &Ctx, e: &Event) {
    cx.out.line(event_json(e), || {
        let subject = e
            .topic
            .as_deref()
            .map_or(String::new(), |t| format!(" [{t}]"));
        format!(
            "{}  {}{subject}  {}",
            e.id,
            e.name,
            payload_cell(&e.payload)
        )
    });
}

async fn tail(cx: &Ctx, a: TailArgs) -> Result<(), Failure> {
    let stream = cx.stream(&a.stream)?;
    let filter = match &a.subject {
        Some(p) => Filter::subject(p)?,
        None => Filter::All,
    };
    let limit = a.count.unwrap_or(usize::MAX);
    let start = start_of(&a.from)?;
    if a.follow {
        let reader = stream
            .new_reader(
                ReaderOptions::default()
                    .with_start(start)
                    .with_filter(filter),
            )
            .await?;
        let mut events = reader.subscribe()?;
        let mut printed = 0;
        while printed < limit {
            tokio::select! {
                e = events.recv() => match e {
                    Some(e) => { print_event(cx, &e); printed += 1; }
                    None => break,
                },
                _ = interrupted() => break,
            }
        }
        reader.close().await?;
        return Ok(());
    }
    // Up to the last event there is now, page by page.
    let Some(info) = cx.backend.stream_info(stream.key()).await? else {
        return Ok(());
    };
    let mut from = match start {
        Start::Newest => return Ok(()),
        Start::Oldest => EntryId::ZERO,
        Start::After(id) => id.next().unwrap_or(EntryId::MAX),
        _ => EntryId::ZERO,
    };
    let mut printed = 0;
    while printed < limit && from <= info.last_id {
        let page = cx
            .backend
            .stream_range(stream.key(), from, info.last_id, Some(1000))
            .await?;
        let Some(last) = page.last().map(|e| e.id) else {
            break;
        };
        for entry in page {
            let Ok(event) = Event::from_entry(stream.name(), None, entry) else {
                continue; // not an event (foreign data): skipped
            };
            if filter.matches(&event) && printed < limit {
                print_event(cx, &event);
                printed += 1;
            }
        }
        match last.next() {
            Some(n) => from = n,
            None => break,
        }
    }
    Ok(())
}

async fn add(cx: &Ctx, a: AddArgs) -> Result<(), Failure> {
    let stream = cx.stream(&a.stream)?;
    let payload = if a.base64 {
        base64_arg(&a.payload).map_err(Failure::Input)?
    } else {
        bytes::Bytes::from(a.payload)
    };
    let mut event = NewEvent::new(a.name, payload);
    if let Some(s) = a.subject {
        event = event.with_topic(s);
    }
    for h in &a.headers {
        let (name, value) = h
            .split_once('=')
            .ok_or_else(|| Failure::Input(format!("a header is NAME=VALUE, not {h:?}")))?;
        event = event.with_header(name, value);
    }
    if let Some(k) = a.dedup_key {
        event = event.with_dedup_key(k);
    }
    if let Some(d) = a.delay {
        let scheduled = stream.add_delayed(event.deliver_after(d)).await?;
        cx.out.print(
            json!({"delayed_id": scheduled.id, "due_ms": ms(scheduled.due)}),
            || {
                let mut t = Table::new(&["delayed", "due in"]);
                t.row(vec![scheduled.id.clone(), crate::output::span(d)]);
                t
            },
        );
        return Ok(());
    }
    let (id, added) = stream.add_unique(event).await?;
    cx.out
        .print(json!({"id": id.to_string(), "added": added}), || {
            let mut t = Table::new(&["id", "added"]);
            t.row(vec![
                id.to_string(),
                if added {
                    "yes"
                } else {
                    "no (a duplicate of this ID)"
                }
                .into(),
            ]);
            t
        });
    Ok(())
}

async fn dead_letters(cx: &Ctx, cmd: DeadLettersCmd) -> Result<(), Failure> {
    match cmd {
        DeadLettersCmd::Ls {
            stream,
            sink,
            count,
        } => {
            let letters = cx.stream(&stream)?.dead_letters(&sink)?.list(count).await?;
            let value: Vec<_> = letters
                .iter()
                .map(|l| {
                    let mut obj = serde_json::Map::new();
                    obj.insert("id".into(), json!(l.id.to_string()));
                    obj.insert("original_id".into(), json!(l.event.id.to_string()));
                    obj.insert("name".into(), json!(l.event.name));
                    obj.insert("subject".into(), json!(l.event.topic));
                    obj.insert("deliveries".into(), json!(l.deliveries));
                    obj.insert("at_ms".into(), json!(ms(l.at)));
                    obj.insert("error".into(), json!(l.error));
                    put_payload(&mut obj, &l.event.payload);
                    serde_json::Value::Object(obj)
                })
                .collect();
            cx.out.print(json!(value), || {
                let mut t =
                    Table::new(&["id", "original", "name", "deliveries", "error", "payload"]);
                for l in &letters {
                    t.row(vec![
                        l.id.to_string(),
                        l.event.id.to_string(),
                        l.event.name.clone(),
                        l.deliveries.to_string(),
                        l.error.clone().unwrap_or_default(),
                        payload_cell(&l.event.payload),
                    ]);
                }
                t
            });
        }
        DeadLettersCmd::Requeue { stream, sink, id } => {
            let id = entry_id(&id)?;
            let new = cx.stream(&stream)?.dead_letters(&sink)?.requeue(id).await?;
            cx.out.print(
                json!({"requeued": id.to_string(), "id": new.to_string()}),
                || {
                    let mut t = Table::new(&["dead letter", "requeued as"]);
                    t.row(vec![id.to_string(), new.to_string()]);
                    t
                },
            );
        }
        DeadLettersCmd::Purge {
            stream,
            sink,
            ids,
            all,
        } => {
            let letters = cx.stream(&stream)?.dead_letters(&sink)?;
            let purged = if all {
                if !ids.is_empty() {
                    return Err(Failure::Input("give IDs or --all, not both".into()));
                }
                letters.purge_all().await?;
                None
            } else {
                if ids.is_empty() {
                    return Err(Failure::Input("give the IDs to purge, or --all".into()));
                }
                let ids = ids
                    .iter()
                    .map(|i| entry_id(i))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(letters.purge(&ids).await?)
            };
            cx.out.print(json!({"purged": purged, "all": all}), || {
                let mut t = Table::new(&["purged"]);
                t.row(vec![purged.map_or("all".into(), |n| n.to_string())]);
                t
            });
        }
    }
    Ok(())
}

pub(crate) async fn request(cx: &Ctx, a: RequestArgs) -> Result<(), Failure> {
    let stream = cx.stream(&a.stream)?;
    let reply = stream
        .request(
            NewEvent::new(a.name, a.payload),
            RequestOptions::default().with_timeout(a.timeout),
        )
        .await?;
    let mut obj = serde_json::Map::new();
    obj.insert("responder".into(), json!(reply.responder));
    if !reply.headers.is_empty() {
        obj.insert("headers".into(), json!(reply.headers));
    }
    put_payload(&mut obj, &reply.payload);
    cx.out.print(serde_json::Value::Object(obj), || {
        let mut t = Table::new(&["responder", "reply"]);
        t.row(vec![
            reply.responder.clone().unwrap_or_default(),
            payload_cell(&reply.payload),
        ]);
        t
    });
    Ok(())
}
