//! A worker hosted by this node: its handler, the jobs it runs, the actions that start
//! and stop them, and the public handles ([`Worker`] for a local worker, [`PoolWorker`]
//! for any worker of the pool).
//!
//! Invariants: a job is in `jobs` from the moment this worker decided to start it (before
//! the owner record is taken) until its `stop` returned *and* its owner record was updated
//! (released, deleted) in the store; `start` is never called for a key already in `jobs`,
//! so a worker never runs two copies of a job, and never re-takes a record it is still
//! releasing. Releases are retried until the store agrees (see [`release`]): a release
//! that never arrives would leave the job to an owner that no longer runs it.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use super::{
    events::{PoolEvent, StopReason},
    handler::{Job, JobHandler, JobStop},
    lease::{JobLease, LeaseState},
    node::NodeInner,
    records::{
        now_ms, owner_moves, owner_tag, released_value, InboxMessage, JobRecord, WorkerRecord,
    },
    retry::{retryable, Backoff},
};
use crate::spans;

/// Longest back-off between failed starts of a moving job.
const MAX_START_BACKOFF: Duration = Duration::from_secs(60);

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
    /// When the last liveness renewal that succeeded was *sent*.
    pub(crate) last_renewal: Mutex<Instant>,
    /// Set when the worker could not renew in time and stopped its jobs; it starts nothing
    /// until a renewal succeeds again.
    pub(crate) fenced: AtomicBool,
    /// Ownership generation: bumped whenever the worker may have lost its liveness (it
    /// fenced), so owner records of the old generation are dead for everyone.
    pub(crate) generation: std::sync::atomic::AtomicU64,
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
            last_renewal: Mutex::new(Instant::now()),
            fenced: AtomicBool::new(false),
            generation: std::sync::atomic::AtomicU64::new(1),
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
            generation: self.generation.load(Ordering::SeqCst),
            group: self.group.clone(),
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The identity this worker owns jobs under: `<id>#<generation>`. Owner records and
    /// the liveness lease use it.
    pub(crate) fn tag(&self) -> String {
        format!("{}#{}", self.id, self.generation.load(Ordering::SeqCst))
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// True when the last successful renewal was sent `fence_after` ago or more: the lease
    /// may be about to lapse (or have lapsed, after a pause), so nothing may be trusted.
    pub(crate) fn renewal_overdue(&self, fence_after: Duration) -> bool {
        self.last_renewal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            >= fence_after
    }

    /// When the last successful liveness renewal was sent.
    pub(crate) fn renewal_sent(&self) -> Instant {
        *self.last_renewal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new lease for a run of `key` won under `generation` (replacing any previous one).
    fn grant(self: &Arc<Self>, key: &str, generation: u64, hold_for: Duration) -> JobLease {
        let lease = JobLease::new(self, generation, hold_for, Arc::new(LeaseState::default()));
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
    fn revoke(&self, key: &str) {
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

    fn succeed(&self, key: &str) {
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

/// Runs the handler's `start` for a job this worker just took ownership of.
pub(crate) async fn start(
    node: Arc<NodeInner>,
    w: Arc<LocalWorker>,
    key: String,
    record: JobRecord,
    requeued: bool,
) {
    // The run belongs to the generation that won the owner record: if the worker fenced
    // since (new generation), the record is dead for everyone and the lease is never held.
    let won_tag = w
        .won_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .map(|(_, v)| owner_tag(v).to_owned());
    let won_generation = won_tag
        .as_deref()
        .and_then(|t| t.rsplit_once('#'))
        .and_then(|(_, g)| g.parse().ok())
        .unwrap_or(0);
    let job = Job {
        key: key.clone(),
        payload: record.payload.clone(),
        created_at: SystemTime::UNIX_EPOCH + Duration::from_millis(record.created_ms),
        requeued,
        worker: w.id.clone(),
        lease: w.grant(&key, won_generation, node.options.worker_ttl * 2 / 3),
        trace_parent: record.trace_parent.clone(),
    };
    let span = spans::job(&node.pool, &w.id, "start", &key);
    spans::link_producer(&span, job.trace_parent.as_deref());
    let outcome = w.handler.start(&job).instrument(span).await;
    let error = match outcome {
        Ok(()) => {
            w.succeed(&key);
            let retiring = {
                let mut slots = w.slots();
                let retiring = w.is_stopped();
                slots.insert(
                    key.clone(),
                    if retiring {
                        Slot::Stopping
                    } else {
                        Slot::Running
                    },
                );
                retiring
            };
            node.recovery.started(&key, &record);
            info!(pool = %node.pool, worker = %w.id, job = %key, requeued, "started job");
            node.metrics.starts.increment(1);
            w.running.increment(1.0);
            if won_tag.as_deref() != Some(w.tag().as_str()) {
                // Fenced while starting: the record may already be someone else's.
                warn!(pool = %node.pool, worker = %w.id, job = %key, "liveness lapsed during start: stopping the job");
                stop(
                    node.clone(),
                    w.clone(),
                    key.clone(),
                    Release::Nothing,
                    StopReason::Fenced,
                )
                .await;
            } else if retiring {
                // The worker is being removed: hand the job over right away.
                stop(
                    node.clone(),
                    w.clone(),
                    key.clone(),
                    Release::Handoff,
                    StopReason::WorkerLeaving,
                )
                .await;
            }
            None
        }
        Err(e) => {
            warn!(pool = %node.pool, worker = %w.id, job = %key, error = %e, "job failed to start");
            w.revoke(&key);
            let value = w
                .won_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key)
                .map_or_else(|| w.tag(), |(_, v)| v);
            // Released while the slot is still held, so no pass re-takes it meanwhile.
            release(&node, &w, &key, &value, Release::Handoff).await;
            let delay = w.fail(&key, node.options.retry_delay, MAX_START_BACKOFF);
            w.free(&key);
            // Look at the job again once the back-off is over.
            node.mark_later(&key, delay);
            Some(e.to_string())
        }
    };
    if let Some(dispatch) = record.dispatch {
        let message = InboxMessage::Started {
            key,
            dispatch_id: dispatch.waiter,
            error,
        };
        node.send_result(&dispatch.node, &message).await;
    }
    node.mark(Some(&job.key));
}

/// Runs the handler's `stop` (bounded by the stop timeout), then updates the owner record.
pub(crate) async fn stop(
    node: Arc<NodeInner>,
    w: Arc<LocalWorker>,
    key: String,
    how: Release,
    reason: StopReason,
) {
    w.revoke(&key);
    let job = JobStop {
        key: key.clone(),
        payload: node.recovery.payload_of(&key).unwrap_or_default(),
        worker: w.id.clone(),
        reason,
    };
    let stopping = w
        .handler
        .on_stop(&job)
        .instrument(spans::job(&node.pool, &w.id, "stop", &key));
    match tokio::time::timeout(node.options.stop_timeout, stopping).await {
        Ok(Ok(())) => {
            info!(pool = %node.pool, worker = %w.id, job = %key, release = ?how, "stopped job")
        }
        Ok(Err(e)) => {
            warn!(pool = %node.pool, worker = %w.id, job = %key, error = %e, "stop failed; the job is considered stopped")
        }
        Err(_) => {
            warn!(pool = %node.pool, worker = %w.id, job = %key, "stop timed out; the job is considered stopped")
        }
    }
    node.metrics.stops.increment(1);
    node.recovery.stopped(&key, how);
    node.events.emit(PoolEvent::JobStopped {
        key: key.clone(),
        worker: w.id.clone(),
        reason,
    });
    w.running.decrement(1.0);
    if how == Release::Handoff {
        node.metrics.moves.increment(1);
    }
    let won = w
        .won_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
    let value = won.map_or_else(|| w.tag(), |(_, v)| v);
    release(&node, &w, &key, &value, how).await;
    w.free(&key);
    node.mark(Some(&key));
}

/// Releases the owner record of `key` held under `tag` by a worker whose slot for the key
/// is [`Slot::Stopping`] and that runs nothing for it, then frees the slot. Used for records
/// found naming a worker that does not run the job (a take whose reply was lost, a release
/// or delete that failed before).
pub(crate) async fn release_orphan(
    node: Arc<NodeInner>,
    w: Arc<LocalWorker>,
    key: String,
    tag: String,
    how: Release,
) {
    info!(pool = %node.pool, worker = %w.id, job = %key, ?how, "releasing an owner record this worker holds without running the job");
    release(&node, &w, &key, &tag, how).await;
    w.free(&key);
    node.mark(Some(&key));
}

/// Updates the owner record of `key` (holding `value`) as `how` says, retrying until the
/// store agrees. Every attempt is a compare-and-set against `value`, so a repeat of an attempt
/// that was applied (its reply lost) changes nothing, and a record someone else holds by
/// now is left alone.
///
/// Gives up only when the write can no longer matter or can never succeed: the worker came
/// back under a new generation (records of its old tag are then dead for everyone and taken once
/// the old liveness is gone), the maps were closed (the node closed; `close` waits for
/// releases first, within its stop timeout), or the error is not one a retry can fix.
pub(crate) async fn release(
    node: &NodeInner,
    w: &LocalWorker,
    key: &str,
    value: &str,
    how: Release,
) {
    let mut backoff = Backoff::new(node.options.worker_ttl / 3);
    let mut attempts = 0u32;
    loop {
        let result = match how {
            Release::Delete => node
                .owners
                .test_and_delete(key, value.to_owned())
                .await
                .map(|_| ()),
            Release::Handoff => node
                .owners
                .test_and_set(key, value.to_owned(), released_value(owner_moves(value)))
                .await
                .map(|_| ()),
            Release::Nothing => Ok(()),
        };
        attempts += 1;
        match result {
            Ok(()) => {
                if attempts > 1 {
                    info!(pool = %node.pool, worker = %w.id, job = %key, attempts, "owner record updated after retries");
                }
                return;
            }
            Err(e) if retryable(&e) && w.tag() == owner_tag(value) => {
                if attempts == 1 {
                    warn!(pool = %node.pool, worker = %w.id, job = %key, error = %e, "could not update the owner record; retrying until the backend agrees");
                } else {
                    debug!(pool = %node.pool, worker = %w.id, job = %key, error = %e, attempts, "owner record update failed again");
                }
                backoff.wait().await;
            }
            Err(e) => {
                debug!(pool = %node.pool, worker = %w.id, job = %key, error = %e, "owner record update abandoned: it can no longer matter");
                return;
            }
        }
    }
}
