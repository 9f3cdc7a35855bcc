//! The pool under failed backend calls: each case makes one kind of call fail — before it
//! reached the store, or after it was applied with its reply lost — at the step of the
//! pool's protocol where that hurts most, then checks that the pool keeps its promises
//! once calls succeed again: no job lost, never two runs at once, nothing left behind.
//!
//! The faults come from [`FlakyBackend`] around the backend under test, so these cases run
//! on every backend. `pool_under_call_faults` adds random faults to a whole workload.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use pulse::async_trait;
use pulse::{
    error::BoxError,
    pool::{route, DispatchOptions, Job, JobHandler, Node, NodeOptions},
    Backend, Error,
};
use tokio::sync::Notify;

use super::{first_workers, keys, opts, rec, Ledger};
use crate::{
    eventually,
    flaky::{Fault, FlakyBackend, Op},
    util::eventually_within,
    Ctx,
};

/// A fault-injecting wrapper around the case's backend: the handle to steer it, and the
/// same wrapper as the backend the pool uses.
fn flaky(cx: &Ctx) -> (FlakyBackend, Arc<dyn Backend>) {
    let flaky = cx.flaky();
    (flaky.clone(), Arc::new(flaky))
}

/// Scripts `fault` for single writes and for batches of writes alike (a map groups
/// concurrent writes into batches).
fn fail_writes(flaky: &FlakyBackend, fault: impl Fn(Op) -> Fault) {
    flaky.fail_next(fault(Op::MapSet));
    flaky.fail_next(fault(Op::MapSetMany));
}

async fn join(backend: &Arc<dyn Backend>, options: NodeOptions) -> Node {
    Node::join(backend.clone(), "pool", options).await.unwrap()
}

/// The user keys of one of the pool's maps, read from the store itself.
async fn stored(cx: &Ctx, part: &str) -> HashMap<String, Bytes> {
    cx.stored_map(&cx.keyspace().pool_map("pool", part).unwrap().hash)
        .await
}

/// D1: a hand-off whose release (owner record to `~released`) fails before it reaches the
/// store. The old owner no longer runs the job and the new one waits for the release, so
/// the release must be retried until the store has it.
pub async fn pool_handoff_survives_a_failed_release(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let a = join(&backend, opts(&cx)).await;
    let wa = a.add_worker(rec(&ledger, "a")).await.unwrap();
    let ks = keys(20);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    fail_writes(&flaky, |op| {
        Fault::on(op)
            .key_containing(":owners")
            .before()
            .times(u32::MAX)
    });
    let b = join(&backend, opts(&cx)).await;
    let wb = b.add_worker(rec(&ledger, "b")).await.unwrap();
    let moving = ks
        .iter()
        .filter(|k| route(k, [wa.id(), wb.id()]) == Some(wb.id()))
        .count();
    assert!(moving > 0, "some of 20 keys route to the new worker");
    eventually(
        "the moving jobs stopped on a and their releases failed",
        || async { ledger.stops.lock().unwrap().len() >= moving && flaky.injected() > 0 },
    )
    .await;
    flaky.clear_faults();
    eventually("every job runs exactly once", || async {
        ledger.exactly_once(&ks)
    })
    .await;
    ledger.assert_no_overlap();
    assert!(ledger.runs(&ks[0]).len() == 1);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// D1: a take whose compare-and-set was applied but whose reply was lost. The worker holds
/// the owner record without running the job; when the job then routes elsewhere (here a
/// worker joins while the replies are still being lost), the record must be released, not
/// left for a live owner that never runs it.
pub async fn pool_take_with_a_lost_reply_moves_on(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let quick = opts(&cx).with_dispatch_timeout(Duration::from_millis(200));
    let a = join(&backend, quick.clone()).await;
    let wa = a.add_worker(rec(&ledger, "a")).await.unwrap();
    fail_writes(&flaky, |op| {
        Fault::on(op)
            .key_containing(":owners")
            .after()
            .times(u32::MAX)
    });
    let ks = keys(20);
    for k in &ks {
        match a.dispatch_job(k, "x").await {
            Ok(()) | Err(Error::Timeout { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    eventually("the takes were applied", || async {
        stored(&cx, "owners").await.len() == ks.len()
    })
    .await;
    let b = join(&backend, quick).await;
    let wb = b.add_worker(rec(&ledger, "b")).await.unwrap();
    flaky.clear_faults();
    assert!(
        ks.iter()
            .any(|k| route(k, [wa.id(), wb.id()]) == Some(wb.id())),
        "some of 20 keys route to the new worker"
    );
    eventually("every job runs exactly once", || async {
        ledger.exactly_once(&ks)
    })
    .await;
    ledger.assert_no_overlap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// D2: the owner-record delete after `stop_job` fails. The record must not outlive the job:
/// it is cleaned up, and the key can be dispatched again wherever it routes.
pub async fn pool_stop_survives_a_failed_record_delete(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let (a, b) = (
        join(&backend, opts(&cx)).await,
        join(&backend, opts(&cx)).await,
    );
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    b.add_worker(rec(&ledger, "b")).await.unwrap();
    let ks = keys(20);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    flaky.fail_next(
        Fault::on(Op::MapDelete)
            .key_containing(":owners")
            .before()
            .times(u32::MAX),
    );
    for k in &ks {
        assert!(a.stop_job(k).await.unwrap());
    }
    eventually("every job stopped and a record delete failed", || async {
        ledger.running_count() == 0 && flaky.injected() > 0
    })
    .await;
    flaky.clear_faults();
    eventually("no owner record outlives its job", || async {
        stored(&cx, "owners").await.is_empty()
    })
    .await;
    let c = join(&backend, opts(&cx)).await;
    c.add_worker(rec(&ledger, "c")).await.unwrap();
    for k in &ks {
        c.dispatch_job(k, "again").await.unwrap();
    }
    assert!(ledger.exactly_once(&ks));
    ledger.assert_no_overlap();
    for n in [a, b, c] {
        n.close().await.unwrap();
    }
}

/// D3: `add_worker`'s record write is applied but its reply is lost. The caller gets an
/// error, so the worker must not exist: no record is left for jobs to be routed to.
pub async fn pool_failed_add_worker_leaves_no_ghost(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let a = join(&backend, opts(&cx)).await;
    let wa = a.add_worker(rec(&ledger, "a")).await.unwrap();
    let b = join(&backend, opts(&cx)).await;
    fail_writes(&flaky, |op| {
        Fault::on(op).key_containing(":workers").after()
    });
    let err = b.add_worker(rec(&ledger, "ghost")).await.unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    flaky.clear_faults();
    let listed: Vec<String> = stored(&cx, "workers").await.into_keys().collect();
    assert_eq!(
        listed,
        [wa.id()],
        "a failed add_worker leaves no worker record"
    );
    assert!(b.workers().is_empty());
    let ks = keys(20);
    for k in &ks {
        b.dispatch_job(k, "x").await.unwrap(); // none routed to a ghost
    }
    assert!(ledger.exactly_once(&ks));
    assert!(ledger.runs(&ks[0]).contains("a"));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// D4: the "started" message to the dispatcher's inbox fails before it is sent. The
/// dispatcher still learns that the job started, instead of timing out.
pub async fn pool_dispatch_survives_a_lost_start_message(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let a = join(&backend, opts(&cx)).await;
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    let client = join(
        &backend,
        opts(&cx)
            .with_client_only(true)
            .with_dispatch_timeout(Duration::from_secs(5)),
    )
    .await;
    for (key, fault) in [
        ("sent-never", Fault::on(Op::StreamAdd).before()),
        ("reply-lost", Fault::on(Op::StreamAdd).after()),
    ] {
        flaky.fail_next(fault.key_containing(":inbox:"));
        client.dispatch_job(key, "x").await.unwrap();
        assert_eq!(flaky.pending_faults(), 0, "the start message was sent");
        assert_eq!(ledger.runs(key).len(), 1);
    }
    a.close().await.unwrap();
    client.close().await.unwrap();
}

/// A handler whose `start` waits at a gate, so a case can act while a start is running.
struct Gated {
    ledger: Arc<Ledger>,
    entered: Arc<Notify>,
    gate: Arc<Notify>,
}

#[async_trait]
impl JobHandler for Gated {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        self.entered.notify_one();
        self.gate.notified().await;
        rec(&self.ledger, "gated").start(job).await
    }
    async fn stop(&self, key: &str) -> Result<(), BoxError> {
        rec(&self.ledger, "gated").stop(key).await
    }
}

/// D5: a job whose start completes while its node is closing. `close` returns only once
/// that job's owner record is released, even when the release is slow to reach the store.
pub async fn pool_close_releases_what_started_during_close(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let (entered, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let a = join(&backend, opts(&cx)).await;
    a.add_worker(Gated {
        ledger: ledger.clone(),
        entered: entered.clone(),
        gate: gate.clone(),
    })
    .await
    .unwrap();
    let client = join(&cx.backend, opts(&cx).with_client_only(true)).await;
    let dispatch = tokio::spawn({
        let client = client.clone();
        async move { client.dispatch_job("k", "x").await }
    });
    tokio::time::timeout(crate::patience(), entered.notified())
        .await
        .expect("the start began");
    fail_writes(&flaky, |op| {
        Fault::on(op)
            .key_containing(":owners")
            .delayed(Duration::from_millis(300))
    });
    let closing = tokio::spawn({
        let a = a.clone();
        async move { a.close().await }
    });
    eventually("closing", || async { a.is_closed() }).await;
    gate.notify_one();
    closing.await.unwrap().unwrap();
    let owners = stored(&cx, "owners").await;
    assert!(
        owners.get("k").is_some_and(|v| v.starts_with(b"~released")),
        "close returned before the job it started was released: {:?}",
        owners.get("k")
    );
    let _ = dispatch.await.unwrap();
    ledger.assert_no_overlap();
    client.close().await.unwrap();
}

/// D6: a dispatch-only node keeps its inbox alive (and re-creates it when the store lost
/// it), so its dispatches keep hearing back after the inbox's first expiry.
pub async fn pool_client_only_node_keeps_its_inbox(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = join(&cx.backend, opts(&cx)).await;
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    let client = join(
        &cx.backend,
        opts(&cx)
            .with_client_only(true)
            .with_dispatch_timeout(Duration::from_secs(3)),
    )
    .await;
    let inbox = pulse::streaming::Stream::new(
        cx.backend.clone(),
        &format!("pool:inbox:{}", client.id()),
        pulse::streaming::StreamOptions::default().with_keyspace(cx.keyspace()),
    )
    .unwrap();
    let key = inbox.key().to_owned();
    // About to expire: the node's keep-alive gives it its full expiry back.
    cx.backend
        .expire(
            &key,
            pulse::backend::Ttl::Sliding(Duration::from_millis(1500)),
        )
        .await
        .unwrap();
    eventually("the inbox's expiry is refreshed", || async {
        matches!(
            cx.backend.expiry(&key).await.unwrap(),
            pulse::backend::KeyExpiry::In(d) if d > Duration::from_secs(10)
        )
    })
    .await;
    // Gone (expired, or lost with the store's data): the node re-creates it.
    cx.backend.delete(std::slice::from_ref(&key)).await.unwrap();
    eventually("the inbox is re-created", || async {
        cx.backend.exists(&key).await.unwrap()
    })
    .await;
    client.dispatch_job("k", "x").await.unwrap();
    assert_eq!(ledger.runs("k").len(), 1);
    a.close().await.unwrap();
    client.close().await.unwrap();
}

/// D7: after a clean `remove_worker`, every moved job starts at once — not at the next
/// periodic pass (`worker_ttl / 3`, 10 s here), even when the release of a job reaches a
/// node while that node is already trying to take the job.
pub async fn pool_remove_worker_moves_every_job_promptly(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let options = opts(&cx).with_worker_ttl(Duration::from_secs(30));
    let nodes = [
        join(&cx.backend, options.clone()).await,
        join(&cx.backend, options.clone()).await,
        join(&cx.backend, options.clone()).await,
    ];
    let mut workers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        workers.push(n.add_worker(rec(&ledger, &format!("w{i}"))).await.unwrap());
    }
    let ks = keys(3000);
    let dispatches: Vec<_> = ks
        .chunks(100)
        .enumerate()
        .map(|(i, chunk)| {
            let n = nodes[i % 3].clone();
            let chunk = chunk.to_vec();
            tokio::spawn(async move {
                for k in chunk {
                    n.dispatch_job(&k, "x").await.unwrap();
                }
            })
        })
        .collect();
    for d in dispatches {
        d.await.unwrap();
    }
    assert!(ledger.exactly_once(&ks));
    let leaving: HashSet<String> = workers[0].jobs().into_iter().collect();
    assert!(!leaving.is_empty());
    nodes[0].remove_worker(&workers[0]).await.unwrap();
    eventually_within(
        Duration::from_secs(5),
        "every moved job runs again before the periodic pass",
        || async { ledger.exactly_once(&ks) },
    )
    .await;
    ledger.assert_no_overlap();
    for n in &nodes {
        n.close().await.unwrap();
    }
}

/// A dispatch retried after an ambiguous error tells its own earlier admission (the write
/// was applied, its reply lost) from someone else's job, by its dispatch ID.
pub async fn pool_dispatch_retry_recognises_its_own_admission(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let a = join(&backend, opts(&cx)).await;
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    let mine = DispatchOptions::default().with_id("order-17/try");
    fail_writes(&flaky, |op| Fault::on(op).key_containing(":jobs").after());
    let first = a.dispatch_job_with("order-17", "x", mine.clone()).await;
    assert!(first.unwrap_err().is_connection());
    flaky.clear_faults();
    let retry = a
        .dispatch_job_with("order-17", "x", mine.clone())
        .await
        .unwrap_err();
    assert!(retry.is_admitted_by("order-17/try"), "{retry:?}");
    eventually("the admitted job started", || async {
        ledger.runs("order-17").len() == 1
    })
    .await;
    let other = a
        .dispatch_job_with("order-17", "y", DispatchOptions::default().with_id("other"))
        .await
        .unwrap_err();
    assert!(
        matches!(&other, Error::JobExists { dispatch_id: Some(id), .. } if id == "order-17/try"),
        "{other:?}"
    );
    assert!(!other.is_admitted_by("other"));
    // Without an ID of its own, a dispatch still records a unique one.
    a.dispatch_job("plain", "x").await.unwrap();
    let again = a.dispatch_job("plain", "x").await.unwrap_err();
    assert!(matches!(&again, Error::JobExists { dispatch_id: Some(id), .. } if !id.is_empty()));
    for bad in [String::new(), "x".repeat(1025)] {
        assert!(matches!(
            a.dispatch_job_with("k", "x", DispatchOptions::default().with_id(bad))
                .await,
            Err(Error::InvalidArgument(_))
        ));
    }
    assert_eq!(ledger.runs("order-17").len(), 1);
    a.close().await.unwrap();
}

/// One failed liveness renewal (sent never, or its reply lost) does not fence the worker:
/// it is retried at once, well before the worker would be due to stop its jobs.
pub async fn pool_a_failed_renewal_does_not_stop_jobs(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let ttl = Duration::from_millis(600);
    let a = join(&backend, opts(&cx).with_worker_ttl(ttl)).await;
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    let ks = keys(5);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    for fault in [
        Fault::on(Op::LeaseAcquire).before(),
        Fault::on(Op::LeaseAcquire).after(),
    ] {
        flaky.fail_next(fault.key_containing(":alive:"));
        eventually("a renewal failed", || async { flaky.pending_faults() == 0 }).await;
        // Two TTLs: the worker would have fenced (stopped every job) within one.
        tokio::time::sleep(ttl * 2).await;
        assert!(
            ledger.stops.lock().unwrap().is_empty(),
            "a single failed renewal stopped the worker's jobs"
        );
    }
    assert!(ledger.exactly_once(&ks));
    a.close().await.unwrap();
}

/// Dispatches `key` from `node` until it is admitted, retrying ambiguous failures with
/// one dispatch ID (the pattern `dispatch_job_with` documents).
async fn dispatch_reliably(node: &Node, key: &str) {
    let id = format!("{key}@{}", node.id());
    let options = DispatchOptions::default().with_id(id.clone());
    loop {
        match node.dispatch_job_with(key, "x", options.clone()).await {
            Ok(()) => return,
            Err(e) if e.is_admitted_by(&id) => return,
            // Ambiguous (applied or not), admitted but not started yet, or a start that
            // failed (then the job was deleted): try again with the same ID.
            Err(e)
                if e.is_connection()
                    || matches!(e, Error::Timeout { .. } | Error::JobFailed { .. }) => {}
            Err(e) => panic!("dispatch of {key}: {e:?}"),
        }
    }
}

/// Adds a worker, retrying a failed attempt (which leaves nothing behind).
async fn add_reliably(node: &Node, ledger: &Arc<Ledger>, label: &str) -> pulse::pool::Worker {
    loop {
        match node.add_worker(rec(ledger, label)).await {
            Ok(w) => return w,
            Err(e) if e.is_connection() => {}
            Err(e) => panic!("add_worker: {e:?}"),
        }
    }
}

/// A workload under random failed calls — 2% of every call, half before reaching the
/// store and half after it was applied — with workers joining and leaving: once calls
/// succeed again, every job runs on exactly one worker, none ran twice at once, and the
/// store's owner records agree.
pub async fn pool_under_call_faults(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let options = opts(&cx).with_dispatch_timeout(Duration::from_secs(2));
    let nodes = [
        join(&backend, options.clone()).await,
        join(&backend, options.clone()).await,
        join(&backend, options.clone()).await,
    ];
    let mut workers = first_workers(&nodes, &ledger).await;
    flaky.set_failure_rate(0.02);
    let ks = keys(300);
    let dispatches: Vec<_> = (0..3)
        .map(|i| {
            let n = nodes[i].clone();
            let mine: Vec<String> = ks.iter().skip(i).step_by(3).cloned().collect();
            tokio::spawn(async move {
                for k in mine {
                    dispatch_reliably(&n, &k).await;
                }
            })
        })
        .collect();
    for round in 1..=12 {
        let i = round % 3;
        let label = format!("n{i}-w{round}");
        workers.push((i, add_reliably(&nodes[i], &ledger, &label).await));
        if round % 2 == 0 {
            let (j, w) = workers.remove(0);
            // An error here says a release or the withdrawal did not finish in time; the
            // worker is stopped either way and the pool recovers its jobs.
            let _ = nodes[j].remove_worker(&w).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // moves overlap the next round
    }
    for d in dispatches {
        d.await.unwrap();
    }
    flaky.set_failure_rate(0.0);
    assert!(flaky.injected() > 0, "faults were injected");
    eventually("every job runs exactly once", || async {
        ledger.exactly_once(&ks)
    })
    .await;
    ledger.assert_no_overlap();
    eventually(
        "the store's owner records name a worker for every job",
        || async {
            let owners = stored(&cx, "owners").await;
            owners.len() == ks.len() && owners.values().all(|v| !v.starts_with(b"~released"))
        },
    )
    .await;
    for n in &nodes {
        n.close().await.unwrap();
    }
}

/// A tick whose lease was won but whose reply was lost (or whose request failed) is not
/// lost: the node repeats the acquisition within the slot and gets the tick.
pub async fn pool_ticker_survives_failed_lease_calls(cx: Ctx) {
    let (flaky, backend) = flaky(&cx);
    let a = join(&backend, opts(&cx).with_client_only(true)).await;
    flaky.fail_next(Fault::on(Op::LeaseAcquire).key_containing(":tick:").after());
    flaky.fail_next(
        Fault::on(Op::LeaseAcquire)
            .key_containing(":tick:")
            .before()
            .times(2),
    );
    let period = Duration::from_millis(200);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let first_slot = now_ms / period.as_millis() as u64 + 1;
    let mut ticker = a.new_ticker("t", period).await.unwrap();
    let mut slots = Vec::new();
    while slots.len() < 4 {
        let tick = tokio::time::timeout(crate::patience(), ticker.recv())
            .await
            .expect("a tick in time")
            .expect("the ticker runs");
        slots.push(tick.slot);
    }
    assert_eq!(flaky.pending_faults(), 0, "the faults struck");
    // The first slot (or the next, had joining crossed a slot boundary) ticks although
    // its lease calls failed, and so does every slot after it.
    assert!(
        slots[0] <= first_slot + 1 && slots.windows(2).all(|w| w[1] == w[0] + 1),
        "a slot was lost to a failed lease call: {slots:?}, first {first_slot}"
    );
    ticker.close().await.unwrap();
    a.close().await.unwrap();
}

/// `close` deletes the node's inbox even when the first delete fails, and does not fail
/// itself for it (an inbox left over would expire by itself).
pub async fn pool_close_survives_a_failed_inbox_delete(cx: Ctx) {
    let (flaky, backend) = flaky(&cx);
    let a = join(&backend, opts(&cx).with_client_only(true)).await;
    let inbox = cx
        .keyspace()
        .stream(&format!("pool:inbox:{}", a.id()))
        .unwrap();
    assert!(cx.backend.exists(&inbox).await.unwrap());
    flaky.fail_next(Fault::on(Op::Delete).key_containing(":inbox:").before());
    a.close().await.unwrap();
    assert_eq!(flaky.pending_faults(), 0, "the delete failed once");
    assert!(
        !cx.backend.exists(&inbox).await.unwrap(),
        "the inbox is gone"
    );
}

/// A shutdown after a node crashed clears the crashed worker's records once its liveness
/// lapses — which changes no map — also when a clean-up fails once: it completes instead
/// of waiting for its timeout.
pub async fn pool_shutdown_clears_a_crashed_owner(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let a = join(&cx.backend, opts(&cx)).await;
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    a.simulate_crash().await;
    let b = join(&backend, opts(&cx).with_client_only(true)).await;
    flaky.fail_next(Fault::on(Op::MapDelete).key_containing(":owners").before());
    // The case's options give shutdown 10 s; the crashed worker's TTL is 600 ms.
    b.shutdown().await.unwrap();
    assert_eq!(flaky.pending_faults(), 0, "a clean-up failed once");
    assert!(stored(&cx, "owners").await.is_empty());
}

/// A worker removed while its release kept failing leaves an owner record in its name;
/// once its job is stopped and its liveness has lapsed, another node deletes the record
/// (no record outlives its job, whoever held it).
pub async fn pool_stale_record_of_a_removed_worker_is_cleaned(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (flaky, backend) = flaky(&cx);
    let a = join(&backend, opts(&cx)).await;
    let wa = a.add_worker(rec(&ledger, "a")).await.unwrap();
    let b = join(&cx.backend, opts(&cx)).await; // hosts no worker, still reconciles
    a.dispatch_job("k", "x").await.unwrap();
    fail_writes(&flaky, |op| {
        Fault::on(op)
            .key_containing(":owners")
            .before()
            .times(u32::MAX)
    });
    let removed = a.remove_worker(&wa).await;
    assert!(
        matches!(removed, Err(Error::Timeout { .. })),
        "the release never got through: {removed:?}"
    );
    assert!(b.stop_job("k").await.unwrap());
    eventually("the removed worker's record is deleted", || async {
        stored(&cx, "owners").await.is_empty()
    })
    .await;
    flaky.clear_faults();
    a.close().await.unwrap();
    b.close().await.unwrap();
}
