//! Recovery from a lost store: when the pool's state vanishes or regresses (Redis restarted
//! without persistence, `FLUSHALL`, a failover to an empty or lagging replica), the jobs
//! this node's workers were running come back from what the node holds locally.
//!
//! What the node keeps: every job a local worker started, with its record (key, payload,
//! creation time, trace parent), from its start until the job is gone for good (its
//! record deleted: stopped here for that, or seen deleted by the jobs replica) or another
//! node's worker is seen owning it (that node keeps it then). A run stopped by fencing
//! (its worker cut off from the store) or handed over is kept until then: that is exactly
//! the case of a store that went away, or of a hand-over decided from a view that a
//! moment later turns out to be of a lost state.
//!
//! How a loss is seen: a replica of one of the pool's maps (jobs, owners, workers)
//! resyncs to another generation of its map (its epoch changed from one that existed,
//! e.g. to none after a flush) or to an older revision of the same one (a replica that
//! lagged). Then, before any reconcile pass may stop a job for its missing record (passes
//! are held while recovering):
//! 1. each local worker renews its liveness and re-writes its worker record, so no other
//!    node takes its jobs for a dead owner's; the groups' ranges as last seen are
//!    re-written if absent, so no job changes group;
//! 2. for each job still running here, its owner record is written if absent (an owner
//!    first, so no other worker can take the job between the two writes); if another
//!    worker holds it by now, the local run stops;
//! 3. each kept job's record is written if absent (without its dispatch: the dispatcher
//!    heard back long ago) — jobs no longer running here (fenced) are then taken by
//!    whichever worker they route to.
//!
//! Then a quarantine: for a map check interval plus the worker TTL after the loss was
//! seen, this node takes no job that has no owner record or whose owner's liveness is
//! missing — its runner may be alive on a node that has not seen the loss yet (each
//! replica notices at its own probe, so this node's view can also mix maps from before
//! and after it), and the liveness leases went with the store. Jobs whose runners
//! re-admitted them are untouched; an orphan (its runner died with the store) waits that
//! much longer. (The chaos harness once saw four jobs run twice for a second without it:
//! a node that had recovered took unowned jobs its stale replica still listed, while
//! their runner's node had not yet re-written their owners.)
//!
//! Every step is a conditional write, repeated until the store agrees. The window left:
//! a job dispatched in the last moment before the loss whose start never reached a worker
//! (its dispatcher's call times out: never silently gone), and a job stopped by
//! `stop_job` whose deletion no node had seen before the loss (it comes back).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tracing::{debug, info, warn};

use super::{
    events::PoolEvent,
    handler::StopReason,
    node::{NodeInner, SHUTDOWN},
    records::is_released,
    records::JobRecord,
    retry::Backoff,
    run,
    worker::{LocalWorker, Release, Slot},
};
use crate::{
    backend::{Revision, SetCondition},
    rmap::{EventKind, MapEvent},
};

/// What a node keeps to recover from a lost store.
#[derive(Default)]
pub(crate) struct Recovery {
    /// The jobs local workers run or ran until a fence, by key.
    held: Mutex<HashMap<String, JobRecord>>,
    /// Each map replica's last revision (jobs, owners, workers), to tell a loss from a
    /// change.
    seen: Mutex<HashMap<&'static str, Revision>>,
    /// Set while recovering: reconcile passes wait.
    pub(crate) recovering: AtomicBool,
    /// Losses seen so far: a recovery repeats if another is seen while it runs.
    losses: std::sync::atomic::AtomicU64,
    /// The groups' ranges record as last seen (re-written, if absent, after a loss).
    ranges: Mutex<Option<bytes::Bytes>>,
    /// Until when jobs without a live owner are not taken, after a loss (the quarantine).
    quiet_until: Mutex<Option<tokio::time::Instant>>,
}

impl Recovery {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, JobRecord>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A local worker started `key` from `record`.
    pub(crate) fn started(&self, key: &str, record: &JobRecord) {
        let mut kept = record.clone();
        kept.dispatch = None;
        self.held().insert(key.to_owned(), kept);
    }

    /// A local run of `key` ended the way `how` says: its record deleted, the job is no
    /// longer anyone's to bring back; handed over or fenced, it is kept (see the module
    /// docs).
    pub(crate) fn stopped(&self, key: &str, how: Release) {
        if how == Release::Delete {
            self.held().remove(key);
        }
    }

    /// Replica `map` is at `revision` (at join): a loss is judged from there.
    pub(crate) fn init(&self, map: &'static str, revision: Revision) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(map, revision);
    }

    /// The ranges record is `ranges` (at join).
    pub(crate) fn seen_ranges(&self, ranges: Option<bytes::Bytes>) {
        *self.ranges.lock().unwrap_or_else(|p| p.into_inner()) = ranges;
    }

    /// The payload job `key` was started with here, while kept.
    pub(crate) fn payload_of(&self, key: &str) -> Option<bytes::Bytes> {
        self.held().get(key).map(|r| r.payload.clone())
    }

    /// Starts (or extends) the quarantine after a loss: for `span`, a job with no owner
    /// or an owner whose liveness is missing is not taken, since its runner may be alive
    /// on a node that has not seen the loss yet (its replicas notice within their check
    /// interval) and the liveness leases went with the store.
    pub(crate) fn quarantine(&self, span: Duration) {
        let until = tokio::time::Instant::now() + span;
        let mut quiet = self.quiet_until.lock().unwrap_or_else(|p| p.into_inner());
        if quiet.is_none_or(|q| q < until) {
            *quiet = Some(until);
        }
    }

    /// How much of the quarantine is left, if any.
    pub(crate) fn quiet_for(&self) -> Option<Duration> {
        let quiet = *self.quiet_until.lock().unwrap_or_else(|p| p.into_inner());
        quiet
            .map(|until| until.saturating_duration_since(tokio::time::Instant::now()))
            .filter(|left| !left.is_zero())
    }

    pub(crate) fn is_recovering(&self) -> bool {
        self.recovering.load(Ordering::SeqCst)
    }
}

impl NodeInner {
    /// Called for every change replica `map` (`jobs`, `owners`, `workers`, `groups`) applies: a
    /// loss of the state starts a recovery; a record seen deleted, or a job seen owned by
    /// another node's worker, is no longer kept.
    pub(crate) fn state_changed(self: &Arc<Self>, map: &'static str, e: &MapEvent) {
        let previous = self
            .recovery
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(map, e.revision)
            .unwrap_or_default();
        let lost = (e.kind == EventKind::Reset
            && previous.epoch != 0
            && e.revision.epoch != previous.epoch)
            || (e.revision.epoch == previous.epoch && e.revision.rev < previous.rev);
        if lost {
            if self.shut_down.load(Ordering::SeqCst) || self.control.contains_key(SHUTDOWN) {
                return; // the pool's own shutdown deleted it
            }
            warn!(pool = %self.pool, map, ?previous, now = ?e.revision, "the pool's state was lost or regressed; re-admitting the jobs this node runs");
            self.recovery.losses.fetch_add(1, Ordering::SeqCst);
            self.recovery.quarantine(
                crate::rmap::MapOptions::default().check_interval + self.options.worker_ttl,
            );
            if !self.recovery.recovering.swap(true, Ordering::SeqCst) {
                self.events.emit(PoolEvent::StateLost);
                tokio::spawn(recover(self.clone()));
            }
            return;
        }
        if map == "groups" {
            let now = self.groups.get(super::groups::RANGES);
            *self
                .recovery
                .ranges
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = now;
        }
        let Some(key) = e.key.as_deref() else {
            return;
        };
        match (map, e.kind) {
            // A local run keeps it until its stop (which tells the handler the payload).
            ("jobs", EventKind::Delete)
                if !self.locals().iter().any(|w| w.slots().contains_key(key)) =>
            {
                self.recovery.held().remove(key);
            }
            ("owners", EventKind::Change) => {
                let owner = self.owners.get(key);
                let owner = owner.as_deref().and_then(|o| std::str::from_utf8(o).ok());
                let elsewhere = owner.is_some_and(|o| {
                    let id = super::records::worker_of(o);
                    !is_released(o) && !self.locals().iter().any(|w| w.id == id)
                });
                if elsewhere {
                    self.recovery.held().remove(key);
                }
            }
            _ => {}
        }
    }
}

/// Re-admits the kept jobs (see the module docs), repeating until every step succeeded and
/// no job started meanwhile is left out; then lets reconcile passes run again. Each step
/// that succeeded is not repeated (a pass over hundreds of jobs meets a failed call now and
/// then), unless another loss is seen meanwhile: then it starts over.
async fn recover(inner: Arc<NodeInner>) {
    let mut backoff = Backoff::new(inner.options.worker_ttl / 3);
    let mut progress = Progress::default();
    let mut losses = inner.recovery.losses.load(Ordering::SeqCst);
    loop {
        if inner.closed.load(Ordering::SeqCst) {
            break;
        }
        let failed = readmit(&inner, &mut progress).await;
        let now = inner.recovery.losses.load(Ordering::SeqCst);
        if now != losses {
            // Another map's loss seen meanwhile (replicas resync one by one): over again.
            losses = now;
            progress = Progress::default();
            continue;
        }
        match failed {
            None => break,
            Some(e) => {
                debug!(pool = %inner.pool, error = %e, left = progress.left, "re-admitting jobs: a step failed; retrying what is left");
                backoff.wait().await;
            }
        }
    }
    inner.recovery.recovering.store(false, Ordering::SeqCst);
    let readmitted = progress.jobs.len();
    inner
        .events
        .emit(PoolEvent::StateRecovered { jobs: readmitted });
    info!(pool = %inner.pool, jobs = readmitted, "the pool's state is recovered");
    inner.mark(None);
}

/// What a recovery has re-admitted so far.
#[derive(Default)]
struct Progress {
    workers: std::collections::HashSet<String>,
    ranges: bool,
    jobs: std::collections::HashSet<String>,
    /// Steps left after the last pass.
    left: usize,
}

/// One pass over what is not re-admitted yet; `None` once everything is, else the first
/// error met (the other steps went on).
async fn readmit(inner: &Arc<NodeInner>, progress: &mut Progress) -> Option<crate::Error> {
    let mut first_error: Option<crate::Error> = None;
    // 1. Liveness and worker records of the workers that may act.
    for w in inner.locals() {
        if w.is_stopped() || w.is_fenced() || progress.workers.contains(&w.id) {
            continue; // a fenced worker comes back under a new generation on its own
        }
        match readmit_worker(inner, &w).await {
            Ok(()) => {
                progress.workers.insert(w.id.clone());
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // The ranges, so no job changes group for the loss.
    if !progress.ranges {
        let ranges = inner
            .recovery
            .ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let written = match ranges {
            Some(ranges) => inner
                .groups
                .set_if(super::groups::RANGES, ranges, SetCondition::IfAbsent)
                .await
                .map(|_| ()),
            None => Ok(()),
        };
        match written {
            Ok(()) => progress.ranges = true,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // 2 and 3, for each kept job not re-admitted yet (jobs started meanwhile included).
    let held: Vec<(String, JobRecord)> = inner
        .recovery
        .held()
        .iter()
        .filter(|(k, _)| !progress.jobs.contains(*k))
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect();
    progress.left = held.len();
    for (key, record) in &held {
        match readmit_job(inner, key, record).await {
            Ok(()) => {
                progress.jobs.insert(key.clone());
                progress.left -= 1;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if first_error.is_none()
        && inner
            .recovery
            .held()
            .keys()
            .any(|k| !progress.jobs.contains(k))
    {
        // Started while this pass ran: once more for them.
        tokio::time::sleep(Duration::from_millis(1)).await;
        return Box::pin(readmit(inner, progress)).await;
    }
    first_error
}

/// Renews `w`'s liveness and re-writes its worker record.
async fn readmit_worker(inner: &NodeInner, w: &LocalWorker) -> crate::Result<()> {
    let tag = w.tag();
    let sent = tokio::time::Instant::now();
    if inner
        .backend
        .lease_acquire(&inner.alive_key(&tag)?, &tag, inner.options.worker_ttl)
        .await?
    {
        *w.live
            .last_renewal
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = sent;
    }
    inner
        .workers
        .set(&w.id, w.record(&inner.id).encode()?)
        .await?;
    Ok(())
}

/// Re-admits job `key`: its owner first if it runs here (or stops it here when another
/// worker holds it by now), then its record; each only if absent.
async fn readmit_job(inner: &Arc<NodeInner>, key: &str, record: &JobRecord) -> crate::Result<()> {
    let running = inner
        .locals()
        .into_iter()
        .find(|w| !w.is_fenced() && w.slots().get(key) == Some(&Slot::Running));
    if let Some(w) = running {
        // The very value it held, so its start time and moves survive too.
        let value = w
            .won_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map_or_else(|| w.tag(), |(_, v)| v.clone());
        let out = inner
            .owners
            .set_if(key, value.clone(), SetCondition::IfAbsent)
            .await?;
        let ours = out.written || out.previous.as_deref() == Some(value.as_bytes());
        if !ours {
            // Another worker holds it by now (it re-admitted the job first): ours stops.
            w.slots().insert(key.to_owned(), Slot::Stopping);
            tokio::spawn(run::stop(
                inner.clone(),
                w.clone(),
                key.to_owned(),
                Release::Nothing,
                StopReason::OwnershipLost,
            ));
            return Ok(());
        }
        w.won_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), (out.revision, value));
    }
    inner
        .jobs
        .set_if(key, record.encode()?, SetCondition::IfAbsent)
        .await?;
    Ok(())
}
