//! How a worker, a node and a whole pool leave: `retire` (a worker's jobs stopped and
//! released, then its liveness and record withdrawn), `close` (a node's tasks stopped and
//! its workers retired), `shutdown` (every job of the pool stopped, then its state
//! deleted), and the control loop through which other nodes learn of a shutdown.
//!
//! Contract with the rest of the pool: a retiring worker is marked stopped first, so no
//! pass starts anything new on it; it waits for every slot to free (starts finishing,
//! releases being retried) within the stop timeout, so `close` returns only after every
//! owner record it is responsible for is released, or says it could not.

use std::sync::{atomic::Ordering, Arc};

use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tracing::{info, warn};

use super::{
    handler::StopReason,
    node::{NodeInner, SHUTDOWN},
    records::is_released,
    retry::until_agreed,
    run,
    worker::{LocalWorker, Release},
};
use crate::{Error, Result};

/// Stops a worker's jobs and withdraws it from the pool.
///
/// Its jobs are stopped and their owner records updated as `release` says (each retried
/// until the backend agrees); jobs still starting stop once started. Once nothing is left
/// in its slots, its liveness is released and then its record deleted — liveness first, so
/// a node that sees the record go finds the liveness already gone and can take anything
/// still in the worker's name at once. Stopping and releasing are bounded by twice the
/// stop timeout (the handlers' `stop`, then the releases), the withdrawal by one more.
///
/// Errors: [`Error::Timeout`] when jobs or their releases were still in progress at the
/// stop timeout — the liveness is then left to lapse by itself (`worker_ttl`), so nobody
/// takes a job this worker may still be running; backend errors of the withdrawal.
pub(crate) async fn retire(
    inner: &Arc<NodeInner>,
    w: Arc<LocalWorker>,
    release: Release,
) -> Result<()> {
    w.stopped.store(true, Ordering::SeqCst);
    // Only started jobs can be stopped; jobs still starting are stopped once started.
    let reason = if release == Release::Delete {
        StopReason::Shutdown
    } else {
        StopReason::WorkerLeaving
    };
    for k in w.stopping_all_running() {
        tokio::spawn(run::stop(inner.clone(), w.clone(), k, release, reason));
    }
    // Each stop frees its slot once the handler's `stop` returned (within the stop timeout)
    // and the release reached the store; jobs still starting finish their start, see the
    // worker retiring and stop themselves (`run::start`). Wait for every slot, not for
    // the tasks: a release retried while the store refuses must not hold `close` forever.
    let deadline = Instant::now() + inner.options.stop_timeout * 2;
    let drained = loop {
        let freed = w.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable(); // registered before the check: no wake-up is missed
        if w.slots().is_empty() {
            break true;
        }
        if tokio::time::timeout_at(deadline, freed).await.is_err() {
            warn!(pool = %inner.pool, worker = %w.id, jobs = w.slots().len(), "jobs still starting or being released at the stop timeout; the worker's liveness is left to lapse");
            break false;
        }
    };
    let deadline = Instant::now() + inner.options.stop_timeout;
    let cap = inner.options.worker_ttl / 3;
    let (tag, alive) = (w.tag(), inner.alive_key(&w.tag())?);
    let mut outcome = Ok(());
    if drained {
        let released = until_agreed(Some(deadline), cap, || {
            inner.backend.lease_release(&alive, &tag)
        })
        .await;
        outcome = released.map(|_| ());
    }
    let removed = until_agreed(Some(deadline), cap, || inner.workers.delete(&w.id)).await;
    outcome = outcome.and(removed.map(|_| ()));
    if !drained {
        outcome = outcome.and(Err(Error::Timeout {
            what: format!("jobs of worker {:?} to stop", w.id),
        }));
    }
    info!(pool = %inner.pool, worker = %w.id, ok = outcome.is_ok(), "worker removed");
    outcome
}

/// Signals the node's tasks to stop and hands them over, for the caller to await or abort.
fn halt_tasks(inner: &NodeInner) -> Vec<JoinHandle<()>> {
    let _ = inner.stop_tasks.send(true);
    inner
        .tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
        .collect()
}

/// [`Node::simulate_crash`](super::Node::simulate_crash): the node stops the way a killed
/// process does — tasks end, workers stop renewing, nothing is released, no handler runs.
pub(crate) async fn crash(inner: &Arc<NodeInner>) {
    inner.closed.store(true, Ordering::SeqCst);
    for t in halt_tasks(inner) {
        t.abort();
        let _ = t.await;
    }
    for w in inner.locals() {
        w.stopped.store(true, Ordering::SeqCst);
    }
    // Closing a reader or a map cannot fail (their `Result` is the shape of every close).
    let _ = inner.reader.close().await;
    for m in [
        &inner.jobs,
        &inner.owners,
        &inner.workers,
        &inner.control,
        &inner.groups,
    ] {
        let _ = m.close().await;
    }
    inner.events.close();
}

/// [`Node::close`](super::Node::close) (with `Release::Handoff`) and the close that ends
/// a shutdown (`Release::Delete`).
pub(crate) async fn close(inner: &Arc<NodeInner>, release: Release) -> Result<()> {
    if inner.closed.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let tasks = halt_tasks(inner);
    // Tasks stop at their next await on the stop signal; a reconcile pass in progress
    // finishes first (never leave a half-taken job). Abort only what overruns the one
    // deadline they share (each its own would add up).
    let deadline = Instant::now() + inner.options.stop_timeout;
    for mut t in tasks {
        if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
            t.abort();
        }
    }
    let workers: Vec<Arc<LocalWorker>> = inner
        .local
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .map(|(_, w)| w)
        .collect();
    let mut first_err = None;
    for w in workers {
        if let Err(e) = retire(inner, w, release).await {
            first_err.get_or_insert(e);
        }
    }
    let _ = inner.reader.close().await; // cannot fail
                                        // The inbox is deleted to leave nothing behind; should that keep failing, it expires
                                        // by itself within its TTL, so the failure is not the caller's to handle.
    let deadline = Instant::now() + inner.options.stop_timeout;
    let cap = inner.options.worker_ttl / 3;
    if let Err(e) = until_agreed(Some(deadline), cap, || inner.inbox.destroy()).await {
        warn!(pool = %inner.pool, node = %inner.id, error = %e, "could not delete this node's inbox; it expires by itself");
    }
    inner
        .waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    for m in [
        &inner.jobs,
        &inner.owners,
        &inner.workers,
        &inner.control,
        &inner.groups,
    ] {
        let _ = m.close().await; // cannot fail
    }
    inner.events.close();
    info!(pool = %inner.pool, node = %inner.id, "closed");
    first_err.map_or(Ok(()), Err)
}

pub(crate) async fn control_loop(
    inner: Arc<NodeInner>,
    mut sub: crate::rmap::MapSubscriber,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            e = sub.recv() => {
                if e.is_none() {
                    return;
                }
                let requested_by = inner.control.get(SHUTDOWN);
                // The initiating node runs the shutdown itself.
                let by_other = requested_by.as_deref().is_some_and(|by| by != inner.id.as_bytes());
                if by_other && !inner.closed.load(Ordering::SeqCst) {
                    info!(pool = %inner.pool, node = %inner.id, "pool shutdown requested");
                    inner.shut_down.store(true, Ordering::SeqCst);
                    let inner = inner.clone();
                    // Close from another task: close() stops (and awaits) this one.
                    tokio::spawn(async move { close(&inner, Release::Delete).await });
                    return;
                }
            }
        }
    }
}

/// [`Node::shutdown`](super::Node::shutdown): sets the expiring shutdown flag, deletes
/// every job, waits (bounded) for the owner records to drain — clearing those of released
/// or dead owners, looked at again on every change, every `worker_ttl / 3` (a crashed
/// owner's liveness lapses without changing any map) and soon after a failed clean-up —
/// then closes this node and destroys the pool's maps. A step that fails returns its
/// error, and calling `shutdown` again repeats every step safely.
pub(crate) async fn shutdown(inner: &Arc<NodeInner>) -> Result<()> {
    info!(pool = %inner.pool, node = %inner.id, "shutting down the pool");
    inner.control.set(SHUTDOWN, inner.id.clone()).await?;
    inner.jobs.reset().await?;
    let deadline = Instant::now() + inner.options.shutdown_timeout;
    let mut changes = inner.owners.subscribe()?;
    let mut timed_out = false;
    while !inner.owners.is_empty() {
        let live: Vec<String> = inner.owners.keys();
        let mut failed = false;
        // Records of dead or released owners are nobody's to stop: clear them.
        for key in live {
            if let Some(o) = inner.owners.get(&key) {
                let o = String::from_utf8_lossy(&o).into_owned();
                let gone = match inner.confirmed_dead(&o).await {
                    Ok(dead) => dead,
                    Err(_) => {
                        failed = true;
                        false
                    }
                };
                if (is_released(&o) || gone) && inner.owners.test_and_delete(&key, o).await.is_err()
                {
                    failed = true;
                }
            }
        }
        // Looked at again on the next change, and in any case soon after a failure or
        // once a dead owner's liveness may have lapsed (that changes no map).
        let pause = if failed {
            inner.options.retry_delay
        } else {
            inner.options.worker_ttl / 3
        };
        let wake = deadline.min(Instant::now() + pause);
        match tokio::time::timeout_at(wake, changes.recv()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,                        // the map closed under us
            Err(_) if Instant::now() < deadline => {} // look again after a failure
            Err(_) => {
                timed_out = true;
                break;
            }
        }
    }
    close(inner, Release::Delete).await?;
    inner.shut_down.store(true, Ordering::SeqCst);
    inner.owners.destroy().await?;
    inner.jobs.destroy().await?;
    inner.workers.destroy().await?;
    inner.groups.destroy().await?;
    if timed_out {
        return Err(Error::Timeout {
            what: format!("jobs of pool {:?} to stop", inner.pool),
        });
    }
    Ok(())
}
