//! Worker liveness: renewing each worker's lease, fencing a worker that could not renew in
//! time, and judging other workers dead.
//!
//! A failed renewal is retried at once (with back-off) while a success would still come
//! well before the worker is due to fence, so one lost reply does not stop a worker's jobs;
//! if renewals keep failing, the watchdog fences the worker (stops its jobs) before its
//! lease can lapse. Everything else here is periodic and a failed call is simply repeated
//! next period: the inbox refresh, re-registration, the return under a new generation and
//! the removal of dead workers.
//! Client-only nodes run the keep-alive too: their inbox must outlive its first expiry.

use std::{collections::HashSet, sync::atomic::Ordering, sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::{sync::watch, time::Instant};
use tracing::{debug, info, warn};

use super::{
    events::PoolEvent,
    handler::StopReason,
    inbox::inbox_ttl,
    node::NodeInner,
    records::WorkerRecord,
    retry::Backoff,
    run,
    worker::{LocalWorker, Release},
};
use crate::backend::Ttl;

/// Renews every local worker's liveness every `worker_ttl / 3` (each call bounded, the
/// workers concurrently), and keeps the node's inbox and the workers' records in place.
pub(crate) async fn keepalive_loop(inner: Arc<NodeInner>, mut stop: watch::Receiver<bool>) {
    let period = inner.options.worker_ttl / 3;
    let bound = period / 2;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let mut renewals = tokio::task::JoinSet::new();
        for w in inner.locals() {
            if !w.is_stopped() {
                renewals.spawn(keep_worker(inner.clone(), w, bound));
            }
        }
        // Not interrupted by the stop signal: a renewal stops retrying once the node closes,
        // and a fence in progress must finish (its jobs' slots would stay taken).
        while renewals.join_next().await.is_some() {}
        // Keep (or re-create) this node's inbox, and re-register workers whose record was
        // removed while they were cut off.
        let refresh = inner
            .backend
            .expire(inner.inbox.key(), Ttl::Sliding(inbox_ttl(&inner.options)));
        let _ = tokio::time::timeout(bound, refresh).await;
        if let Ok(Ok(false)) =
            tokio::time::timeout(bound, inner.backend.exists(inner.inbox.key())).await
        {
            let _ = tokio::time::timeout(bound, inner.inbox.add("init", Bytes::new())).await;
        }
        for w in inner.locals() {
            if w.is_stopped() || w.is_fenced() || inner.workers.contains_key(&w.id) {
                continue;
            }
            if let Ok(v) = w.record(&inner.id).encode() {
                let _ = tokio::time::timeout(bound, inner.workers.set_if_absent(&w.id, v)).await;
            }
        }
    }
}

/// One worker's keep-alive: fence it first if its liveness may have lapsed, come back
/// under a new generation once fenced, and renew.
async fn keep_worker(inner: Arc<NodeInner>, w: Arc<LocalWorker>, bound: Duration) {
    let ttl = inner.options.worker_ttl;
    // After a pause this may run before the watchdog: never renew a possibly lapsed
    // identity — fence first, then come back under a new generation.
    if w.renewal_overdue(ttl * 2 / 3) && !w.live.fenced.swap(true, Ordering::SeqCst) {
        fence(&inner, &w).await;
    }
    if w.is_fenced() {
        // The old identity may have lapsed and its jobs been taken: come back under a new
        // generation, so records of the old one are dead for everyone. (A failed release
        // of the old lease only makes others wait for it to expire.)
        let old = w.tag();
        w.live.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(key) = inner.alive_key(&old) {
            let _ = tokio::time::timeout(bound, inner.backend.lease_release(&key, &old)).await;
        }
    }
    if !renew(&inner, &w, bound).await || !w.is_fenced() {
        return;
    }
    let record = w.record(&inner.id);
    if let Ok(v) = record.encode() {
        // Until this write succeeds the worker stays fenced; the next period tries again.
        if tokio::time::timeout(bound, inner.workers.set(&w.id, v))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            w.live.fenced.store(false, Ordering::SeqCst);
            info!(worker = %w.id, generation = record.generation, "liveness restored under a new generation");
            inner.mark(None);
        }
    }
}

/// Renews `w`'s liveness lease; true when it succeeded. A failed attempt is retried with
/// back-off for as long as a success would still be sent well before the worker is due
/// to fence (`2/3 worker_ttl` after its last successful renewal was sent): a single lost
/// reply must not stop every job of the worker. Each attempt is bounded by `bound`, so a
/// success always reached the store before the lease could have lapsed.
async fn renew(inner: &NodeInner, w: &LocalWorker, bound: Duration) -> bool {
    let ttl = inner.options.worker_ttl;
    let tag = w.tag();
    let Ok(key) = inner.alive_key(&tag) else {
        return false;
    };
    let mut backoff = Backoff::new(bound);
    loop {
        let sent = Instant::now();
        let why =
            match tokio::time::timeout(bound, inner.backend.lease_acquire(&key, &tag, ttl)).await {
                Ok(Ok(true)) => {
                    *w.live
                        .last_renewal
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = sent;
                    return true;
                }
                Ok(Ok(false)) => {
                    warn!(worker = %w.id, "liveness lease held by someone else");
                    return false;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
        let fence_at = w.renewal_sent() + ttl * 2 / 3;
        let closing = inner.closed.load(Ordering::SeqCst);
        if closing || w.is_fenced() || Instant::now() + backoff.next_pause() + bound >= fence_at {
            warn!(worker = %w.id, reason = %why, "liveness renewal failed");
            return false;
        }
        debug!(worker = %w.id, reason = %why, "liveness renewal failed; retrying");
        backoff.wait().await;
    }
}

/// Fences workers that could not renew in time: once the last successful renewal was sent
/// `2/3 worker_ttl` ago — before the lease can expire on the backend, whatever the reply
/// delays — the worker stops all its jobs and starts nothing until a renewal succeeds.
/// Runs on its own short timer so no slow backend call can delay it.
pub(crate) async fn fence_loop(inner: Arc<NodeInner>, mut stop: watch::Receiver<bool>) {
    let fence_after = inner.options.worker_ttl * 2 / 3;
    let tick = (inner.options.worker_ttl / 20).max(Duration::from_millis(1));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        for w in inner.locals() {
            if !w.is_stopped()
                && w.renewal_overdue(fence_after)
                && !w.live.fenced.swap(true, Ordering::SeqCst)
            {
                fence(&inner, &w).await;
            }
        }
    }
}

/// Stops every job of `w` without touching owner records: they may belong to others now.
async fn fence(inner: &Arc<NodeInner>, w: &Arc<LocalWorker>) {
    inner.metrics.fences.increment(1);
    inner.events.emit(PoolEvent::WorkerFenced {
        worker: w.id.clone(),
    });
    let keys = w.stopping_all_running();
    if !keys.is_empty() {
        warn!(worker = %w.id, jobs = keys.len(), "liveness may have lapsed: stopping this worker's jobs");
    }
    for k in keys {
        run::stop(
            inner.clone(),
            w.clone(),
            k,
            Release::Nothing,
            StopReason::Fenced,
        )
        .await;
    }
}

/// Re-reads which listed workers have lost their liveness; removes the records of workers
/// found dead twice in a row.
pub(crate) async fn refresh_alive(inner: &Arc<NodeInner>, dead_seen: &mut HashSet<String>) {
    let locals: HashSet<String> = inner
        .locals()
        .iter()
        .filter(|w| !w.is_stopped())
        .map(|w| w.id.clone())
        .collect();
    let mut dead = HashSet::new();
    for id in inner.workers.keys() {
        if locals.contains(&id) {
            continue;
        }
        let generation = inner
            .workers
            .get(&id)
            .and_then(|v| WorkerRecord::decode(&v).ok())
            .map_or(1, |r| r.generation);
        let Ok(key) = inner.alive_key(&format!("{id}#{generation}")) else {
            continue;
        };
        match inner.backend.exists(&key).await {
            Ok(true) => {}
            Ok(false) => {
                dead.insert(id);
            }
            Err(e) => {
                debug!(error = %e, "liveness check failed; keeping the previous view");
                return;
            }
        }
    }
    for id in dead.intersection(dead_seen) {
        if let Some(v) = inner.workers.get(id) {
            // A failed removal is tried again at the next refresh (the worker stays dead).
            match inner.workers.test_and_delete(id, v).await {
                Ok(out) if out.deleted => {
                    info!(pool = %inner.pool, worker = %id, "removed a dead worker")
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(pool = %inner.pool, worker = %id, error = %e, "could not remove a dead worker; retrying at the next refresh")
                }
            }
        }
    }
    *dead_seen = dead.clone();
    *inner.dead.lock().unwrap_or_else(|p| p.into_inner()) = dead;
    inner.mark(None);
}
