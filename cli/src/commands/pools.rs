//! `pulse pool …`: a pool's jobs and workers (the inspection API), dispatch, stop, notify,
//! call, and its events live. Each invocation joins the pool as a client-only node (it
//! hosts no workers) for its duration.

use pulse::pool::{JobStatus, Node, NodeOptions};
use serde_json::json;

use super::{count_cell, interrupted, Ctx};
use crate::{
    args::PoolCmd,
    listing,
    output::{ago, payload_cell, put_payload, span, Table},
    Failure,
};

async fn join(cx: &Ctx, pool: &str) -> Result<Node, Failure> {
    Ok(Node::join(
        cx.backend.clone(),
        pool,
        NodeOptions::default()
            .with_keyspace(cx.keyspace.clone())
            .with_client_only(true),
    )
    .await?)
}

pub(crate) async fn run(cx: &Ctx, cmd: PoolCmd) -> Result<(), Failure> {
    let pool = match &cmd {
        PoolCmd::Ls(a) => return list(cx, a.limit).await,
        PoolCmd::Jobs { pool }
        | PoolCmd::Workers { pool }
        | PoolCmd::Dispatch { pool, .. }
        | PoolCmd::Stop { pool, .. }
        | PoolCmd::Notify { pool, .. }
        | PoolCmd::Call { pool, .. }
        | PoolCmd::Events { pool } => pool.clone(),
    };
    let node = join(cx, &pool).await?;
    let result = act(cx, &node, cmd).await;
    let closed = node.close().await;
    result?;
    Ok(closed?)
}

/// The pools with their worker and job counts, read from the pool's maps without joining.
async fn list(cx: &Ctx, limit: usize) -> Result<(), Failure> {
    let rows = listing::pools(cx.backend.as_ref(), &cx.keyspace, limit).await?;
    cx.out.print(json!(rows), || {
        let mut t = Table::new(&["pool", "workers", "jobs"]);
        for r in &rows {
            t.row(vec![
                r.name.clone(),
                count_cell(r.workers),
                count_cell(r.jobs),
            ]);
        }
        t
    });
    Ok(())
}

async fn act(cx: &Ctx, node: &Node, cmd: PoolCmd) -> Result<(), Failure> {
    match cmd {
        PoolCmd::Ls(a) => list(cx, a.limit).await?,
        PoolCmd::Jobs { .. } => {
            let state = node.inspect().await?;
            let value: Vec<_> = state.jobs.iter().map(crate::output::job_json).collect();
            cx.out.print(json!(value), || {
                let mut t =
                    Table::new(&["job", "group", "state", "worker", "node", "since", "moves"]);
                for j in &state.jobs {
                    let (st, worker, node, since) = match &j.status {
                        JobStatus::Running {
                            worker,
                            node,
                            since,
                        } => (
                            "running".to_owned(),
                            worker.clone(),
                            node.clone().unwrap_or_default(),
                            since.map_or("?".into(), ago),
                        ),
                        JobStatus::Waiting { reason, since } => (
                            format!("waiting ({reason:?})"),
                            String::new(),
                            String::new(),
                            since.map_or("?".into(), ago),
                        ),
                        _ => ("?".into(), String::new(), String::new(), String::new()),
                    };
                    t.row(vec![
                        j.key.clone(),
                        j.group.clone(),
                        st,
                        worker,
                        node,
                        since,
                        j.moves.to_string(),
                    ]);
                }
                t
            });
        }
        PoolCmd::Workers { .. } => {
            let state = node.inspect().await?;
            let value: Vec<_> = state
                .workers
                .iter()
                .map(crate::output::worker_json)
                .collect();
            cx.out.print(json!(value), || {
                let mut t = Table::new(&["worker", "node", "group", "jobs", "alive"]);
                for w in &state.workers {
                    t.row(vec![
                        w.id.clone(),
                        w.node.clone(),
                        w.group.clone(),
                        w.jobs.to_string(),
                        if w.alive { "yes" } else { "NO" }.into(),
                    ]);
                }
                t
            });
            if let Some(wait) = state.longest_wait() {
                if !cx.out.json {
                    println!(
                        "{} job(s) waiting, the longest for {}",
                        state.waiting().count(),
                        span(wait)
                    );
                }
            }
        }
        PoolCmd::Dispatch { key, payload, .. } => {
            node.dispatch_job(&key, payload).await?;
            cx.out.print(json!({"dispatched": key}), || {
                let mut t = Table::new(&["dispatched"]);
                t.row(vec![key.clone()]);
                t
            });
        }
        PoolCmd::Stop { key, .. } => {
            if !node.stop_job(&key).await? {
                return Err(Failure::NotFound(format!("the pool has no job {key:?}")));
            }
            cx.out.print(json!({"stopped": key}), || {
                let mut t = Table::new(&["stopped"]);
                t.row(vec![key.clone()]);
                t
            });
        }
        PoolCmd::Notify { key, payload, .. } => {
            if !node.notify_worker(&key, payload).await? {
                return Err(Failure::NotFound(format!(
                    "job {key:?} has no running worker"
                )));
            }
            cx.out.print(json!({"notified": key}), || {
                let mut t = Table::new(&["notified"]);
                t.row(vec![key.clone()]);
                t
            });
        }
        PoolCmd::Call {
            key,
            payload,
            timeout,
            ..
        } => {
            let answer = node.call(&key, payload, timeout).await?;
            let mut obj = serde_json::Map::new();
            obj.insert("key".into(), json!(key));
            put_payload(&mut obj, &answer);
            cx.out.print(serde_json::Value::Object(obj), || {
                let mut t = Table::new(&["job", "answer"]);
                t.row(vec![key.clone(), payload_cell(&answer)]);
                t
            });
        }
        PoolCmd::Events { .. } => {
            let mut events = node.events()?;
            loop {
                tokio::select! {
                    e = events.recv() => {
                        let Some(e) = e else { break };
                        let text = format!("{e:?}");
                        cx.out.line(crate::output::pool_event_json(&e), || text);
                    }
                    _ = interrupted() => break,
                }
            }
        }
    }
    Ok(())
}
