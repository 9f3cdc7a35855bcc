//! What a worker runs: the user's [`JobHandler`].

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::JobLease;
use crate::error::BoxError;

/// A job as given to [`JobHandler::start`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Job {
    /// The job key, unique in the pool.
    pub key: String,
    /// The payload given at dispatch.
    pub payload: Bytes,
    /// When it was dispatched.
    pub created_at: SystemTime,
    /// False for the first start after dispatch; true when the job moves or is recovered.
    pub requeued: bool,
    /// The worker starting it.
    pub worker: String,
    /// This run's lease: check [`JobLease::is_held`] before each side effect so the job's
    /// code never acts once another worker may run it (see [`JobLease`]).
    pub lease: JobLease,
    /// The W3C `traceparent` of the span that dispatched it (feature `opentelemetry`);
    /// the `start` span links to it.
    pub trace_parent: Option<String>,
}

/// Why a job stopped on a worker (in [`JobStop`] and
/// [`PoolEvent::JobStopped`](super::PoolEvent::JobStopped)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// Its record was deleted: [`Node::stop_job`](super::Node::stop_job), or a start that
    /// failed.
    Stopped,
    /// It moves to another worker (one joined, the ranges changed, or its worker's group
    /// lost it).
    Moved,
    /// Its worker could not renew its liveness in time and stopped everything (fencing):
    /// another worker may take it.
    Fenced,
    /// Another worker owns it by now (seen after a loss of the store, or a stale run).
    OwnershipLost,
    /// Its worker was removed, or its node is closing: it moves to another worker.
    WorkerLeaving,
    /// The pool is shutting down.
    Shutdown,
}

/// A call to a running job, as given to [`JobHandler::call`](super::JobHandler::call).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCall {
    /// The job key.
    pub key: String,
    /// What the caller sent.
    pub payload: Bytes,
    /// When the caller stops waiting: an answer after it is dropped.
    pub deadline: SystemTime,
    /// The lease of the job's run on this worker (as in [`Job::lease`](super::Job)): held
    /// when the call was handed over; check it before a side effect, as the job's code does.
    pub lease: JobLease,
    /// The W3C `traceparent` of the calling span, if it was traced (feature
    /// `opentelemetry`); the handler's `call` span links to it.
    pub trace_parent: Option<String>,
}

/// An error a [`JobHandler::call`](super::JobHandler::call) returns to answer with a code:
/// the caller gets [`Error::Remote`](crate::Error::Remote) with this code and message. Any other error reaches
/// the caller as code `handler_error` with its text; a handler that does not implement
/// `call` answers `unsupported`, one that panics `panicked`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CallError {
    /// The error code (application-defined, e.g. `not_found`).
    pub code: String,
    /// The message.
    pub message: String,
}

impl CallError {
    /// An error answer with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        CallError {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// A job as given to [`JobHandler::on_stop`]: which, and why it stops.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStop {
    /// The job key.
    pub key: String,
    /// The payload it was started with.
    pub payload: Bytes,
    /// The worker stopping it.
    pub worker: String,
    /// Why it stops.
    pub reason: StopReason,
}

/// The code a worker runs for its jobs. Jobs are long-running: `start` sets a job going
/// (spawn its work and return), `stop` (or `on_stop`, with the job and the reason) ends it.
///
/// The pool calls `start` for a key on at most one worker at a time, and never calls
/// `start` again on a worker for a key it already runs. The job is stopped before it moves
/// elsewhere; **its lease is already released when `on_stop`/`stop` runs** (the job's
/// code must not act any more, whatever the handler still has to clean up).
///
/// Implement it with `#[pulse::async_trait]` on the `impl` block (the signatures rustdoc
/// shows below are what that attribute expands `async fn` into):
///
/// ```
/// use pulse::{error::BoxError, pool::{Job, JobHandler}};
///
/// struct Feed;
///
/// #[pulse::async_trait]
/// impl JobHandler for Feed {
///     async fn start(&self, job: &Job) -> Result<(), BoxError> {
///         println!("starting {}", job.key);
///         Ok(())
///     }
///     async fn stop(&self, key: &str) -> Result<(), BoxError> {
///         println!("stopping {key}");
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Starts the job. An error means it did not start: for a newly dispatched job the error
    /// is returned to the dispatcher and the job is dropped; for a moving job, it is retried
    /// later with back-off.
    async fn start(&self, job: &Job) -> Result<(), BoxError>;

    /// Stops the job `key`. Errors are logged; the job is considered stopped either way.
    /// Called by the default [`on_stop`](Self::on_stop); implement one or the other. The
    /// default does nothing (the job's code then stops on its lease, see [`JobLease`]).
    async fn stop(&self, key: &str) -> Result<(), BoxError> {
        let _ = key;
        Ok(())
    }

    /// Stops a job, knowing its payload and why it stops ([`StopReason`]). The default
    /// calls [`stop`](Self::stop) with the key. Errors are logged; the job is considered
    /// stopped either way.
    async fn on_stop(&self, stop: &JobStop) -> Result<(), BoxError> {
        self.stop(&stop.key).await
    }

    /// Receives a notification sent with [`Node::notify_worker`](super::Node::notify_worker).
    /// The default ignores it (with a log line).
    async fn notify(&self, key: &str, payload: Bytes) -> Result<(), BoxError> {
        let _ = payload;
        tracing::warn!(job = %key, "the handler does not implement notify; ignoring the notification");
        Ok(())
    }

    /// Answers a call made with [`Node::call`](super::Node::call) to job `call.key`, which
    /// this worker runs (its lease held when the call was handed over). Runs beside the
    /// job and other calls; return within [`JobCall::deadline`] (a later answer is
    /// dropped). Return a [`CallError`](super::CallError) to answer with an error code.
    /// The default answers the error code `unsupported`.
    async fn call(&self, call: &JobCall) -> Result<Bytes, BoxError> {
        let _ = call;
        Err(Box::new(CallError::new(
            "unsupported",
            "the job's handler does not answer calls",
        )))
    }
}
