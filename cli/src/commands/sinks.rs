//! `pulse sink …`: a stream's sinks, the events pending in one, and acknowledging them.
//!
//! Read from the store directly (the group's pending list and consumers), never by joining
//! the sink: an operator's look must not add a member to it.

use pulse::{backend::EntryId, Error};
use serde_json::json;

use super::{entry_id, Ctx};
use crate::{
    args::SinkCmd,
    output::{span, Table},
    Failure,
};

pub(crate) async fn run(cx: &Ctx, cmd: SinkCmd) -> Result<(), Failure> {
    match cmd {
        SinkCmd::Ls { stream } => {
            let state = cx.stream(&stream)?.state().await?;
            let value: Vec<_> = state
                .sinks
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "pending": s.pending,
                        "lag": s.lag,
                        "last_delivered": s.last_delivered.to_string(),
                        "members": s.consumers.iter().map(|c| json!({
                            "name": c.name,
                            "pending": c.pending,
                            "idle_ms": c.idle.as_millis() as u64,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            cx.out.print(json!(value), || {
                let mut t = Table::new(&["sink", "pending", "lag", "members", "last delivered"]);
                for s in &state.sinks {
                    t.row(vec![
                        s.name.clone(),
                        s.pending.to_string(),
                        s.lag.map_or("?".into(), |l| l.to_string()),
                        s.consumers.len().to_string(),
                        s.last_delivered.to_string(),
                    ]);
                }
                t
            });
        }
        SinkCmd::Pending {
            stream,
            sink,
            count,
        } => {
            let stream = cx.stream(&stream)?;
            let pending = match cx
                .backend
                .group_pending(stream.key(), &sink, None, EntryId::ZERO, count)
                .await
            {
                Ok(p) => p,
                Err(Error::NoGroup { .. }) => {
                    return Err(Failure::NotFound(format!(
                        "stream {:?} has no sink {sink:?}",
                        stream.name()
                    )))
                }
                Err(e) => return Err(e.into()),
            };
            let value: Vec<_> = pending
                .iter()
                .map(|p| {
                    json!({
                        "id": p.id.to_string(),
                        "member": p.consumer,
                        "deliveries": p.deliveries,
                        "idle_ms": p.idle.as_millis() as u64,
                    })
                })
                .collect();
            cx.out.print(json!(value), || {
                let mut t = Table::new(&["id", "member", "deliveries", "idle"]);
                for p in &pending {
                    t.row(vec![
                        p.id.to_string(),
                        p.consumer.clone(),
                        p.deliveries.to_string(),
                        span(p.idle),
                    ]);
                }
                t
            });
        }
        SinkCmd::Ack { stream, sink, ids } => {
            let stream = cx.stream(&stream)?;
            let ids = ids
                .iter()
                .map(|i| entry_id(i))
                .collect::<Result<Vec<_>, _>>()?;
            let acked = match cx.backend.group_ack(stream.key(), &sink, &ids).await {
                Ok(n) => n,
                Err(Error::NoGroup { .. }) => {
                    return Err(Failure::NotFound(format!(
                        "stream {:?} has no sink {sink:?}",
                        stream.name()
                    )))
                }
                Err(e) => return Err(e.into()),
            };
            cx.out
                .print(json!({"acknowledged": acked, "asked": ids.len()}), || {
                    let mut t = Table::new(&["acknowledged", "not pending"]);
                    t.row(vec![
                        acked.to_string(),
                        (ids.len() as u64 - acked).to_string(),
                    ]);
                    t
                });
            if acked < ids.len() as u64 {
                // The store answers a missing group with 0 acknowledged.
                let sinks = cx.backend.group_list(stream.key()).await?;
                if !sinks.iter().any(|g| g.name == sink) {
                    return Err(Failure::NotFound(format!(
                        "stream {:?} has no sink {sink:?}",
                        stream.name()
                    )));
                }
                return Err(Failure::NotFound(format!(
                    "{} of the {} IDs were not pending",
                    ids.len() as u64 - acked,
                    ids.len()
                )));
            }
        }
    }
    Ok(())
}
