//! The job API of a node: dispatch (admission and the wait for the first start), stop,
//! and notifications to the worker running a job. Admission is one set-if-absent of the
//! job's record; everything after it is the reconcile passes' and the workers' work
//! (modules `reconcile`, `run`), and the dispatcher hears back through its inbox.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::{sync::oneshot, time::Instant};
use tracing::warn;

use super::{
    node::{owner_node, Node},
    records::{now_ms, Dispatch, InboxMessage, JobRecord},
    retry::until_agreed,
    DispatchOptions,
};
use crate::{
    keys::validate_map_key,
    spans::{self, traced},
    Error, Result,
};

impl Node {
    /// Dispatches a job: admits it (one atomic set-if-absent of its record), then waits
    /// until a worker's `start` ran, bounded by the dispatch timeout. The same as
    /// [`dispatch_job_with`](Self::dispatch_job_with) with default options (a unique
    /// dispatch ID).
    ///
    /// Errors: [`Error::JobExists`] when the key is running or being dispatched;
    /// [`Error::JobFailed`] with the handler's error (the job then does not exist);
    /// [`Error::Timeout`] (the job exists and starts when a worker can take it);
    /// [`Error::InvalidKey`] for an empty key, one over 65,536 bytes or one with `=` (job
    /// keys follow the map-key rule, not the name rule: spaces are fine, see
    /// [`keys`](crate::keys)), [`Error::PayloadTooLarge`], [`Error::Closed`], backend errors.
    pub async fn dispatch_job(&self, key: &str, payload: impl Into<Bytes>) -> Result<()> {
        self.dispatch_job_with(key, payload, DispatchOptions::default())
            .await
    }

    /// Dispatches a job with `options`, as [`dispatch_job`](Self::dispatch_job) does.
    ///
    /// # Retrying safely
    ///
    /// A dispatch that fails with [`Error::Connection`] may have been admitted (the write
    /// applied, its reply lost), and one that fails with [`Error::Timeout`] was. Give the
    /// dispatch an ID of your own and retry with the same ID: when the job already exists,
    /// [`Error::JobExists`] carries the ID of the dispatch that admitted it, so
    /// [`Error::is_admitted_by`] tells "my earlier attempt was applied" from "someone
    /// else's job".
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use pulse::pool::{DispatchOptions, Node, NodeOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> pulse::Result<()> {
    /// # // No worker here: the first attempt times out, the retry finds its own admission.
    /// # let quick = NodeOptions::default().with_client_only(true).with_dispatch_timeout(std::time::Duration::from_millis(50));
    /// # let node = Node::join(Arc::new(pulse_memory::MemoryBackend::new()), "orders", quick).await?;
    /// let options = DispatchOptions::default().with_id("order-17/attempt-1");
    /// loop {
    ///     match node.dispatch_job_with("order-17", "payload", options.clone()).await {
    ///         Ok(()) => break,
    ///         Err(e) if e.is_admitted_by("order-17/attempt-1") => break, // applied earlier
    ///         Err(e) if e.is_connection() || matches!(e, pulse::Error::Timeout { .. }) => {
    ///             // ambiguous, or admitted and not started yet: the retry tells which
    ///         }
    ///         Err(e) => return Err(e), // someone else's job, a handler error, bad input
    ///     }
    /// }
    /// # node.close().await }
    /// ```
    ///
    /// Errors: as [`dispatch_job`](Self::dispatch_job), and [`Error::InvalidArgument`] for
    /// an empty or over-long dispatch ID.
    pub async fn dispatch_job_with(
        &self,
        key: &str,
        payload: impl Into<Bytes>,
        options: DispatchOptions,
    ) -> Result<()> {
        let started = tokio::time::Instant::now();
        let span = spans::pool_op(&self.inner.pool, &self.inner.id, "dispatch", key);
        let out = traced(span, self.dispatch_inner(key, payload.into(), options)).await;
        self.inner
            .metrics
            .dispatched(started.elapsed(), out.is_ok());
        out
    }

    async fn dispatch_inner(
        &self,
        key: &str,
        payload: Bytes,
        options: DispatchOptions,
    ) -> Result<()> {
        self.check_open()?;
        validate_map_key(key)?;
        let inner = &self.inner;
        self.check_payload(&payload)?;
        let id = options.validated_id()?.unwrap_or_else(crate::ids::new_id);
        let waiter = inner.next_dispatch.fetch_add(1, Ordering::Relaxed);
        let record = JobRecord {
            payload,
            created_ms: now_ms(),
            dispatch: Some(Dispatch {
                node: inner.id.clone(),
                waiter,
                id,
            }),
            trace_parent: spans::current_trace_parent(),
        };
        let encoded = Bytes::from(record.encode()?);
        let (tx, rx) = oneshot::channel();
        inner
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(waiter, tx);
        let forget = || {
            inner
                .waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&waiter)
        };
        match inner.jobs.set_if_absent(key, encoded.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                forget();
                return Err(Error::JobExists {
                    key: key.to_owned(),
                    dispatch_id: self.stored_dispatch_id(key).await?,
                });
            }
            Err(e) => {
                forget();
                return Err(e);
            }
        }
        let outcome = tokio::time::timeout(inner.options.dispatch_timeout, rx).await;
        forget();
        match outcome {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(message))) => {
                // A new job that failed to start does not exist (unless it changed since):
                // delete it, retrying within the stop timeout, before saying so.
                let deadline = Instant::now() + inner.options.stop_timeout;
                let cap = inner.options.worker_ttl / 3;
                if let Err(e) = until_agreed(Some(deadline), cap, || {
                    inner.jobs.test_and_delete(key, encoded.clone())
                })
                .await
                {
                    warn!(pool = %inner.pool, job = %key, start_error = %message, error = %e, "a new job failed to start and could not be deleted; it is retried like a moving job");
                    return Err(e);
                }
                Err(Error::JobFailed {
                    key: key.to_owned(),
                    message,
                })
            }
            Ok(Err(_)) => Err(Error::Closed {
                what: format!("pool {:?} node", inner.pool),
            }),
            Err(_) => Err(Error::Timeout {
                what: format!("start of job {key:?}"),
            }),
        }
    }

    /// The dispatch ID of the stored record of `key`, read from the backend itself (the
    /// replica may not have the record that just refused an admission yet); `None` when the
    /// record has none or is gone by now. The read is retried within the stop timeout, and
    /// its error returned after that: a `JobExists` that cannot say whose job it is would
    /// make a retrying caller give up on its own admission.
    async fn stored_dispatch_id(&self, key: &str) -> Result<Option<String>> {
        let inner = &self.inner;
        let hash = inner.options.keyspace.pool_map(&inner.pool, "jobs")?.hash;
        let deadline = Instant::now() + inner.options.stop_timeout;
        let cap = inner.options.worker_ttl / 3;
        let stored =
            until_agreed(Some(deadline), cap, || inner.backend.hash_get(&hash, key)).await?;
        Ok(stored
            .and_then(|v| JobRecord::decode(&v).ok())
            .and_then(|r| r.dispatch_id().map(str::to_owned)))
    }

    /// Stops a job: deletes its record; its worker stops it. Returns whether it existed.
    pub async fn stop_job(&self, key: &str) -> Result<bool> {
        let span = spans::pool_op(&self.inner.pool, &self.inner.id, "stop", key);
        traced(span, async {
            self.check_open()?;
            validate_map_key(key)?;
            Ok(self.inner.jobs.delete(key).await?.is_some())
        })
        .await
    }

    /// Sends `payload` to the handler of the worker running `key`. Returns false when the
    /// job has no running owner right now (nothing sent). Delivery is at most once: a
    /// notification racing with a move may be dropped (logged).
    #[tracing::instrument(level = "debug", name = "pulse.pool.op", skip_all, fields(op = "notify", pool = %self.inner.pool, node = %self.inner.id, job = key))]
    pub async fn notify_worker(&self, key: &str, payload: impl Into<Bytes>) -> Result<bool> {
        self.check_open()?;
        validate_map_key(key)?;
        let payload: Bytes = payload.into();
        self.check_payload(&payload)?;
        let Some(node) = owner_node(&self.inner, key) else {
            return Ok(false);
        };
        let msg = InboxMessage::Notify {
            key: key.to_owned(),
            payload,
            hops: 0,
        };
        self.inner.send_inbox(&node, &msg).await;
        Ok(true)
    }
}
