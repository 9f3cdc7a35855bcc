//! The keyed worker pool (`pulse::pool`) on the backend under test: the spec's behaviours
//! (pool.md §14, adapted where a weakness is fixed) and the guarantees — no job lost,
//! never two concurrent runs — under removal, close, crashes and churn.
//!
//! This module holds what the cases share — the [`Ledger`] every handler records into, the
//! recording handler, the nodes' options — and the cases live by concern: `jobs` (dispatch,
//! admission, stop, leases, notify, node lifecycle), `moves` (jobs moving on removal,
//! close, crash, join, churn, a paused node), `schedules` (ticker, scheduler) and `faults`
//! (failed backend calls), `calls` (job calls).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use pulse::async_trait;
use pulse::{
    error::BoxError,
    pool::{Job, JobHandler, JobLease, Node, NodeOptions},
    Error,
};

use crate::{eventually, Ctx};

mod calls;
mod events;
mod faults;
mod groups;
mod jobs;
mod moves;
mod recovery;
mod schedules;
pub use calls::*;
pub use events::*;
pub use faults::*;
pub use groups::*;
pub use jobs::*;
pub use moves::*;
pub use recovery::*;
pub use schedules::*;

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

/// True when `a` sees job `k` owned by one of `c`'s workers (the plain handler's node).
fn owner_is_plain(a: &Node, c: &Node) -> bool {
    let ids: Vec<String> = c.workers().iter().map(|w| w.id().to_owned()).collect();
    a.job_owner("k").is_some_and(|o| ids.contains(&o))
}

/// One worker on each node, labelled `n<i>-w0`, each with the index of its node (for churn
/// cases that later remove the oldest).
async fn first_workers(nodes: &[Node], ledger: &Arc<Ledger>) -> Vec<(usize, pulse::pool::Worker)> {
    let mut workers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        workers.push((
            i,
            n.add_worker(rec(ledger, &format!("n{i}-w0")))
                .await
                .unwrap(),
        ));
    }
    workers
}
