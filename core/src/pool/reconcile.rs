//! Reconciliation: for each local worker and each job, compare where the job should run
//! with what runs, and act.
//!
//! - A job this worker should run and nobody holds (absent, `~released`, or held by an
//!   owner the backend confirms dead) is taken by compare-and-set on its owner record,
//!   *then* started (`take`, in its own task).
//! - A job this worker runs but should not (record deleted, routed elsewhere, ownership
//!   lost) is stopped, *then* its owner record is deleted, released or left alone
//!   (`worker::stop`).
//! - An owner record naming a local worker that holds no slot for the key — left by a take
//!   whose reply was lost, or by a release or delete that failed — is released (routed
//!   elsewhere) or deleted (job gone); one routed here is simply taken again.
//! - An owner record of a job that no longer exists, whose owner released it or is gone,
//!   is deleted.
//!
//! Every decision is retried until the backend agrees: releases retry on their own
//! (`worker::release`), a take that failed marks its key again after a back-off, a failed
//! clean-up marks its key again, and the periodic full pass (`worker_ttl / 3`) repeats
//! anything else. A change that arrives while its key's slot is busy is deferred to the
//! moment the slot frees, never dropped.
//!
//! Passes are incremental: a change of a job or owner record marks its key ([`Dirty`]), and
//! a pass looks only at marked keys; membership and liveness changes and the periodic tick
//! mark everything.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use tokio::{sync::watch, time::Instant};
use tracing::{debug, warn};

use super::{
    groups::DEFAULT_GROUP,
    handler::StopReason,
    hashing::route,
    liveness::refresh_alive,
    node::NodeInner,
    records::{
        is_released, now_ms, owner_moves, owner_tag, owner_value, worker_of, JobRecord,
        WorkerRecord,
    },
    run,
    worker::{LocalWorker, Release, Slot},
};
use crate::backend::SetCondition;

/// The keys whose job or owner record changed since the last reconcile pass, or `all` when
/// anything else changed (membership, liveness, a collapsed or whole-map event, the
/// periodic safety pass): a pass looks only at what may have changed, so a dispatch costs
/// O(1) locally instead of a scan of every job.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    all: bool,
    keys: HashSet<String>,
}

impl Dirty {
    /// Everything is to be looked at (a node's first pass).
    pub(crate) fn everything() -> Self {
        Dirty {
            all: true,
            keys: HashSet::new(),
        }
    }
}

impl NodeInner {
    /// Marks job `key` (or, with `None`, everything) for the next reconcile pass and wakes it.
    pub(crate) fn mark(&self, key: Option<&str>) {
        {
            let mut d = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
            match key {
                Some(k) if !d.all => {
                    d.keys.insert(k.to_owned());
                }
                Some(_) => {}
                None => {
                    d.all = true;
                    d.keys.clear();
                }
            }
        }
        self.kick.notify_one();
    }

    /// Marks `key` once `delay` has passed (a back-off before looking at it again).
    pub(crate) fn mark_later(self: &Arc<Self>, key: &str, delay: Duration) {
        let (node, key) = (Arc::downgrade(self), key.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(node) = node.upgrade() {
                node.mark(Some(&key));
            }
        });
    }

    fn take_dirty(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// `Ok(true)` only when the backend confirms the liveness lease of `owner` (a tag or
    /// an owner value) is gone.
    pub(crate) async fn confirmed_dead(&self, owner: &str) -> crate::Result<bool> {
        let key = self.alive_key(owner_tag(owner))?;
        Ok(!self.backend.exists(&key).await?)
    }
}

pub(crate) async fn reconcile_loop(inner: Arc<NodeInner>, mut stop: watch::Receiver<bool>) {
    let period = inner.options.worker_ttl / 3;
    let mut next_refresh = Instant::now();
    let mut dead_seen: HashSet<String> = HashSet::new();
    loop {
        if Instant::now() >= next_refresh {
            refresh_alive(&inner, &mut dead_seen).await; // marks everything
            next_refresh = Instant::now() + period;
        }
        reconcile(&inner).await;
        tokio::select! {
            _ = stop.changed() => return,
            _ = inner.kick.notified() => {}
            _ = tokio::time::sleep_until(next_refresh) => {}
        }
    }
}

/// A job a worker decided to take: its owner record as seen, and whether the previous
/// owner's death must be confirmed first.
struct Take {
    key: String,
    record: JobRecord,
    previous: Option<String>,
    tag: String,
    confirm: bool,
}

/// Wins the owner record of `t.key` by compare-and-set (after confirming the previous
/// owner's death if needed), then starts the job; frees the slot if the job is not taken.
async fn take(inner: Arc<NodeInner>, w: Arc<LocalWorker>, t: Take) {
    // Freed without taking the job: look at the key again if it changed meanwhile (the
    // change was skipped while the slot was busy), or after a back-off if the backend
    // failed (the call may have been applied: the next pass sees what it left).
    let not_taken = |failed: Option<crate::Error>| {
        if let Some(e) = failed {
            let delay = w.fail(
                &t.key,
                Duration::from_millis(10),
                inner.options.worker_ttl / 3,
            );
            debug!(pool = %inner.pool, worker = %w.id, job = %t.key, error = %e, ?delay, "could not take a job; looking again after a back-off");
            w.free(&t.key);
            inner.mark_later(&t.key, delay);
        } else if w.free(&t.key) {
            inner.mark(Some(&t.key));
        }
    };
    if let Some(o) = t.previous.as_deref().filter(|_| t.confirm) {
        match inner.confirmed_dead(o).await {
            Ok(true) => {}
            Ok(false) => return not_taken(None),
            Err(e) => return not_taken(Some(e)),
        }
    }
    // The pass routed the job with the ranges it read when it began; a range changed since
    // (set_group_range returns once this node's replica has it) may give the key to
    // another group: then it is not this worker's to take.
    if inner.ranges().group_of(&t.key) != w.group {
        // Looked at again by the next pass, with the ranges as they are now.
        w.free(&t.key);
        inner.mark(Some(&t.key));
        return;
    }
    // The run's owner value: its tag, when it starts, and the job's moves so far.
    let moves = t.previous.as_deref().map_or(0, |p| owner_moves(p) + 1);
    let value = owner_value(&t.tag, now_ms(), moves);
    let won = match &t.previous {
        None => inner
            .owners
            .set_if(&t.key, value.clone(), SetCondition::IfAbsent)
            .await
            .map(|r| r.written.then_some(r.revision)),
        // Even a record naming this very worker is confirmed by compare-and-set: the
        // replica may be stale (this worker handed the job off since).
        Some(o) => inner
            .owners
            .test_and_set(&t.key, o.clone(), value.clone())
            .await
            .map(|r| r.written.then_some(r.revision)),
    };
    match won {
        Ok(Some(revision)) => {
            w.won_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(t.key.clone(), (revision, value));
            let requeued = t.previous.is_some();
            run::start(inner, w, t.key, t.record, requeued).await;
        }
        Ok(None) => not_taken(None),
        Err(e) => not_taken(Some(e)),
    }
}

/// One pass: start what this node's workers should run, stop what they should not, and
/// clean up owner records nobody runs.
async fn reconcile(inner: &Arc<NodeInner>) {
    if inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    if inner.recovery.is_recovering() {
        // The state was lost: nothing is stopped for a missing record until the jobs
        // running here are re-admitted (the recovery marks everything when done).
        return;
    }
    let dead = inner.dead.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let members = inner.workers.snapshot();
    let active: Vec<&str> = members
        .keys()
        .map(String::as_str)
        .filter(|w| !dead.contains(*w))
        .collect();
    // Within its group, a job goes to the rendezvous choice among the group's live
    // workers; a group without one holds its jobs (module `groups`).
    let ranges = inner.ranges();
    let mut by_group: HashMap<String, Vec<&str>> = HashMap::new();
    for w in &active {
        let group = members
            .get(*w)
            .and_then(|v| WorkerRecord::decode(v).ok())
            .map_or_else(|| DEFAULT_GROUP.to_owned(), |r| r.group);
        by_group.entry(group).or_default().push(w);
    }
    let target = |k: &str| -> Option<&str> {
        by_group
            .get(ranges.group_of(k))
            .and_then(|ws| route(k, ws.iter().copied()))
    };
    let dirty = inner.take_dirty();
    // A full pass reads consistent snapshots. An incremental one reads only its keys, point
    // by point: a snapshot held while notices arrive would make the replica copy the whole
    // map on its next write (copy-on-write), an O(jobs) cost per dispatch.
    let jobs = dirty.all.then(|| inner.jobs.snapshot());
    let owners = dirty.all.then(|| inner.owners.snapshot());
    let job_of = |k: &str| match &jobs {
        Some(s) => s.get(k).cloned(),
        None => inner.jobs.get(k),
    };
    let owner_of = |k: &str| {
        match &owners {
            Some(s) => s.get(k).cloned(),
            None => inner.owners.get(k),
        }
        .map(|v| match std::str::from_utf8(&v) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(&v).into_owned(),
        })
    };
    // Read before the value it qualifies (a newer value than the revision is harmless).
    let owners_revision = || {
        owners
            .as_ref()
            .map_or_else(|| inner.owners.revision(), |s| s.revision())
    };
    // An owner other workers may take from once the backend confirms its liveness is gone:
    // judged dead, no longer listed, or an old generation of a listed worker.
    let presumed_gone = |owner: &str| {
        let id = worker_of(owner);
        let stale_generation = members
            .get(id)
            .and_then(|v| WorkerRecord::decode(v).ok())
            .is_some_and(|r| format!("{id}#{}", r.generation) != owner_tag(owner));
        dead.contains(id) || !members.contains_key(id) || stale_generation
    };
    if let (Some(all), Some(held)) = (&jobs, &owners) {
        // Waiting: dispatched, and nobody (alive) holds it. Read in place: a full pass
        // of a big pool must not copy every owner to count them.
        let waiting = all
            .keys()
            .filter(|k| match held.get(*k).map(|v| std::str::from_utf8(v)) {
                None => true,
                Some(Ok(o)) => is_released(o) || presumed_gone(o),
                Some(Err(_)) => true,
            })
            .count();
        inner.metrics.waiting.set(waiting as f64);
        let mut starving = std::collections::BTreeMap::new();
        for k in all.keys() {
            let group = ranges.group_of(k);
            if !by_group.contains_key(group) {
                *starving.entry(group.to_owned()).or_insert(0) += 1;
            }
        }
        inner.report_starving(starving);
    }
    // The jobs this pass may start, each with the worker it routes to (computed once: each
    // local worker takes those routed to it).
    let candidates: Vec<(String, Bytes, Option<&str>)> = match &jobs {
        Some(all) => all
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), target(k)))
            .collect(),
        None => dirty
            .keys
            .iter()
            .filter_map(|k| job_of(k).map(|v| (k.clone(), v, target(k))))
            .collect(),
    };
    let fence_after = inner.options.worker_ttl * 2 / 3;
    // The local workers that may act now (the watchdog or the keep-alive fences the rest).
    let acting: Vec<Arc<LocalWorker>> = inner
        .locals()
        .into_iter()
        .filter(|w| !(w.is_stopped() || w.is_fenced() || w.renewal_overdue(fence_after)))
        .collect();
    for w in &acting {
        // Stop what this worker runs but should not.
        let running: Vec<String> = {
            let slots = w.slots();
            if dirty.all {
                slots
                    .iter()
                    .filter(|(_, s)| **s == Slot::Running)
                    .map(|(k, _)| k.clone())
                    .collect()
            } else {
                dirty
                    .keys
                    .iter()
                    .filter(|k| slots.get(*k) == Some(&Slot::Running))
                    .cloned()
                    .collect()
            }
        };
        for key in running {
            // Ownership is judged only from a replica that has seen our winning write.
            let won_at = w
                .won_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            let revision = owners_revision();
            let replica_current = won_at
                .as_ref()
                .is_some_and(|(r, _)| revision.epoch == r.epoch && revision.rev >= r.rev);
            let won_tag = won_at.map(|(_, t)| t);
            let release = if job_of(&key).is_none() {
                Some(Release::Delete)
            } else if replica_current && owner_of(&key) != won_tag {
                Some(Release::Nothing)
            } else if target(&key).is_some_and(|t| t != w.id) {
                Some(Release::Handoff)
            } else {
                None
            };
            if let Some(release) = release {
                w.slots().insert(key.clone(), Slot::Stopping);
                let reason = match release {
                    Release::Delete => StopReason::Stopped,
                    Release::Handoff => StopReason::Moved,
                    Release::Nothing => StopReason::OwnershipLost,
                };
                tokio::spawn(run::stop(inner.clone(), w.clone(), key, release, reason));
            }
        }
        // Right after a lost store, a job without an owner (or whose owner's liveness is
        // missing) may still run on a node that has not re-admitted it yet: only its own
        // jobs and released ones are taken until the quarantine is over (see `recovery`).
        let quiet = inner.recovery.quiet_for();
        // Start what this worker should run.
        for (key, value, target) in &candidates {
            if w.slots().contains_key(key) {
                // Busy starting or stopping it: this change is looked at when the slot frees.
                w.defer(key);
                continue;
            }
            if *target != Some(w.id.as_str()) || w.backing_off(key) {
                continue;
            }
            let Ok(record) = JobRecord::decode(value) else {
                warn!(job = %key, "ignoring a malformed job record");
                continue;
            };
            let previous = owner_of(key);
            let tag = w.tag();
            if let Some(left) = quiet {
                let safe = previous
                    .as_deref()
                    .is_some_and(|o| is_released(o) || owner_tag(o) == tag);
                if !safe {
                    inner.mark_later(key, left);
                    continue;
                }
            }
            let confirm = match previous.as_deref() {
                None => false,
                Some(o) if is_released(o) || owner_tag(o) == tag => false,
                // Another owner (another worker, or an old generation of this one): only once
                // the backend confirms that identity's liveness is gone for good.
                Some(o) if presumed_gone(o) || worker_of(o) == w.id => true,
                Some(_) => continue, // the live owner releases it first
            };
            // The round trips (liveness check, owner CAS, start) run in their own task, so
            // one pass takes many jobs at once (their CAS pipeline on the connection); the
            // `Starting` slot keeps later passes off the key meanwhile.
            w.slots().insert(key.clone(), Slot::Starting);
            tokio::spawn(take(
                inner.clone(),
                w.clone(),
                Take {
                    key: key.clone(),
                    record,
                    previous,
                    tag,
                    confirm,
                },
            ));
        }
    }
    // Owner records nobody runs.
    let by_id: HashMap<&str, &Arc<LocalWorker>> =
        acting.iter().map(|w| (w.id.as_str(), w)).collect();
    let recorded: Vec<String> = match &owners {
        Some(all) => all.keys().cloned().collect(),
        None => dirty.keys.iter().cloned().collect(),
    };
    for key in &recorded {
        let Some(owner) = owner_of(key) else {
            continue;
        };
        let job = job_of(key);
        if let Some(w) = by_id.get(worker_of(&owner)) {
            // Ours, but not running here: a take whose reply was lost, or a release or
            // delete that failed. Routed here, the candidate loop takes it again; otherwise
            // release it, holding the slot so no take of the key overlaps the release. (A
            // release the replica has not shown yet looks the same; its repeat finds the
            // record changed and does nothing.)
            let how = match job {
                None => Release::Delete,
                Some(_) if target(key) != Some(w.id.as_str()) => Release::Handoff,
                Some(_) => continue,
            };
            {
                let mut slots = w.slots();
                if slots.contains_key(key) {
                    continue;
                }
                slots.insert(key.clone(), Slot::Stopping);
            }
            tokio::spawn(run::release_orphan(
                inner.clone(),
                (*w).clone(),
                key.clone(),
                owner,
                how,
            ));
            continue;
        }
        if job.is_some() {
            continue;
        }
        let removable = is_released(&owner)
            || (presumed_gone(&owner) && matches!(inner.confirmed_dead(&owner).await, Ok(true)));
        if removable {
            if let Err(e) = inner.owners.test_and_delete(key, owner).await {
                debug!(pool = %inner.pool, job = %key, error = %e, "could not delete a stale owner record; looking again later");
                inner.mark_later(key, inner.options.retry_delay);
            }
        }
    }
}
