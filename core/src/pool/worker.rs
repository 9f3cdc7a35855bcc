//! A worker hosted by this node: its handler, the jobs it runs (their slots, leases and
//! won owner values), its liveness state, and the public handles ([`Worker`] for a local
//! worker, [`PoolWorker`] for any worker of the pool). What acts on a worker's jobs —
//! start, stop, release — is module `run`; this module knows nothing of the node.
//!
//! Invariants: a job is in `jobs` from the moment this worker decided to start it (before
//! the owner record is taken) until its `stop` returned *and* its owner record was updated
//! (released, deleted) in the store; `start` is never called for a key already in `jobs`,
//! so a worker never runs two copies of a job, and never re-takes a record it is still
//! releasing.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::{
    handler::JobHandler,
    lease::{JobLease, LeaseState, Liveness},
    records::{now_ms, WorkerRecord},
};

/// What a worker is doing with a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Starting,
    Running,
    Stopping,
}

/// What to do with the owner record after stopping a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// The job was stopped for good: delete the record (if still ours).
    Delete,
    /// The job moves: mark it released (if still ours) so another worker takes it.
    Handoff,
    /// Ownership was already lost: touch nothing.
    Nothing,
}

pub(crate) struct LocalWorker {
    pub(crate) id: String,
    /// Its worker group (module `groups`).
    pub(crate) group: String,
    pub(crate) created: SystemTime,
    pub(crate) handler: Arc<dyn JobHandler>,
    pub(crate) jobs: Mutex<HashMap<String, Slot>>,
    /// The owners-map revision at which this worker won each job it holds: the owners
    /// replica says nothing about a job until it has reached that revision.
    pub(crate) won_at: Mutex<HashMap<String, (crate::backend::Revision, String)>>,
    backoff: Mutex<HashMap<String, (Instant, Duration)>>,
    /// Keys whose record changed while their slot was busy: the change was not looked at,
    /// so the key is looked at again when the slot frees.
    deferred: Mutex<HashSet<String>>,
    pub(crate) stopped: AtomicBool,
    /// Its liveness (fenced, generation, last renewal), shared with its runs' leases.
    pub(crate) live: Arc<Liveness>,
    /// Woken whenever a job leaves `jobs` (so removal can wait for in-flight starts).
    pub(crate) slot_freed: tokio::sync::Notify,
    /// The lease handed to the user code of each job started here, released on stop.
    leases: Mutex<HashMap<String, JobLease>>,
    /// The `pulse_pool_jobs_running` series of this worker.
    pub(crate) running: metrics::Gauge,
}

impl LocalWorker {
    pub(crate) fn new(
        id: String,
        group: String,
        handler: Arc<dyn JobHandler>,
        running: metrics::Gauge,
    ) -> Self {
        LocalWorker {
            id,
            group,
            created: SystemTime::now(),
            handler,
            jobs: Mutex::new(HashMap::new()),
            won_at: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            deferred: Mutex::new(HashSet::new()),
            stopped: AtomicBool::new(false),
            live: Arc::new(Liveness::new()),
            slot_freed: tokio::sync::Notify::new(),
            leases: Mutex::new(HashMap::new()),
            running,
        }
    }

    pub(crate) fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks every started job `Stopping` and returns their keys, for the caller to stop
    /// (jobs still starting stop themselves once started, see [`start`]).
    pub(crate) fn stopping_all_running(&self) -> Vec<String> {
        let mut slots = self.slots();
        let keys: Vec<String> = slots
            .iter()
            .filter(|(_, s)| **s == Slot::Running)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            slots.insert(k.clone(), Slot::Stopping);
        }
        keys
    }

    /// This worker's record in the `workers` map, hosted by `node`, at its current
    /// generation.
    pub(crate) fn record(&self, node: &str) -> WorkerRecord {
        WorkerRecord {
            node: node.to_owned(),
            created_ms: now_ms(),
            generation: self.live.generation.load(Ordering::SeqCst),
            group: self.group.clone(),
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The identity this worker owns jobs under: `<id>#<generation>`. Owner records and
    /// the liveness lease use it.
    pub(crate) fn tag(&self) -> String {
        format!(
            "{}#{}",
            self.id,
            self.live.generation.load(Ordering::SeqCst)
        )
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.live.is_fenced()
    }

    /// See [`Liveness::renewal_overdue`].
    pub(crate) fn renewal_overdue(&self, fence_after: Duration) -> bool {
        self.live.renewal_overdue(fence_after)
    }

    /// When the last successful liveness renewal was sent.
    pub(crate) fn renewal_sent(&self) -> Instant {
        self.live.renewal_sent()
    }

    /// A new lease for a run of `key` won under `generation` (replacing any previous one).
    pub(crate) fn grant(&self, key: &str, generation: u64, hold_for: Duration) -> JobLease {
        let lease = JobLease::new(
            &self.live,
            generation,
            hold_for,
            Arc::new(LeaseState::default()),
        );
        if let Some(old) = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), lease.clone())
        {
            old.revoke();
        }
        lease
    }

    /// Ends the lease of `key`'s current run (its code must stop acting).
    pub(crate) fn revoke(&self, key: &str) {
        if let Some(lease) = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
        {
            lease.revoke();
        }
    }

    /// The lease of `key`'s run here while this worker runs the job and holds the lease
    /// ([`JobLease::is_held`]): what a job call needs to be handed to this worker.
    pub(crate) fn lease_of(&self, key: &str) -> Option<JobLease> {
        if self.slots().get(key) != Some(&Slot::Running) {
            return None;
        }
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .filter(|l| l.is_held())
            .cloned()
    }

    /// True while a failed start of `key` is backing off.
    pub(crate) fn backing_off(&self, key: &str) -> bool {
        let b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        b.get(key).is_some_and(|(until, _)| Instant::now() < *until)
    }

    /// Starts (or doubles, up to `cap`) the back-off of `key`; returns its length.
    pub(crate) fn fail(&self, key: &str, first: Duration, cap: Duration) -> Duration {
        let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let delay = b
            .get(key)
            .map_or(first, |(_, d)| (*d * 2).min(cap))
            .min(cap);
        b.insert(key.to_owned(), (Instant::now() + delay, delay));
        delay
    }

    /// Remembers that a change of `key` arrived while its slot was busy.
    pub(crate) fn defer(&self, key: &str) {
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned());
    }

    /// Frees the slot of `key` and wakes whoever waits for slots; true when a change of the
    /// key arrived while the slot was busy (the caller must have the key looked at again).
    pub(crate) fn free(&self, key: &str) -> bool {
        self.slots().remove(key);
        self.slot_freed.notify_waiters();
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
    }

    pub(crate) fn succeed(&self, key: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// A worker hosted by a node.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<LocalWorker>,
}

impl Worker {
    pub(crate) fn new(inner: Arc<LocalWorker>) -> Self {
        Worker { inner }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// The worker's ID, unique in the pool.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Its worker group ([`DEFAULT_GROUP`](super::DEFAULT_GROUP) unless added to another).
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// When it was added.
    pub fn created_at(&self) -> std::time::SystemTime {
        self.inner.created
    }

    /// The keys of the jobs it runs (started and not stopping), sorted.
    pub fn jobs(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .inner
            .slots()
            .iter()
            .filter(|(_, s)| **s == Slot::Running)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// True once removed (or its node closed).
    pub fn is_stopped(&self) -> bool {
        self.inner.is_stopped()
    }
}

/// A worker of the pool, from any node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolWorker {
    /// The worker's ID.
    pub id: String,
    /// The node hosting it.
    pub node: String,
    /// Its worker group.
    pub group: String,
    /// When it was added.
    pub created_at: std::time::SystemTime,
}
