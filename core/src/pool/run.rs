//! A job's run on a local worker: start (the handler's `start` once the owner record is
//! won), stop (the handler's `on_stop`, then the owner record updated) and the release of
//! an owner record, retried until the store agrees — a release that never arrives would
//! leave the job to an owner that no longer runs it.
//!
//! The worker's slot for the key (module `worker`) is held from the decision to start
//! until the release reached the store, so no pass re-takes a record it is still
//! releasing.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tracing::{debug, info, warn, Instrument};

use super::{
    events::PoolEvent,
    handler::StopReason,
    handler::{Job, JobStop},
    node::NodeInner,
    records::{owner_moves, owner_tag, released_value, InboxMessage, JobRecord},
    retry::{retryable, Backoff},
    worker::{LocalWorker, Release, Slot},
};
use crate::spans;

/// Longest back-off between failed starts of a moving job.
const MAX_START_BACKOFF: Duration = Duration::from_secs(60);

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
