//! The keyed worker pool (`pulse::pool`) on the backend under test: the spec's behaviours
//! (pool.md §14, adapted where a weakness is fixed) and the guarantees — no job lost,
//! never two concurrent runs — under removal, close, crashes and churn.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use pulse::{
    error::BoxError,
    pool::{Job, JobHandler, JobLease, Node, NodeOptions},
    Error,
};

use crate::{eventually, Ctx};

mod faults;
pub use faults::*;

/// Every start and stop of every handler, and any overlap seen.
#[derive(Default)]
pub(crate) struct Ledger {
    running: Mutex<HashMap<String, HashSet<String>>>,
    payloads: Mutex<HashMap<String, Bytes>>,
    starts: Mutex<Vec<(String, String, bool)>>,
    stops: Mutex<Vec<(String, String)>>,
    notes: Mutex<Vec<(String, Bytes)>>,
    overlaps: Mutex<Vec<String>>,
    /// The lease of every run started, by key: (handler label, lease).
    leases: Mutex<HashMap<String, Vec<(String, JobLease)>>>,
}

impl Ledger {
    fn runs(&self, key: &str) -> HashSet<String> {
        self.running
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    fn running_count(&self) -> usize {
        self.running
            .lock()
            .unwrap()
            .values()
            .filter(|s| !s.is_empty())
            .count()
    }

    /// Every job in `keys` runs on exactly one handler, and nothing else runs.
    fn exactly_once(&self, keys: &[String]) -> bool {
        let running = self.running.lock().unwrap();
        keys.iter()
            .all(|k| running.get(k).is_some_and(|s| s.len() == 1))
            && running.iter().filter(|(_, s)| !s.is_empty()).count() == keys.len()
    }

    /// A crashed process's jobs die with it.
    fn crash(&self, label: &str) {
        for set in self.running.lock().unwrap().values_mut() {
            set.remove(label);
        }
    }

    fn assert_no_overlap(&self) {
        let o = self.overlaps.lock().unwrap();
        assert!(o.is_empty(), "concurrent runs of the same job: {o:?}");
    }
}

struct Recorder {
    label: String,
    ledger: Arc<Ledger>,
    fail: Option<&'static str>,
}

#[async_trait]
impl JobHandler for Recorder {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        if Some(job.key.as_str()) == self.fail {
            return Err("refusing this job".into());
        }
        if !job.lease.is_held() {
            return Err("started without holding the lease".into());
        }
        let mut running = self.ledger.running.lock().unwrap();
        let set = running.entry(job.key.clone()).or_default();
        if !set.is_empty() {
            self.ledger
                .overlaps
                .lock()
                .unwrap()
                .push(format!("{} on {:?} and {}", job.key, set, self.label));
        }
        set.insert(self.label.clone());
        drop(running);
        // Fencing for user code: no earlier run's lease may still be held elsewhere.
        let mut leases = self.ledger.leases.lock().unwrap();
        let runs = leases.entry(job.key.clone()).or_default();
        for (label, lease) in runs.iter() {
            if lease.is_held() {
                self.ledger.overlaps.lock().unwrap().push(format!(
                    "{}: lease of the run on {label} still held when {} started it",
                    job.key, self.label
                ));
            }
        }
        runs.push((self.label.clone(), job.lease.clone()));
        drop(leases);
        self.ledger
            .payloads
            .lock()
            .unwrap()
            .insert(job.key.clone(), job.payload.clone());
        self.ledger.starts.lock().unwrap().push((
            job.key.clone(),
            self.label.clone(),
            job.requeued,
        ));
        Ok(())
    }

    async fn stop(&self, key: &str) -> Result<(), BoxError> {
        if let Some(set) = self.ledger.running.lock().unwrap().get_mut(key) {
            set.remove(&self.label);
        }
        self.ledger
            .stops
            .lock()
            .unwrap()
            .push((key.to_owned(), self.label.clone()));
        Ok(())
    }

    async fn notify(&self, key: &str, payload: Bytes) -> Result<(), BoxError> {
        self.ledger
            .notes
            .lock()
            .unwrap()
            .push((key.to_owned(), payload));
        Ok(())
    }
}

/// A handler that does not implement `notify`.
struct Plain(Arc<Ledger>);

#[async_trait]
impl JobHandler for Plain {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        self.0
            .running
            .lock()
            .unwrap()
            .entry(job.key.clone())
            .or_default()
            .insert("plain".into());
        Ok(())
    }
    async fn stop(&self, key: &str) -> Result<(), BoxError> {
        self.0
            .running
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .remove("plain");
        Ok(())
    }
}

fn rec(ledger: &Arc<Ledger>, label: &str) -> Recorder {
    Recorder {
        label: label.to_owned(),
        ledger: ledger.clone(),
        fail: None,
    }
}

fn opts(cx: &Ctx) -> NodeOptions {
    NodeOptions::default()
        .with_keyspace(cx.keyspace())
        .with_worker_ttl(Duration::from_millis(600))
        .with_dispatch_timeout(Duration::from_secs(10))
        .with_stop_timeout(Duration::from_secs(2))
        .with_retry_delay(Duration::from_millis(50))
        .with_shutdown_timeout(Duration::from_secs(10))
}

async fn node(cx: &Ctx) -> Node {
    Node::join(cx.backend.clone(), "pool", opts(cx))
        .await
        .unwrap()
}

/// A node that dispatches but runs no workers.
async fn client_node(cx: &Ctx) -> Node {
    Node::join(cx.backend.clone(), "pool", opts(cx).with_client_only(true))
        .await
        .unwrap()
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("job-{i}")).collect()
}

/// Workers are listed locally and pool-wide; every node sees every worker.
pub async fn pool_lists_workers(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    let mut ids = Vec::new();
    for i in 0..2 {
        ids.push(
            a.add_worker(rec(&ledger, &format!("a{i}")))
                .await
                .unwrap()
                .id()
                .to_owned(),
        );
    }
    ids.push(
        b.add_worker(rec(&ledger, "b0"))
            .await
            .unwrap()
            .id()
            .to_owned(),
    );
    ids.sort();
    let mut local: Vec<String> = a.workers().iter().map(|w| w.id().to_owned()).collect();
    local.sort();
    assert_eq!(
        local,
        ids[..]
            .iter()
            .filter(|id| local.contains(id))
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(local.len(), 2);
    for n in [&a, &b] {
        eventually("every node lists every worker", || async {
            n.pool_workers()
                .iter()
                .map(|w| w.id.clone())
                .collect::<Vec<_>>()
                == ids
        })
        .await;
    }
    assert!(a
        .pool_workers()
        .iter()
        .all(|w| w.node == a.id() || w.node == b.id()));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A dispatched job starts on one worker with its payload and is visible everywhere.
pub async fn pool_dispatch_starts_the_job(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    let w = b.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("job-1", "payload1").await.unwrap();
    assert_eq!(
        ledger.runs("job-1"),
        HashSet::from(["w".to_owned()]),
        "started before dispatch returned"
    );
    assert_eq!(
        ledger.payloads.lock().unwrap()["job-1"],
        Bytes::from("payload1")
    );
    a.dispatch_job("empty", Bytes::new()).await.unwrap();
    eventually("visible on both nodes", || async {
        a.job_keys() == ["empty", "job-1"]
            && b.job_payload("job-1") == Some(Bytes::from("payload1"))
            && b.job_owner("job-1").as_deref() == Some(w.id())
    })
    .await;
    assert_eq!(a.job_payload("empty"), Some(Bytes::new()));
    assert_eq!(a.job_payload("nope"), None);
    eventually("worker lists its jobs", || async {
        w.jobs() == ["empty", "job-1"]
    })
    .await;
    assert!(ledger
        .starts
        .lock()
        .unwrap()
        .iter()
        .all(|(_, _, requeued)| !requeued));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A live key cannot be dispatched twice, even concurrently from several nodes.
pub async fn pool_singleton_admission(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    assert!(matches!(
        b.dispatch_job("k", "y").await,
        Err(Error::JobExists { .. })
    ));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let n = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { n.dispatch_job("race", format!("{i}")).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Error::JobExists { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        ledger
            .starts
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| k == "race")
            .count(),
        1
    );
    for bad in ["", "a=b"] {
        assert!(matches!(
            a.dispatch_job(bad, "x").await,
            Err(Error::InvalidKey { .. })
        ));
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Stopping a job stops it on its worker and removes it; the key can be reused.
pub async fn pool_stop_job(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    assert!(a.stop_job("k").await.unwrap());
    eventually("stopped", || async {
        ledger.runs("k").is_empty() && a.job_payload("k").is_none() && a.job_owner("k").is_none()
    })
    .await;
    assert!(!a.stop_job("k").await.unwrap());
    a.dispatch_job("k", "again").await.unwrap();
    assert_eq!(ledger.runs("k").len(), 1);
    a.close().await.unwrap();
}

/// A run's lease is held while the run is the job's only one, `lost()` resolves when the
/// job is stopped or moves, and a lease once lost stays lost (a new run gets a new one).
pub async fn pool_job_lease_follows_the_run(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let lease_of = |key: &str, label: &str| -> JobLease {
        let leases = ledger.leases.lock().unwrap();
        let runs = leases.get(key).expect("a run of the job");
        let (_, lease) = runs.iter().rev().find(|(l, _)| l == label).expect("a run");
        lease.clone()
    };
    // A long TTL: a loaded test machine must not fence the worker mid-test.
    let options = opts(&cx).with_worker_ttl(Duration::from_secs(30));
    let a = Node::join(cx.backend.clone(), "pool", options)
        .await
        .unwrap();
    let w1 = a.add_worker(rec(&ledger, "w1")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    let lease = lease_of("k", "w1");
    assert!(lease.is_held());
    assert!(
        tokio::time::timeout(Duration::from_millis(100), lease.lost())
            .await
            .is_err(),
        "lost() resolved while the lease is held"
    );
    let waiter = tokio::spawn({
        let lease = lease.clone();
        async move { lease.lost().await }
    });
    assert!(a.stop_job("k").await.unwrap());
    tokio::time::timeout(crate::patience(), waiter)
        .await
        .expect("lost() resolves when the job is stopped")
        .unwrap();
    assert!(!lease.is_held());
    // Restarting the same key on the same worker gives a new lease; the old one stays lost.
    a.dispatch_job("k", "again").await.unwrap();
    let second = lease_of("k", "w1");
    assert!(second.is_held() && !lease.is_held() && second != lease);
    // A move ends the lease on the old worker; the new run holds its own.
    a.add_worker(rec(&ledger, "w2")).await.unwrap();
    a.remove_worker(&w1).await.unwrap();
    eventually("k moved to w2", || async {
        ledger.runs("k").contains("w2")
    })
    .await;
    assert!(!second.is_held());
    assert!(lease_of("k", "w2").is_held());
    ledger.assert_no_overlap();
    a.close().await.unwrap();
    assert!(!lease_of("k", "w2").is_held(), "close ends every lease");
    // A worker that stops renewing (its process died or froze) loses its leases on its
    // own, from local time alone: `lost()` resolves without any stop or backend call.
    let b = node(&cx).await; // worker TTL 600 ms
    b.add_worker(rec(&ledger, "w3")).await.unwrap();
    b.dispatch_job("m", "x").await.unwrap();
    let lapsing = lease_of("m", "w3");
    assert!(lapsing.is_held());
    b.simulate_crash().await;
    tokio::time::timeout(crate::patience(), lapsing.lost())
        .await
        .expect("lost() resolves once renewals stop");
    assert!(!lapsing.is_held());
    assert!(
        ledger.stops.lock().unwrap().iter().all(|(k, _)| k != "m"),
        "nobody called stop: the lease lapsed by itself"
    );
}

/// A new job whose start fails is reported to the dispatcher and does not exist.
pub async fn pool_start_failure(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    a.add_worker(Recorder {
        label: "w".into(),
        ledger: ledger.clone(),
        fail: Some("bad"),
    })
    .await
    .unwrap();
    let err = a.dispatch_job("bad", "x").await.unwrap_err();
    assert!(
        matches!(&err, Error::JobFailed { key, message } if key == "bad" && message.contains("refusing")),
        "{err:?}"
    );
    eventually("the failed job does not exist", || async {
        a.job_payload("bad").is_none()
    })
    .await;
    a.dispatch_job("good", "x").await.unwrap();
    a.close().await.unwrap();
}

/// Notifications reach the owner's handler with the exact payload; a handler without
/// `notify` is fine.
pub async fn pool_notify_worker(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    b.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    eventually("owner known", || async { a.job_owner("k").is_some() }).await;
    assert!(a
        .notify_worker("k", Bytes::from_static(b"\x00hello"))
        .await
        .unwrap());
    eventually("notified", || async {
        ledger.notes.lock().unwrap().clone() == [("k".to_owned(), Bytes::from_static(b"\x00hello"))]
    })
    .await;
    assert!(!a.notify_worker("absent", "x").await.unwrap());
    let c = node(&cx).await;
    let other = Arc::new(Ledger::default());
    b.close().await.unwrap();
    c.add_worker(Plain(other.clone())).await.unwrap();
    eventually("job moved to the plain handler", || async {
        other.runs("k").len() == 1 && a.job_owner("k").is_some()
    })
    .await;
    eventually("owner seen", || async { owner_is_plain(&a, &c) }).await;
    // a's workers replica may trail its owners replica (separate maps): until it has c's
    // worker, the owner's node is unknown and nothing is sent (false).
    eventually("notification sent to c", || async {
        a.notify_worker("k", "ignored").await.unwrap()
    })
    .await;
    a.dispatch_job("k2", "x").await.unwrap(); // still healthy afterwards
    a.close().await.unwrap();
    c.close().await.unwrap();
}

fn owner_is_plain(a: &Node, c: &Node) -> bool {
    let ids: Vec<String> = c.workers().iter().map(|w| w.id().to_owned()).collect();
    a.job_owner("k").is_some_and(|o| ids.contains(&o))
}

/// Removing a worker moves its jobs to the remaining worker, never running one twice.
pub async fn pool_remove_worker_moves_jobs(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    let w1 = a.add_worker(rec(&ledger, "w1")).await.unwrap();
    a.add_worker(rec(&ledger, "w2")).await.unwrap();
    let ks = keys(20);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    eventually("all running once", || async { ledger.exactly_once(&ks) }).await;
    a.remove_worker(&w1).await.unwrap();
    assert!(w1.is_stopped() && w1.jobs().is_empty());
    eventually("all moved to w2", || async {
        ledger.exactly_once(&ks) && ks.iter().all(|k| ledger.runs(k).contains("w2"))
    })
    .await;
    assert_eq!(a.job_keys().len(), 20, "no job lost");
    ledger.assert_no_overlap();
    a.close().await.unwrap();
}

/// Closing a node moves its jobs to another node.
pub async fn pool_close_moves_jobs(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    let ks = keys(10);
    for k in &ks {
        b.dispatch_job(k, "x").await.unwrap();
    }
    b.add_worker(rec(&ledger, "b")).await.unwrap();
    eventually("spread", || async { ledger.exactly_once(&ks) }).await;
    a.close().await.unwrap();
    assert!(a.is_closed());
    eventually("all on b", || async {
        ledger.exactly_once(&ks) && ks.iter().all(|k| ledger.runs(k).contains("b"))
    })
    .await;
    let moved = ledger
        .starts
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l, requeued)| l == "b" && *requeued)
        .count();
    assert!(moved > 0, "moved jobs are started as requeued");
    ledger.assert_no_overlap();
    b.close().await.unwrap();
}

/// A crashed node's jobs restart elsewhere once its workers' liveness expires.
pub async fn pool_crash_recovers_jobs(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    let ks = keys(10);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    b.add_worker(rec(&ledger, "b")).await.unwrap();
    eventually("spread", || async { ledger.exactly_once(&ks) }).await;
    a.simulate_crash().await;
    ledger.crash("a");
    eventually("recovered on b", || async {
        ledger.exactly_once(&ks) && ks.iter().all(|k| ledger.runs(k).contains("b"))
    })
    .await;
    eventually("dead worker removed", || async {
        b.pool_workers().len() == 1
    })
    .await;
    ledger.assert_no_overlap();
    b.close().await.unwrap();
}

/// Adding a worker moves only its share of jobs; every job still runs exactly once.
pub async fn pool_rebalance_on_join(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    let w1 = a.add_worker(rec(&ledger, "w1")).await.unwrap();
    let ks = keys(40);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    let w2 = a.add_worker(rec(&ledger, "w2")).await.unwrap();
    // Done when every job runs where rendezvous hashing puts it (not merely when some moved:
    // moves happen one by one).
    let ids = [w1.id().to_owned(), w2.id().to_owned()];
    let label = |k: &str| {
        if pulse::pool::route(k, ids.iter().map(String::as_str)) == Some(ids[1].as_str()) {
            "w2"
        } else {
            "w1"
        }
    };
    eventually("rebalanced", || async {
        ledger.exactly_once(&ks) && ks.iter().all(|k| ledger.runs(k).contains(label(k)))
    })
    .await;
    let on_w2 = ks.iter().filter(|k| ledger.runs(k).contains("w2")).count();
    assert!(
        (8..=32).contains(&on_w2),
        "about half should move, got {on_w2}"
    );
    assert_eq!(
        ledger.stops.lock().unwrap().len(),
        on_w2,
        "only moved jobs were stopped"
    );
    ledger.assert_no_overlap();
    a.close().await.unwrap();
}

/// Without workers a dispatch times out (bounded) and the job starts when a worker comes.
pub async fn pool_dispatch_is_bounded(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = Node::join(
        cx.backend.clone(),
        "pool",
        opts(&cx).with_dispatch_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert!(matches!(
        a.dispatch_job("k", "x").await,
        Err(Error::Timeout { .. })
    ));
    assert!(
        matches!(a.dispatch_job("k", "x").await, Err(Error::JobExists { .. })),
        "the job exists"
    );
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    eventually("started later", || async { ledger.runs("k").len() == 1 }).await;
    a.close().await.unwrap();
}

/// Client-only nodes dispatch, stop and notify, host no workers, and close cleanly.
pub async fn pool_client_only_node(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let worker_node = node(&cx).await;
    worker_node.add_worker(rec(&ledger, "w")).await.unwrap();
    let client = client_node(&cx).await;
    assert!(matches!(
        client.add_worker(rec(&ledger, "x")).await,
        Err(Error::InvalidArgument(_))
    ));
    client.dispatch_job("k", "x").await.unwrap();
    eventually("owner visible", || async {
        client.job_owner("k").is_some()
    })
    .await;
    assert!(client.notify_worker("k", "n").await.unwrap());
    eventually("notified", || async {
        ledger.notes.lock().unwrap().len() == 1
    })
    .await;
    assert!(client.stop_job("k").await.unwrap());
    eventually("stopped", || async { ledger.runs("k").is_empty() }).await;
    client.close().await.unwrap();
    client.close().await.unwrap();
    assert!(matches!(
        client.dispatch_job("k", "x").await,
        Err(Error::Closed { .. })
    ));
    worker_node.close().await.unwrap();
}

/// Shutdown stops every job on every node, removes the state, and refuses new nodes
/// while in progress.
pub async fn pool_shutdown(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "a")).await.unwrap();
    b.add_worker(rec(&ledger, "b")).await.unwrap();
    let ks = keys(8);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    eventually("running", || async { ledger.exactly_once(&ks) }).await;
    a.shutdown().await.unwrap();
    assert_eq!(ledger.running_count(), 0, "every job stopped");
    assert!(a.is_shutdown() && a.is_closed());
    eventually("other node closed", || async {
        b.is_closed() && b.is_shutdown()
    })
    .await;
    assert!(matches!(
        Node::join(cx.backend.clone(), "pool", opts(&cx)).await,
        Err(Error::ShuttingDown { .. })
    ));
    let jobs_hash = cx.keyspace().pool_map("pool", "jobs").unwrap().hash;
    assert!(
        !cx.backend.exists(&jobs_hash).await.unwrap(),
        "state removed"
    );
    ledger.assert_no_overlap();
}

/// Churn: 200 jobs while workers come and go across 3 nodes; at the end every job runs on
/// exactly one worker and no job ever ran twice at the same time.
pub async fn pool_churn(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let nodes = [node(&cx).await, node(&cx).await, node(&cx).await];
    let mut workers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        workers.push((
            i,
            n.add_worker(rec(&ledger, &format!("n{i}-w0")))
                .await
                .unwrap(),
        ));
    }
    let ks = keys(200);
    for (i, k) in ks.iter().enumerate() {
        nodes[i % 3].dispatch_job(k, "x").await.unwrap();
    }
    for round in 1..=6 {
        let i = round % 3;
        let label = format!("n{i}-w{round}");
        workers.push((i, nodes[i].add_worker(rec(&ledger, &label)).await.unwrap()));
        if round % 2 == 0 {
            let (j, w) = workers.remove(0);
            nodes[j].remove_worker(&w).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // let moves overlap the next round
    }
    eventually("every job runs exactly once", || async {
        ledger.exactly_once(&ks)
    })
    .await;
    ledger.assert_no_overlap();
    let owners: HashSet<String> = ks.iter().filter_map(|k| nodes[0].job_owner(k)).collect();
    assert!(owners.len() > 1, "jobs are spread");
    for n in &nodes {
        n.close().await.unwrap();
    }
}

/// Closing every node leaves no subscription behind.
pub async fn pool_close_leaks_nothing(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let a = node(&cx).await;
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    a.dispatch_job("k", "x").await.unwrap();
    a.close().await.unwrap();
    let channels: Vec<String> = ["jobs", "owners", "workers", "control"]
        .iter()
        .map(|p| cx.keyspace().pool_map("pool", p).unwrap().channel)
        .collect();
    for ch in channels {
        eventually("no subscriber left", || async {
            cx.backend.publish(&ch, Bytes::new()).await.unwrap() == 0
        })
        .await;
    }
    assert!(ledger.runs("k").is_empty(), "close stopped the job");
    assert_eq!(a.job_keys(), ["k"], "close keeps the job for other nodes");
}

/// A node's inbox holds only what the node has not read yet: the dispatch results and
/// notifications it has handled are deleted, so a long-lived dispatcher's inbox does not
/// grow by one entry per job it ever dispatched.
pub async fn pool_inbox_keeps_only_unread_messages(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let workers = node(&cx).await;
    workers.add_worker(rec(&ledger, "w")).await.unwrap();
    let client = client_node(&cx).await;
    for key in keys(40) {
        client.dispatch_job(&key, "x").await.unwrap();
    }
    assert!(client.notify_worker("job-0", "n").await.unwrap());
    eventually("notified", || async {
        ledger.notes.lock().unwrap().len() == 1
    })
    .await;
    let inbox = |n: &Node| {
        pulse::streaming::Stream::new(
            cx.backend.clone(),
            &format!("pool:inbox:{}", n.id()),
            pulse::streaming::StreamOptions::default().with_keyspace(cx.keyspace()),
        )
        .unwrap()
    };
    for (what, n) in [("dispatcher", &client), ("worker node", &workers)] {
        let stream = inbox(n);
        eventually(&format!("the {what}'s inbox is drained"), || async {
            stream.len().await.unwrap() == 0
        })
        .await;
    }
    client.close().await.unwrap();
    workers.close().await.unwrap();
}

/// A node on its own runtime thread, which can be frozen like a SIGSTOPped process.
struct Pausable {
    handle: tokio::runtime::Handle,
    pause: tokio::sync::mpsc::UnboundedSender<Duration>,
}

impl Pausable {
    fn start() -> Pausable {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (pause, mut pauses) = tokio::sync::mpsc::unbounded_channel::<Duration>();
            tx.send((rt.handle().clone(), pause)).unwrap();
            rt.block_on(async move {
                while let Some(d) = pauses.recv().await {
                    std::thread::sleep(d); // the whole runtime stands still
                }
            });
        });
        let (handle, pause) = rx.recv().unwrap();
        Pausable { handle, pause }
    }
}

/// A node paused past the worker TTL loses its jobs to another node, which runs them;
/// on resume it stops its stale copies before anything else (fencing) and never runs a
/// job at the same time as its new owner. No job is lost.
pub async fn pool_paused_node_fences_itself(cx: Ctx) {
    let ledger = Arc::new(Ledger::default());
    let frozen = Pausable::start();
    // A TTL the other node can keep renewing within on a loaded test machine (the suite
    // runs every case at once): the freeze below is 4 x TTL.
    let ttl = Duration::from_millis(1500);
    let options = opts(&cx).with_worker_ttl(ttl);
    let (backend, l) = (cx.backend.clone(), ledger.clone());
    let b_options = options.clone();
    let a = frozen
        .handle
        .spawn(async move {
            let a = Node::join(backend, "pool", options).await.unwrap();
            a.add_worker(rec(&l, "a")).await.unwrap();
            a
        })
        .await
        .unwrap();
    let ks = keys(10);
    for k in &ks {
        a.dispatch_job(k, "x").await.unwrap();
    }
    let b = Node::join(cx.backend.clone(), "pool", b_options)
        .await
        .unwrap();
    b.add_worker(rec(&ledger, "b")).await.unwrap();
    eventually("spread over a and b", || async { ledger.exactly_once(&ks) }).await;
    let on_a: Vec<String> = ks
        .iter()
        .filter(|k| ledger.runs(k).contains("a"))
        .cloned()
        .collect();
    assert!(!on_a.is_empty());
    let frozen_leases: Vec<JobLease> = {
        let leases = ledger.leases.lock().unwrap();
        on_a.iter()
            .flat_map(|k| leases.get(k).into_iter().flatten())
            .filter(|(label, _)| label == "a")
            .map(|(_, lease)| lease.clone())
            .collect()
    };
    // (Under heavy load a may already have fenced itself: such leases are lost already.)
    // Freeze a for 4 x TTL. Its jobs are frozen with it: they do not run meanwhile.
    frozen.pause.send(ttl * 4).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    ledger.crash("a");
    // b must take them while a is frozen (once a is back they may route back to it).
    let deadline = tokio::time::Instant::now() + ttl * 4;
    while !on_a.iter().all(|k| ledger.runs(k).contains("b")) {
        if tokio::time::Instant::now() >= deadline {
            let state: Vec<String> = on_a
                .iter()
                .map(|k| format!("{k}: runs {:?}, owner {:?}", ledger.runs(k), b.job_owner(k)))
                .collect();
            panic!("b did not take a's jobs while a was frozen: {state:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // After the pause a fences (stops its stale copies) and jobs settle once each.
    eventually("a stopped its stale copies", || async {
        let stops = ledger.stops.lock().unwrap();
        on_a.iter()
            .all(|k| stops.iter().any(|(sk, l)| sk == k && l == "a"))
    })
    .await;
    eventually("every job runs exactly once", || async {
        ledger.exactly_once(&ks)
    })
    .await;
    ledger.assert_no_overlap();
    assert_eq!(b.job_keys().len(), 10, "no job lost");
    // The frozen runs' leases lapsed before b took the jobs (checked at each start) and
    // stay lapsed although a renews again under a new generation (its new runs, if the
    // jobs came back, have new leases).
    for lease in &frozen_leases {
        assert!(!lease.is_held(), "a stale lease of a frozen run is held");
    }
    let closing = a.clone();
    frozen
        .handle
        .spawn(async move { closing.close().await.unwrap() })
        .await
        .unwrap();
    b.close().await.unwrap();
}

/// Each tick of a shared ticker goes to exactly one node; `stop` ends it everywhere.
pub async fn pool_ticker_ticks_once_per_slot(cx: Ctx) {
    let (a, b) = (node(&cx).await, node(&cx).await);
    let mut ta = a.new_ticker("t", Duration::from_millis(40)).await.unwrap();
    let mut tb = b.new_ticker("t", Duration::from_millis(40)).await.unwrap();
    let mut slots = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            Some(t) = ta.recv() => slots.push(t.slot),
            Some(t) = tb.recv() => slots.push(t.slot),
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
    let unique: HashSet<u64> = slots.iter().copied().collect();
    assert_eq!(unique.len(), slots.len(), "a slot ticked twice: {slots:?}");
    assert!(slots.len() >= 8, "too few ticks: {slots:?}");
    assert!(matches!(
        a.new_ticker("bad name", Duration::from_millis(10)).await,
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        a.new_ticker("z", Duration::ZERO).await,
        Err(Error::InvalidArgument(_))
    ));
    ta.stop().await.unwrap();
    let ended = tokio::time::timeout(crate::patience(), async {
        while tb.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "stop did not reach the other node");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

struct Script {
    plans: Mutex<Vec<pulse::pool::Plan>>,
}

#[async_trait]
impl pulse::pool::Producer for Script {
    fn name(&self) -> &str {
        "nightly"
    }
    async fn plan(&self) -> Result<pulse::pool::Plan, BoxError> {
        let mut plans = self.plans.lock().unwrap();
        Ok(if plans.is_empty() {
            pulse::pool::Plan::done()
        } else {
            plans.remove(0)
        })
    }
}

/// A schedule applies each plan once per interval on one node, and a finished plan stops
/// its jobs and its ticker.
pub async fn pool_scheduler_applies_plans(cx: Ctx) {
    use pulse::pool::Plan;
    let ledger = Arc::new(Ledger::default());
    let (a, b) = (node(&cx).await, node(&cx).await);
    a.add_worker(rec(&ledger, "w")).await.unwrap();
    let plans = vec![
        Plan::new().start("j1", "p1"),
        Plan::new().stop("j1").start("j2", "p2"),
        Plan::new().start("j1", "p1").start("j3", "p3").stop_all(),
    ];
    let script = Script {
        plans: Mutex::new(plans),
    };
    let sa = a
        .schedule(script, Duration::from_millis(150))
        .await
        .unwrap();
    eventually("schedule finished", || async { sa.is_finished() }).await;
    eventually("its jobs stopped", || async {
        ledger.running_count() == 0 && a.job_keys().is_empty()
    })
    .await;
    let started: Vec<String> = ledger
        .starts
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _, _)| k.clone())
        .collect();
    assert_eq!(started, ["j1", "j2", "j1", "j3"], "plans applied in order");
    assert_eq!(sa.last_error(), None);
    let schedule_map = cx.keyspace().pool_map("pool", "schedule:nightly").unwrap();
    let left = cx.backend.hash_get_all(&schedule_map.hash).await.unwrap();
    assert!(
        left.iter().all(|(k, _)| k.starts_with('=')),
        "the schedule's records were reset: {left:?}"
    );
    assert!(b.job_keys().is_empty());
    ledger.assert_no_overlap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}
