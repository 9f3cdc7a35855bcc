//! Inspection: what a node sees of its pool — every job with its group, owner, node, since
//! when it runs and how often it moved; every worker with its node, group, job count and
//! liveness; the jobs waiting and for how long (the queueing-delay signal an autoscaler
//! watches). The read API the `pulse` command and the dashboard build on.
//!
//! Read from the node's replicas, so it works on any node, client-only ones included, and
//! costs the store one `EXISTS` per worker (liveness is asked of the store, not judged
//! from the replicas). A snapshot: jobs move while it is read, so two maps read a moment
//! apart may disagree for a key that is moving (it then shows as waiting).

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{
    node::Node,
    records::{
        is_released, owner_moves, owner_since_ms, owner_tag, worker_of, JobRecord, WorkerRecord,
    },
};
use crate::Result;

/// A job as a node sees it ([`Node::inspect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job key.
    pub key: String,
    /// The worker group it belongs to (by the ranges).
    pub group: String,
    /// Size of its payload, in bytes.
    pub payload_len: usize,
    /// When it was dispatched.
    pub dispatched_at: SystemTime,
    /// Whether it runs, and where.
    pub status: JobStatus,
    /// How often it moved from one worker to another (0 for a job that has not moved, or
    /// whose owner record predates move counts).
    pub moves: u32,
}

/// Whether a job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobStatus {
    /// Running on `worker`, hosted by `node`.
    Running {
        /// The worker running it.
        worker: String,
        /// The node hosting that worker, when its record is known.
        node: Option<String>,
        /// When this run started (`None` for an owner record of an earlier release).
        since: Option<SystemTime>,
    },
    /// Waiting for a worker to start it.
    Waiting {
        /// Why it waits.
        reason: WaitReason,
        /// Since when, when known (dispatch time, or when its last run was released).
        since: Option<SystemTime>,
    },
}

/// Why a job waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitReason {
    /// Dispatched, not started yet.
    NotStarted,
    /// Released by its last worker, not taken by the next yet (moving).
    Moving,
    /// Its owner is not alive any more: taken once its liveness has lapsed.
    OwnerGone,
    /// Its group has no live worker: it waits until one joins (or the range changes).
    NoWorkerInGroup,
}

/// A worker as a node sees it ([`Node::inspect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's ID.
    pub id: String,
    /// The node hosting it.
    pub node: String,
    /// Its worker group.
    pub group: String,
    /// When its record was last written (added, or back after a fence).
    pub registered_at: SystemTime,
    /// How many jobs it runs.
    pub jobs: usize,
    /// Whether its liveness lease is held (asked of the store).
    pub alive: bool,
}

/// What a node sees of its pool ([`Node::inspect`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Every job, by key.
    pub jobs: Vec<JobInfo>,
    /// Every worker, by ID.
    pub workers: Vec<WorkerInfo>,
    /// Every group's range: group → key prefixes.
    pub ranges: BTreeMap<String, Vec<String>>,
}

impl PoolState {
    /// The jobs waiting for a worker.
    pub fn waiting(&self) -> impl Iterator<Item = &JobInfo> {
        self.jobs
            .iter()
            .filter(|j| matches!(j.status, JobStatus::Waiting { .. }))
    }

    /// The longest a job has been waiting (the pool's queueing delay), if any waits.
    pub fn longest_wait(&self) -> Option<Duration> {
        let now = SystemTime::now();
        self.waiting()
            .filter_map(|j| match j.status {
                JobStatus::Waiting { since, .. } => since,
                JobStatus::Running { .. } => None,
            })
            .filter_map(|since| now.duration_since(since).ok())
            .max()
    }

    /// Job `key`, if the pool has it.
    pub fn job(&self, key: &str) -> Option<&JobInfo> {
        self.jobs
            .binary_search_by(|j| j.key.as_str().cmp(key))
            .ok()
            .map(|i| &self.jobs[i])
    }
}

fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Node {
    /// What this node sees of its pool: jobs, workers, ranges (see [`PoolState`]). Works
    /// on any node, client-only ones included.
    ///
    /// Errors: `Closed`, backend errors of the liveness checks.
    pub async fn inspect(&self) -> Result<PoolState> {
        self.check_open()?;
        let inner = &self.inner;
        let workers = inner.workers.snapshot();
        let records: HashMap<&str, WorkerRecord> = workers
            .iter()
            .filter_map(|(id, v)| Some((id.as_str(), WorkerRecord::decode(v).ok()?)))
            .collect();
        // Liveness from the store, concurrently.
        let mut checks = tokio::task::JoinSet::new();
        for (id, r) in &records {
            let key = inner.alive_key(&format!("{id}#{}", r.generation))?;
            let (backend, id) = (inner.backend.clone(), (*id).to_owned());
            checks.spawn(async move { Ok::<_, crate::Error>((id, backend.exists(&key).await?)) });
        }
        let mut alive: HashMap<String, bool> = HashMap::new();
        while let Some(done) = checks.join_next().await {
            let (id, live) =
                done.map_err(|e| crate::Error::backend("liveness check", e.to_string()))??;
            alive.insert(id, live);
        }
        let ranges = inner.ranges();
        let live_groups: std::collections::HashSet<&str> = records
            .iter()
            .filter(|(id, _)| alive.get(**id).copied().unwrap_or(false))
            .map(|(_, r)| r.group.as_str())
            .collect();
        let jobs_map = inner.jobs.snapshot();
        let owners = inner.owners.snapshot();
        let mut per_worker: HashMap<String, usize> = HashMap::new();
        let mut jobs: Vec<JobInfo> = jobs_map
            .iter()
            .filter_map(|(key, v)| {
                let record = JobRecord::decode(v).ok()?;
                let group = ranges.group_of(key).to_owned();
                let owner = owners
                    .get(key)
                    .map(|o| String::from_utf8_lossy(o).into_owned());
                let moves = owner.as_deref().map_or(0, owner_moves);
                let since = owner.as_deref().and_then(owner_since_ms).map(time_of);
                let waiting = |reason| JobStatus::Waiting { reason, since };
                let status = match owner.as_deref() {
                    _ if !live_groups.contains(group.as_str()) => JobStatus::Waiting {
                        reason: WaitReason::NoWorkerInGroup,
                        since: since.or(Some(time_of(record.created_ms))),
                    },
                    None => JobStatus::Waiting {
                        reason: WaitReason::NotStarted,
                        since: Some(time_of(record.created_ms)),
                    },
                    Some(o) if is_released(o) => waiting(WaitReason::Moving),
                    Some(o) => {
                        let worker = worker_of(o);
                        let current = records
                            .get(worker)
                            .is_some_and(|r| format!("{worker}#{}", r.generation) == owner_tag(o));
                        if current && alive.get(worker).copied().unwrap_or(false) {
                            *per_worker.entry(worker.to_owned()).or_insert(0) += 1;
                            JobStatus::Running {
                                worker: worker.to_owned(),
                                node: records.get(worker).map(|r| r.node.clone()),
                                since,
                            }
                        } else {
                            JobStatus::Waiting {
                                reason: WaitReason::OwnerGone,
                                since: None,
                            }
                        }
                    }
                };
                Some(JobInfo {
                    key: key.clone(),
                    group,
                    payload_len: record.payload.len(),
                    dispatched_at: time_of(record.created_ms),
                    status,
                    moves,
                })
            })
            .collect();
        jobs.sort_by(|a, b| a.key.cmp(&b.key));
        let mut workers: Vec<WorkerInfo> = records
            .iter()
            .map(|(id, r)| WorkerInfo {
                id: (*id).to_owned(),
                node: r.node.clone(),
                group: r.group.clone(),
                registered_at: time_of(r.created_ms),
                jobs: per_worker.get(*id).copied().unwrap_or(0),
                alive: alive.get(*id).copied().unwrap_or(false),
            })
            .collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(PoolState {
            jobs,
            workers,
            ranges: ranges.groups,
        })
    }
}
