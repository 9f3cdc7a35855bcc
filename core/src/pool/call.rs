//! Job calls: request/reply to whichever worker runs a job ([`Node::call`]), the keyed
//! form of [`Node::notify_worker`] with an answer.
//!
//! How: the caller sends a `Call` message to the inbox of the node its replica names as
//! the job's owner and waits for the `CallAnswer` on its own inbox. The receiving node
//! hands the call to the local worker's [`JobHandler::call`] only while that worker runs
//! the job and holds its lease; otherwise it answers *not here* without running anything,
//! and the caller looks the owner up again and resends (a job between owners — moving, or
//! waiting for a worker — is waited for, within the deadline).
//!
//! Invariants: a call message is handled by one node at most once (inbox messages are
//! read once and deleted), and the caller sends the next copy only after a *not here*
//! answer (nothing ran) or a send that certainly added nothing (the inbox was gone); so a
//! call never reaches two owners, and reaches at most one handler once. A send that
//! failed ambiguously (its reply lost) is not repeated: the caller gets the error. Past
//! the deadline a receiving node drops the call; a handler still running then is left to
//! finish and its answer is dropped by the caller.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::{sync::oneshot, time::Instant};
use tracing::{debug, Instrument};

use super::{
    handler::{CallError, JobCall},
    node::{owner_node, Node, NodeInner},
    records::InboxMessage,
    worker::LocalWorker,
};
use crate::{error::BoxError, keys::validate_map_key, spans, Error, Result};

/// Longest call timeout.
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What a node answers to a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CallAnswer {
    /// The handler's answer.
    Ok(Bytes),
    /// The handler's error, or why it could not answer.
    Failed { code: String, message: String },
    /// No local worker runs the job: nothing ran.
    NotHere,
}

/// The calls a node waits for, by waiter number.
#[derive(Default)]
pub(crate) struct Calls {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<CallAnswer>>>,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<CallAnswer>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An answer arrived for `waiter`; dropped when nobody waits any more.
    pub(crate) fn resolve(&self, waiter: u64, answer: CallAnswer) {
        match self.lock().remove(&waiter) {
            Some(tx) => {
                let _ = tx.send(answer);
            }
            None => debug!(waiter, "a call answer nobody waits for (late): dropped"),
        }
    }
}

/// Removes its waiter however the call ends.
struct Waiter<'a> {
    calls: &'a Calls,
    id: u64,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.id);
    }
}

impl Node {
    /// Sends `payload` to the handler of the worker running job `key`
    /// ([`JobHandler::call`](super::JobHandler::call)) and returns its answer. A job between
    /// owners (moving, or waiting for a worker) is waited for within `timeout`; a call
    /// never reaches two owners and runs at most once (see the module docs in the source).
    ///
    /// Errors: [`Error::NotRunning`] (no such job, or still without a running worker at
    /// the deadline), [`Error::Remote`] (the handler answered an error: its
    /// [`CallError`] code, `handler_error`, `unsupported`, `panicked`, or
    /// `payload_too_large` for an answer over `max_payload`), [`Error::Timeout`] (no
    /// answer within `timeout`; the handler may still run), `InvalidArgument` (timeout
    /// outside 1 ms to 24 h), `InvalidKey`, `PayloadTooLarge`, `Closed`, `Connection`
    /// (the call may or may not have been delivered; it is not sent again).
    pub async fn call(
        &self,
        key: &str,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes> {
        let span = spans::pool_op(&self.inner.pool, &self.inner.id, "call", key);
        spans::traced(span, self.call_inner(key, payload.into(), timeout)).await
    }

    async fn call_inner(&self, key: &str, payload: Bytes, timeout: Duration) -> Result<Bytes> {
        self.check_open()?;
        validate_map_key(key)?;
        self.check_payload(&payload)?;
        if timeout < Duration::from_millis(1) || timeout > MAX_CALL_TIMEOUT {
            return Err(Error::InvalidArgument(
                "a call timeout is 1 ms to 24 h".into(),
            ));
        }
        let inner = &self.inner;
        let deadline = Instant::now() + timeout;
        let deadline_ms = crate::ids::epoch_ms(SystemTime::now() + timeout);
        let trace_parent = spans::current_trace_parent();
        let not_running = || Error::NotRunning {
            key: key.to_owned(),
        };
        let mut pause = Duration::from_millis(10);
        loop {
            let Some(node) = owner_node(inner, key) else {
                if inner.jobs.get(key).is_none() {
                    return Err(not_running());
                }
                // Dispatched, between owners: wait for one, within the deadline.
                if Instant::now() + pause >= deadline {
                    return Err(not_running());
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
                continue;
            };
            let id = inner.calls.next.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            inner.calls.lock().insert(id, tx);
            let _waiter = Waiter {
                calls: &inner.calls,
                id,
            };
            let msg = InboxMessage::Call {
                key: key.to_owned(),
                payload: payload.clone(),
                from: inner.id.clone(),
                waiter: id,
                deadline_ms,
                trace_parent: trace_parent.clone(),
            };
            let answer = if inner.try_send(&node, &msg).await? {
                match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_)) => {
                        return Err(Error::Closed {
                            what: format!("pool {:?} node", inner.pool),
                        })
                    }
                    Err(_) => {
                        return Err(Error::Timeout {
                            what: format!("an answer from job {key:?} within {timeout:?}"),
                        })
                    }
                }
            } else {
                CallAnswer::NotHere // its inbox is gone: the node left or died
            };
            match answer {
                CallAnswer::Ok(bytes) => return Ok(bytes),
                CallAnswer::Failed { code, message } => {
                    return Err(Error::Remote { code, message })
                }
                CallAnswer::NotHere => {
                    if Instant::now() + pause >= deadline {
                        return Err(not_running());
                    }
                    debug!(job = %key, %node, "the job is not running there (moved); looking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
            }
        }
    }
}

/// A `Call` message reached this node: run it on the local worker that holds the job, or
/// answer *not here*. The handler runs in a task of its own, so a slow one holds up
/// neither this node's inbox nor other calls.
pub(crate) fn handle_call(inner: &Arc<NodeInner>, call: Incoming) {
    if call.deadline <= SystemTime::now() {
        debug!(job = %call.key, "a call past its deadline: dropped");
        return;
    }
    let held = inner
        .locals()
        .into_iter()
        .find_map(|w| w.lease_of(&call.key).map(|lease| (w, lease)));
    let inner = inner.clone();
    tokio::spawn(async move {
        let (from, waiter) = (call.from, call.waiter);
        let answer = match held {
            Some((w, lease)) => {
                let job_call = JobCall {
                    key: call.key,
                    payload: call.payload,
                    deadline: call.deadline,
                    lease,
                    trace_parent: call.trace_parent,
                };
                run(&inner, &w, job_call).await
            }
            None => Some(CallAnswer::NotHere),
        };
        if let Some(answer) = answer {
            inner
                .send_result(&from, &InboxMessage::CallAnswer { waiter, answer })
                .await;
        }
    });
}

/// A call as it arrives in a node's inbox.
pub(crate) struct Incoming {
    pub(crate) key: String,
    pub(crate) payload: Bytes,
    pub(crate) deadline: SystemTime,
    pub(crate) trace_parent: Option<String>,
    /// The calling node and its waiter.
    pub(crate) from: String,
    pub(crate) waiter: u64,
}

/// Runs `call` on `w`'s handler until its deadline; `None` when the deadline passed (the
/// caller stopped waiting).
async fn run(inner: &NodeInner, w: &Arc<LocalWorker>, call: JobCall) -> Option<CallAnswer> {
    let span = spans::job(&inner.pool, &w.id, "call", &call.key);
    spans::link_producer(&span, call.trace_parent.as_deref());
    let left = call
        .deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let handler = w.handler.clone();
    // A task of its own, so a panicking handler is an answer, not a lost call. Past the
    // deadline it is left to finish (the handler sees the deadline in the call).
    let task = tokio::spawn(async move { handler.call(&call).await }.instrument(span));
    let Ok(outcome) = tokio::time::timeout(left, task).await else {
        return None;
    };
    Some(match outcome {
        Ok(Ok(bytes)) if bytes.len() > inner.options.max_payload => CallAnswer::Failed {
            code: "payload_too_large".into(),
            message: format!(
                "the answer is {} bytes, the pool's max_payload {}",
                bytes.len(),
                inner.options.max_payload
            ),
        },
        Ok(Ok(bytes)) => CallAnswer::Ok(bytes),
        Ok(Err(e)) => failed(e),
        Err(_) => CallAnswer::Failed {
            code: "panicked".into(),
            message: "the call handler panicked".into(),
        },
    })
}

fn failed(e: BoxError) -> CallAnswer {
    match e.downcast::<CallError>() {
        Ok(e) => CallAnswer::Failed {
            code: e.code,
            message: e.message,
        },
        Err(e) => CallAnswer::Failed {
            code: "handler_error".into(),
            message: e.to_string(),
        },
    }
}
