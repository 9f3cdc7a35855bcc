//! What a worker runs: the user's [`JobHandler`].

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::{JobCall, JobLease, StopReason};
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
        Err(super::call::unsupported())
    }
}
