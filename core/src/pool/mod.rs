//! The keyed worker pool: long-running jobs, each routed by its key to exactly one worker,
//! moved when workers join or leave, restarted elsewhere when a worker dies.
//!
//! A process joins a pool as a [`Node`]; a node hosts [`Worker`]s running a user
//! [`JobHandler`] (or none: a client-only node only dispatches). [`Node::dispatch_job`]
//! admits a job atomically and returns once its worker's `start` ran.
//!
//! Guarantees (each shown by a test on both backends):
//! - **Singleton admission**: a second dispatch of a live key fails with
//!   [`Error::JobExists`](crate::Error::JobExists).
//! - **No job lost**: a job runs until [`Node::stop_job`] — across worker removal, node
//!   close, and worker or node death (after `worker_ttl`).
//! - **Never two concurrent runs**: a worker starts a job only after winning its owner
//!   record by compare-and-set, and releases the record only after its `stop` returned; a
//!   dead worker's record is taken only once its liveness lease expired on the backend's
//!   clock, and a worker that could not renew in time stops its jobs first (fencing). Job
//!   code can fence itself too: [`Job::lease`](JobLease) turns false before anyone else
//!   can take the job.
//! - **Minimal moves**: rendezvous hashing moves ~1/(n+1) of the jobs when a worker joins
//!   and only the leaver's jobs when one leaves.
//! - **A lost store loses no job**: when the pool's state vanishes (a restart without
//!   persistence, a flush, a failover to an empty replica), each node re-admits the jobs
//!   its workers run from what it holds locally, before anything is stopped for a missing
//!   record (module `recovery`).
//! - **Bounded waits**: dispatch, close and shutdown all have timeouts.
//! - **Failed calls are retried, not trusted**: a backend call can fail before it was
//!   applied or after (its reply lost). Every decision the pool takes — a release, a
//!   clean-up, a take, a dispatch result — is repeated until the backend agrees, and each is
//!   a compare-and-set or idempotent write, so a repeat of an applied call changes nothing.
//!   A caller retrying a dispatch can tell its own earlier admission from someone else's
//!   job ([`DispatchOptions::with_id`], [`Error::is_admitted_by`](crate::Error::is_admitted_by)).
//!
//! Also: job calls ([`Node::call`], answered by [`JobHandler::call`] on the one worker
//! running the job, never two), a pool-wide [`Ticker`] (each tick to exactly one node) and
//! a scheduler ([`Node::schedule`], a [`Producer`] planning jobs every interval on one
//! node at a time).
//!
//! See `docs/ARCHITECTURE.md` for the state layout and the reconciliation rules.

mod call;
mod events;
mod groups;
mod handler;
mod hashing;
mod inbox;
mod inspect;
mod jobs;
mod lease;
mod leave;
mod liveness;
mod node;
mod options;
mod reconcile;
mod records;
mod recovery;
mod retry;
mod run;
mod scheduler;
mod ticker;
mod worker;

pub use call::MAX_CALL_TIMEOUT;
pub use events::{PoolEvent, PoolEvents, EVENT_QUEUE};
pub use groups::{DEFAULT_GROUP, MAX_PREFIXES};
pub use handler::{CallError, Job, JobCall, JobHandler, JobStop, StopReason};
pub use hashing::route;
pub use inspect::{JobInfo, JobStatus, PoolState, WaitReason, WorkerInfo};
pub use lease::JobLease;
pub use node::Node;
pub use options::{DispatchOptions, NodeOptions};
pub use scheduler::{Plan, Producer, Schedule};
pub use ticker::{Tick, Ticker};
pub use worker::{PoolWorker, Worker};
