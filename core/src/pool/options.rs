//! Options of a pool node.

use std::time::Duration;

use crate::keys::Keyspace;

/// How a node joins a pool. Every node of a pool must use the same `worker_ttl`.
/// Defaults are documented on each field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeOptions {
    /// Where the pool's keys live. Default: prefix `pulse`.
    pub keyspace: Keyspace,
    /// Dispatch, stop and notify only: host no workers. Default false.
    pub client_only: bool,
    /// How long a worker stays owner of its jobs without renewing its liveness. A worker
    /// renews every `worker_ttl / 3`; a worker silent for `worker_ttl` is dead and its jobs
    /// move. Default 30 s.
    pub worker_ttl: Duration,
    /// Longest `dispatch_job` waits for the worker's `start`. Default 60 s.
    pub dispatch_timeout: Duration,
    /// Longest a handler's `stop` may take when a job moves or the node closes. Default 30 s.
    pub stop_timeout: Duration,
    /// First back-off after a failed start of a moving job (doubling up to 60 s).
    /// Default 1 s.
    pub retry_delay: Duration,
    /// How long a pool stays "shutting down" (refusing new nodes) if the shutdown is never
    /// completed. Default 60 s.
    pub shutdown_ttl: Duration,
    /// Longest `shutdown` waits for every job to stop. Default 60 s.
    pub shutdown_timeout: Duration,
    /// Largest job or notification payload accepted, in bytes. Default 16 MiB.
    pub max_payload: usize,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            keyspace: Keyspace::default(),
            client_only: false,
            worker_ttl: Duration::from_secs(30),
            dispatch_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
            shutdown_ttl: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(60),
            max_payload: 16 * 1024 * 1024,
        }
    }
}

impl NodeOptions {
    /// Sets [`NodeOptions::keyspace`].
    pub fn with_keyspace(mut self, keyspace: Keyspace) -> Self {
        self.keyspace = keyspace;
        self
    }
    /// Sets [`NodeOptions::client_only`].
    pub fn with_client_only(mut self, client_only: bool) -> Self {
        self.client_only = client_only;
        self
    }
    /// Sets [`NodeOptions::worker_ttl`] (at least 30 ms).
    pub fn with_worker_ttl(mut self, d: Duration) -> Self {
        self.worker_ttl = d.max(Duration::from_millis(30));
        self
    }
    /// Sets [`NodeOptions::dispatch_timeout`].
    pub fn with_dispatch_timeout(mut self, d: Duration) -> Self {
        self.dispatch_timeout = d;
        self
    }
    /// Sets [`NodeOptions::stop_timeout`].
    pub fn with_stop_timeout(mut self, d: Duration) -> Self {
        self.stop_timeout = d;
        self
    }
    /// Sets [`NodeOptions::retry_delay`].
    pub fn with_retry_delay(mut self, d: Duration) -> Self {
        self.retry_delay = d.max(Duration::from_millis(1));
        self
    }
    /// Sets [`NodeOptions::shutdown_ttl`].
    pub fn with_shutdown_ttl(mut self, d: Duration) -> Self {
        self.shutdown_ttl = d;
        self
    }
    /// Sets [`NodeOptions::max_payload`].
    pub fn with_max_payload(mut self, n: usize) -> Self {
        self.max_payload = n;
        self
    }
    /// Sets [`NodeOptions::shutdown_timeout`].
    pub fn with_shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }
}

/// Options of one dispatch ([`Node::dispatch_job_with`](super::Node::dispatch_job_with)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DispatchOptions {
    /// The dispatch ID stored with the job record and reported by
    /// [`Error::JobExists`](crate::Error::JobExists) to later dispatches of the same key, so
    /// a caller retrying after an ambiguous error can recognise its own admission. 1–1024
    /// bytes. Default: a unique ID for each call.
    pub id: Option<String>,
}

/// Longest dispatch ID accepted, in bytes.
const MAX_DISPATCH_ID: usize = 1024;

impl DispatchOptions {
    /// Sets [`DispatchOptions::id`].
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The caller's ID, checked.
    pub(crate) fn validated_id(self) -> crate::Result<Option<String>> {
        match self.id {
            Some(id) if id.is_empty() || id.len() > MAX_DISPATCH_ID => {
                Err(crate::Error::InvalidArgument(format!(
                    "a dispatch ID must be 1 to {MAX_DISPATCH_ID} bytes, not {}",
                    id.len()
                )))
            }
            id => Ok(id),
        }
    }
}
