//! A scheduler: a producer plans, every interval, which jobs should start and stop, and
//! one node (the one winning the tick) applies the plan.
//!
//! Fixes over the Go version (W19): only the tick winner plans (no initial plan on every
//! node); the schedule's bookkeeping map is namespaced (`schedule:<name>`) so a producer
//! name can never clobber pool state; a finished plan stops the ticker explicitly (no
//! reliance on a notification); dispatch and stop failures are kept in
//! [`Schedule::last_error`] as well as logged; and the schedule's task ends when stopped.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinHandle;
use tracing::{warn, Instrument};

use super::{ticker::Ticker, Node};
use crate::{
    error::BoxError,
    keys::validate_name,
    rmap::{Map, MapOptions},
    Error, Result,
};

/// What a producer wants done this round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    /// Jobs to start (already running ones are left alone).
    pub start: Vec<(String, Bytes)>,
    /// Jobs to stop.
    pub stop: Vec<String>,
    /// Stop every job this schedule started that is not in `start`.
    pub stop_all: bool,
    /// The schedule is over: stop its jobs and its ticker on every node.
    pub done: bool,
}

impl Plan {
    /// An empty plan.
    pub fn new() -> Self {
        Plan::default()
    }
    /// Adds a job to start.
    pub fn start(mut self, key: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        self.start.push((key.into(), payload.into()));
        self
    }
    /// Adds a job to stop.
    pub fn stop(mut self, key: impl Into<String>) -> Self {
        self.stop.push(key.into());
        self
    }
    /// Stops every scheduled job not in this plan's `start`.
    pub fn stop_all(mut self) -> Self {
        self.stop_all = true;
        self
    }
    /// Ends the schedule.
    pub fn done() -> Self {
        Plan {
            done: true,
            stop_all: true,
            ..Plan::default()
        }
    }
}

/// Plans jobs for a schedule. Implement it with `#[pulse::async_trait]` on the `impl`
/// block, as for [`JobHandler`](super::JobHandler).
///
/// ```
/// use pulse::{error::BoxError, pool::{Plan, Producer}};
///
/// struct Nightly;
///
/// #[pulse::async_trait]
/// impl Producer for Nightly {
///     fn name(&self) -> &str {
///         "nightly"
///     }
///     async fn plan(&self) -> Result<Plan, BoxError> {
///         Ok(Plan::default())
///     }
/// }
/// ```
#[async_trait]
pub trait Producer: Send + Sync + 'static {
    /// The schedule's name (shared by every node scheduling it).
    fn name(&self) -> &str;
    /// This round's plan. An error skips the round (logged, kept in `last_error`).
    async fn plan(&self) -> Result<Plan, BoxError>;
}

/// A running schedule on this node.
#[derive(Debug)]
pub struct Schedule {
    task: JoinHandle<()>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Schedule {
    /// The last dispatch, stop or planning error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True once the schedule ended (its plan said done, or its ticker was stopped).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops this node's participation. Idempotent; `Ok` in every case today, a `Result`
    /// so that every handle's `close` has one shape.
    pub async fn close(&self) -> Result<()> {
        self.task.abort();
        Ok(())
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Node {
    /// Runs `producer` every `interval` on one node of the pool at a time.
    ///
    /// Errors: [`Error::InvalidName`] for the producer name, [`Error::Closed`], backend
    /// errors.
    pub async fn schedule(
        &self,
        producer: impl Producer,
        interval: std::time::Duration,
    ) -> Result<Schedule> {
        let name = producer.name().to_owned();
        validate_name("schedule", &name)?;
        let ticker = self
            .new_ticker(&format!("schedule:{name}"), interval)
            .await?;
        let keys = self
            .keyspace()
            .pool_map(self.pool(), &format!("schedule:{name}"))?;
        let map = Map::join_target(
            self.backend(),
            &format!("{}:schedule:{name}", self.pool()),
            crate::backend::MapTarget::new(keys.hash, keys.channel),
            MapOptions::default().with_keyspace(self.keyspace().clone()),
        )
        .await?;
        let last_error = Arc::new(Mutex::new(None));
        let span = tracing::info_span!("pulse.pool.schedule", pool = %self.pool(), node = %self.id(), schedule = name);
        let task = tokio::spawn(
            run(
                self.clone(),
                Arc::new(producer),
                ticker,
                map,
                last_error.clone(),
            )
            .instrument(span),
        );
        Ok(Schedule { task, last_error })
    }
}

async fn run(
    node: Node,
    producer: Arc<dyn Producer>,
    mut ticker: Ticker,
    map: Map,
    last_error: Arc<Mutex<Option<String>>>,
) {
    let record = |e: String| {
        warn!(schedule = %producer.name(), error = %e, "schedule round failed");
        *last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    };
    while ticker.recv().await.is_some() {
        let plan = match producer.plan().await {
            Ok(p) => p,
            Err(e) => {
                record(format!("plan: {e}"));
                continue;
            }
        };
        for (key, payload) in &plan.start {
            match node.dispatch_job(key, payload.clone()).await {
                Ok(()) | Err(Error::JobExists { .. }) => {
                    if let Err(e) = map.set(key, "").await {
                        record(format!("record {key}: {e}"));
                    }
                }
                Err(e) => record(format!("dispatch {key}: {e}")),
            }
        }
        let mut stop: Vec<String> = plan.stop.clone();
        if plan.stop_all {
            let keep: Vec<&String> = plan.start.iter().map(|(k, _)| k).collect();
            stop.extend(map.keys().into_iter().filter(|k| !keep.contains(&k)));
        }
        for key in stop {
            if let Err(e) = node.stop_job(&key).await {
                record(format!("stop {key}: {e}"));
            }
            if let Err(e) = map.delete(&key).await {
                record(format!("unrecord {key}: {e}"));
            }
        }
        if plan.done {
            if let Err(e) = map.reset().await {
                record(format!("reset: {e}"));
            }
            if let Err(e) = ticker.stop().await {
                record(format!("stop ticker: {e}"));
            }
            return;
        }
    }
}
