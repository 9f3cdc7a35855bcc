//! The pool when the store loses its state (a restart without persistence, a flush, a
//! failover to an empty replica — here: every key of the pool deleted under it): the
//! jobs that ran before run after, exactly once and never two at once; a job stopped
//! before the loss stays stopped.

use std::{sync::Arc, time::Duration};

use pulse::pool::PoolEvent;

use super::{keys, node, rec, Ledger};
use crate::{util::eventually_within, Ctx};

/// Every key of pool `pool` the nodes and their workers wrote: its maps, its workers'
/// liveness leases and its nodes' inboxes.
fn state_keys(cx: &Ctx, nodes: &[&pulse::pool::Node]) -> Vec<String> {
    let ks = cx.keyspace();
    let mut out: Vec<String> = ["jobs", "owners", "workers", "control", "groups"]
        .iter()
        .map(|part| ks.pool_map("pool", part).unwrap().hash)
        .collect();
    for n in nodes {
        out.push(ks.stream(&format!("pool:inbox:{}", n.id())).unwrap());
        for w in n.workers() {
            out.push(ks.pool("pool", &format!("alive:{}#1", w.id())).unwrap());
        }
    }
    out
}

/// Every job comes back after the pool's state vanished.
pub async fn pool_jobs_survive_a_lost_state(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    b.add_worker(rec(&ledger, "b")).await.unwrap();
    let ks = keys(10);
    for k in &ks {
        a.dispatch_job(k, format!("payload of {k}")).await.unwrap();
    }
    a.dispatch_job("gone", "x").await.unwrap();
    assert!(a.stop_job("gone").await.unwrap());
    crate::eventually("all running", || async { ledger.exactly_once(&ks) }).await;

    let events = a.events().unwrap();
    let deleted = cx
        .backend
        .delete(&state_keys(&cx, &[&a, &b]))
        .await
        .unwrap();
    assert!(deleted >= 4, "the state was there: {deleted} keys");

    let jobs = cx.keyspace().pool_map("pool", "jobs").unwrap().hash;
    // Replicas see the loss at their next probe (seconds), then re-admit.
    eventually_within(
        Duration::from_secs(40),
        "every job re-admitted and running",
        || async {
            let stored = cx.backend.hash_get_all(&jobs).await.unwrap_or_default();
            ks.iter().all(|k| stored.iter().any(|(f, _)| f == k)) && ledger.exactly_once(&ks)
        },
    )
    .await;
    let stored = cx.backend.hash_get_all(&jobs).await.unwrap();
    for k in &ks {
        let (_, v) = stored.iter().find(|(f, _)| f == k).unwrap();
        assert!(!v.is_empty(), "{k} has its record");
    }
    assert!(
        !stored.iter().any(|(f, _)| f == "gone"),
        "a job stopped before the loss stays stopped"
    );
    ledger.assert_no_overlap();
    // The node said so (its recovery event may follow the jobs it re-admitted).
    let seen = std::sync::Mutex::new(Vec::new());
    let events = std::sync::Mutex::new(events);
    crate::eventually("the node reports the recovery", || async {
        let mut seen = seen.lock().unwrap();
        let mut events = events.lock().unwrap();
        seen.extend(std::iter::from_fn(|| events.try_recv()));
        seen.iter()
            .any(|e| matches!(e, PoolEvent::StateRecovered { .. }))
    })
    .await;
    let seen = seen.into_inner().unwrap();
    let lost = seen.iter().position(|e| *e == PoolEvent::StateLost);
    let back = seen
        .iter()
        .position(|e| matches!(e, PoolEvent::StateRecovered { .. }));
    assert!(
        matches!((lost, back), (Some(l), Some(r)) if l < r),
        "lost then recovered: {seen:?}"
    );
    for k in &ks {
        assert_eq!(
            ledger.payloads.lock().unwrap().get(k).map(|p| p.to_vec()),
            Some(format!("payload of {k}").into_bytes())
        );
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// The same loss while 5% of every node's backend calls fail (half after they were
/// applied): the re-admission keeps what it achieved and retries the rest, so every job
/// still comes back, exactly once.
pub async fn pool_jobs_survive_a_lost_state_under_call_faults(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let flaky = cx.flaky();
    let backend: Arc<dyn pulse::Backend> = Arc::new(flaky.clone());
    let nodes = [
        pulse::pool::Node::join(backend.clone(), "pool", super::opts(&cx))
            .await
            .unwrap(),
        pulse::pool::Node::join(backend.clone(), "pool", super::opts(&cx))
            .await
            .unwrap(),
    ];
    nodes[0].add_worker(rec(&ledger, "a")).await.unwrap();
    nodes[1].add_worker(rec(&ledger, "b")).await.unwrap();
    let ks = keys(60);
    for k in &ks {
        nodes[0].dispatch_job(k, "x").await.unwrap();
    }
    crate::eventually("all running", || async { ledger.exactly_once(&ks) }).await;
    flaky.set_failure_rate(0.05);
    let refs: Vec<&pulse::pool::Node> = nodes.iter().collect();
    cx.backend.delete(&state_keys(&cx, &refs)).await.unwrap();
    let jobs = cx.keyspace().pool_map("pool", "jobs").unwrap().hash;
    eventually_within(Duration::from_secs(40), "every job re-admitted", || async {
        let stored = cx.backend.hash_get_all(&jobs).await.unwrap_or_default();
        ks.iter().all(|k| stored.iter().any(|(f, _)| f == k))
    })
    .await;
    flaky.set_failure_rate(0.0);
    assert!(flaky.injected() > 0, "faults were injected");
    eventually_within(
        Duration::from_secs(40),
        "every job runs exactly once",
        || async { ledger.exactly_once(&ks) },
    )
    .await;
    ledger.assert_no_overlap();
    for n in &nodes {
        n.close().await.unwrap();
    }
}
