//! A job's lease as seen by the code running it: a fencing check for user code.
//!
//! The pool stops a worker's jobs (fencing) once its liveness may have lapsed, but it can
//! only *ask* user code to stop. A process frozen past its TTL (SIGSTOP, a long GC-like
//! pause, a suspended VM) resumes with its job tasks running while another worker already
//! runs the same jobs. [`JobLease`] closes that window: [`JobLease::is_held`] answers from
//! local state only (no round trip), and is false from the instant the worker's last
//! successful renewal is `2/3 worker_ttl` old — strictly before the backend can expire the
//! liveness lease that lets another worker take the job. Code that checks it before each
//! side effect never acts while another worker owns the job (clock *rates* of this host and
//! the backend must agree within a third, which any sane clock does).
//!
//! Invariant: once `is_held` returned false for a lease it never returns true again (a
//! restarted job gets a new lease).

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use tokio::sync::Notify;

use tokio::time::Instant;

/// A worker's liveness as its runs' leases judge it, shared by the worker and its leases:
/// whether it fenced, its ownership generation, when its last successful renewal was sent.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// When the last liveness renewal that succeeded was *sent*.
    pub(crate) last_renewal: std::sync::Mutex<Instant>,
    /// Set when the worker could not renew in time and stopped its jobs; it starts nothing
    /// until a renewal succeeds again.
    pub(crate) fenced: AtomicBool,
    /// Ownership generation: bumped whenever the worker may have lost its liveness (it
    /// fenced), so owner records of the old generation are dead for everyone.
    pub(crate) generation: std::sync::atomic::AtomicU64,
}

impl Liveness {
    pub(crate) fn new() -> Self {
        Liveness {
            last_renewal: std::sync::Mutex::new(Instant::now()),
            fenced: AtomicBool::new(false),
            generation: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// True when the last successful renewal was sent `fence_after` ago or more: the lease
    /// may be about to lapse (or have lapsed, after a pause), so nothing may be trusted.
    pub(crate) fn renewal_overdue(&self, fence_after: Duration) -> bool {
        self.renewal_sent().elapsed() >= fence_after
    }

    /// When the last successful liveness renewal was sent.
    pub(crate) fn renewal_sent(&self) -> Instant {
        *self.last_renewal.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Shared between a [`JobLease`] and the worker that granted it.
#[derive(Debug, Default)]
pub(crate) struct LeaseState {
    /// Set when the pool stops the job (move, stop, fencing, close).
    released: AtomicBool,
    /// Woken when `released` is set.
    changed: Notify,
}

impl LeaseState {
    /// Marks the job as no longer this worker's and wakes [`JobLease::lost`] waiters.
    pub(crate) fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// The lease of one run of a job on one worker, given to
/// [`JobHandler::start`](super::JobHandler::start) in [`Job::lease`](super::Job::lease).
/// Cheap to clone; move a clone into the job's task.
///
/// ```
/// # use pulse::pool::{Job, JobLease};
/// async fn run(lease: JobLease) {
///     while lease.is_held() {
///         // one bounded unit of work, e.g. read a sensor and publish it
/// #       break;
///     }
///     // not ours any more: the pool stopped it, or this process may have been paused
///     // past its TTL and another worker may already run it — do nothing more.
/// }
/// ```
#[derive(Clone)]
pub struct JobLease {
    worker: Weak<Liveness>,
    generation: u64,
    hold_for: Duration,
    state: Arc<LeaseState>,
}

impl JobLease {
    pub(crate) fn new(
        worker: &Arc<Liveness>,
        generation: u64,
        hold_for: Duration,
        state: Arc<LeaseState>,
    ) -> Self {
        JobLease {
            worker: Arc::downgrade(worker),
            generation,
            hold_for,
            state,
        }
    }

    /// True while this run of the job is certainly the only one: the pool has not stopped
    /// it and the worker's liveness cannot have lapsed. Local and cheap (no I/O); check it
    /// before each externally visible effect.
    pub fn is_held(&self) -> bool {
        if self.state.released.load(Ordering::SeqCst) {
            return false;
        }
        let Some(w) = self.worker.upgrade() else {
            return false;
        };
        let held = !w.is_fenced()
            && w.generation.load(Ordering::SeqCst) == self.generation
            && !w.renewal_overdue(self.hold_for);
        if !held {
            // Latch it: a later renewal belongs to a new generation, not to this run.
            self.state.release();
        }
        held
    }

    /// Ends this run's lease (the pool stopped or moved the job).
    pub(crate) fn revoke(&self) {
        self.state.release();
    }

    /// Resolves once [`is_held`](Self::is_held) is false: the job was stopped, or the
    /// worker's liveness may have lapsed.
    pub async fn lost(&self) {
        loop {
            let notified = self.state.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_held() {
                return;
            }
            let Some(w) = self.worker.upgrade() else {
                return;
            };
            let deadline = w.renewal_sent() + self.hold_for;
            drop(w);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

impl PartialEq for JobLease {
    /// Two leases are equal when they are clones of the same run's lease.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }
}

impl Eq for JobLease {}

impl fmt::Debug for JobLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobLease")
            .field("generation", &self.generation)
            .field("held", &self.is_held())
            .finish()
    }
}
