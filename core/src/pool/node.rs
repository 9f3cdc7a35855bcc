//! A process's membership in a pool: joining, workers, closing and shutdown, and the
//! state (`NodeInner`) it shares with its background tasks.
//!
//! State lives in five replicated maps under the pool's hash tag — `jobs` (key → job
//! record: the job exists while it is there), `owners` (key → the run holding it),
//! `workers` (worker → node, generation, group), `groups` (the ranges) and `control` (the
//! shutdown flag) — plus one liveness lease per worker and one inbox per node. The rest of
//! the API and the tasks live in their own modules: `jobs` (dispatch, stop, notify),
//! `call`, `groups`, `inspect`, `events`; `reconcile` (decide what to start and stop),
//! `run` (start, stop, release one job), `liveness` (renew, fence, judge others dead),
//! `inbox` (dispatch results, notifications, calls), `recovery` (a lost store) and
//! `leave` (retire, close, crash, shutdown). `worker` holds a local worker's state and
//! the public worker handles, and knows nothing of the node; `lease` knows only a
//! worker's liveness (`Liveness`), so `node → worker → lease` has no cycle.
//!
//! So a job is started only by the one worker that won its owner record, and a record only
//! changes hands once its holder stopped (or its liveness expired on the backend's clock,
//! after the holder fenced itself): never two concurrent runs, and no job is lost while its
//! record exists — also when a backend call fails before it was applied or after (its
//! reply lost): every decision is retried until the backend agrees.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    sync::{oneshot, watch, Notify},
    task::JoinHandle,
};
use tracing::{info, warn, Instrument};

use super::{
    handler::JobHandler,
    inbox::{inbox_loop, inbox_name, inbox_ttl},
    leave::{self, close, control_loop, retire},
    liveness::{fence_loop, keepalive_loop},
    reconcile::{reconcile_loop, Dirty},
    records::{is_released, worker_of, JobRecord, WorkerRecord},
    worker::{LocalWorker, PoolWorker, Release, Worker},
    NodeOptions,
};
use crate::{
    backend::{MapTarget, Ttl},
    keys::validate_name,
    rmap::{Map, MapOptions},
    streaming::{Reader, ReaderOptions, Start, Stream, StreamOptions},
    telemetry::PoolMetrics,
    Backend, Error, Result,
};

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub(crate) const SHUTDOWN: &str = "shutdown";

/// A node's state, shared by its handle and its tasks.
pub(crate) struct NodeInner {
    pub(crate) id: String,
    pub(crate) pool: String,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) options: NodeOptions,
    pub(crate) jobs: Map,
    pub(crate) owners: Map,
    pub(crate) workers: Map,
    pub(crate) control: Map,
    /// The worker groups' ranges (module `groups`).
    pub(crate) groups: Map,
    /// Groups whose jobs wait for a live worker, and how many, as last reported.
    pub(crate) starving: Mutex<std::collections::BTreeMap<String, usize>>,
    pub(crate) inbox: Stream,
    pub(crate) reader: Reader,
    pub(crate) local: Mutex<HashMap<String, Arc<LocalWorker>>>,
    pub(crate) waiters: Mutex<HashMap<u64, oneshot::Sender<Option<String>>>>,
    /// Job calls waiting for their answer ([`Node::call`]).
    pub(crate) calls: super::call::Calls,
    /// What the node keeps to recover from a lost store (module `recovery`).
    pub(crate) recovery: super::recovery::Recovery,
    /// The subscribers of its pool events (module `events`).
    pub(crate) events: super::events::Events,
    pub(crate) next_dispatch: AtomicU64,
    /// Workers whose liveness lease was missing at the last check (two checks in a row
    /// get them removed). Every other listed worker is presumed alive.
    pub(crate) dead: Mutex<HashSet<String>>,
    pub(crate) kick: Notify,
    /// What the next reconcile pass must look at (see [`Dirty`]).
    pub(crate) dirty: Mutex<Dirty>,
    pub(crate) closed: AtomicBool,
    pub(crate) shut_down: AtomicBool,
    pub(crate) stop_tasks: watch::Sender<bool>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) metrics: PoolMetrics,
}

/// A node of a pool. Cheap to clone; clones share the node.
#[derive(Clone)]
pub struct Node {
    pub(super) inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("pool", &self.inner.pool)
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl NodeInner {
    pub(crate) fn alive_key(&self, worker: &str) -> Result<String> {
        self.options
            .keyspace
            .pool(&self.pool, &format!("alive:{worker}"))
    }

    pub(crate) fn locals(&self) -> Vec<Arc<LocalWorker>> {
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn record(&self, key: &str) -> Option<JobRecord> {
        self.jobs.get(key).and_then(|v| JobRecord::decode(&v).ok())
    }
}

/// Most bytes a job record or an inbox message adds to its payload: the job key (at most
/// [`MAX_KEY_LEN`](crate::keys::MAX_KEY_LEN)) and a few ids and integers.
const ENVELOPE_OVERHEAD: usize = crate::keys::MAX_KEY_LEN + 4096;

impl Node {
    /// Joins pool `name` as a new node: joins its maps, creates its inbox, starts its tasks.
    ///
    /// Errors: [`Error::InvalidName`]; [`Error::ShuttingDown`] while the pool's shutdown flag
    /// is set; backend errors (nothing is left running).
    #[tracing::instrument(level = "debug", name = "pulse.pool.join", skip_all, fields(pool = name))]
    pub async fn join(backend: Arc<dyn Backend>, name: &str, options: NodeOptions) -> Result<Node> {
        validate_name("pool", name)?;
        // `max_payload` is the one limit a user sets: records and inbox messages carry a
        // payload plus bounded metadata (the key, ids), so their own limits follow it.
        let envelope = options.max_payload.saturating_add(ENVELOPE_OVERHEAD);
        let map_opts = MapOptions::default()
            .with_keyspace(options.keyspace.clone())
            .with_max_value_size(envelope);
        let target = |part: &str| -> Result<MapTarget> {
            let k = options.keyspace.pool_map(name, part)?;
            Ok(MapTarget::new(k.hash, k.channel))
        };
        let control_target = target("control")?.with_ttl(Some(Ttl::Absolute(options.shutdown_ttl)));
        let control = Map::join_target(
            backend.clone(),
            &format!("{name}:control"),
            control_target,
            map_opts.clone(),
        )
        .await?;
        if control.contains_key(SHUTDOWN) {
            control.close().await?;
            return Err(Error::ShuttingDown {
                pool: name.to_owned(),
            });
        }
        let join = |part: &'static str| {
            let (backend, map_opts) = (backend.clone(), map_opts.clone());
            let target = target(part);
            async move { Map::join_target(backend, &format!("{name}:{part}"), target?, map_opts).await }
        };
        let jobs = join("jobs").await?;
        let owners = join("owners").await?;
        let workers = join("workers").await?;
        let groups = join("groups").await?;
        let id = crate::ids::new_id();
        let inbox_opts = StreamOptions::default()
            .with_keyspace(options.keyspace.clone())
            .with_max_payload(envelope)
            .with_ttl(Ttl::Sliding(inbox_ttl(&options)));
        let inbox = Stream::new(backend.clone(), &inbox_name(name, &id), inbox_opts)?;
        inbox.add("init", Bytes::new()).await?;
        let reader = inbox
            .new_reader(
                ReaderOptions::default()
                    .with_start(Start::Oldest)
                    .with_block(Duration::from_secs(5)),
            )
            .await?;
        let (stop_tasks, _) = watch::channel(false);
        let inner = Arc::new(NodeInner {
            id,
            pool: name.to_owned(),
            backend,
            options,
            jobs,
            owners,
            workers,
            control,
            groups,
            starving: Mutex::default(),
            inbox,
            reader,
            local: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            calls: Default::default(),
            recovery: Default::default(),
            events: Default::default(),
            next_dispatch: AtomicU64::new(1),
            dead: Mutex::new(HashSet::new()),
            kick: Notify::new(),
            dirty: Mutex::new(Dirty::everything()),
            closed: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            stop_tasks,
            tasks: Mutex::new(Vec::new()),
            metrics: PoolMetrics::new(name),
        });
        let node = Node { inner };
        node.start_tasks()?;
        info!(pool = %name, node = %node.inner.id, client_only = node.inner.options.client_only, "joined");
        Ok(node)
    }

    fn start_tasks(&self) -> Result<()> {
        let inner = &self.inner;
        let stop = || inner.stop_tasks.subscribe();
        // Each loop runs in one `info` span for its whole life.
        let spawn = |name: &'static str, task: BoxFuture<'static, ()>| {
            let span = tracing::info_span!("pulse.pool.loop", otel.name = name, pool = %inner.pool, node = %inner.id);
            tokio::spawn(task.instrument(span))
        };
        let mut tasks = Vec::new();
        let inbox = inner.reader.subscribe()?;
        tasks.push(spawn(
            "inbox",
            Box::pin(inbox_loop(inner.clone(), inbox, stop())),
        ));
        let control = inner.control.subscribe()?;
        tasks.push(spawn(
            "control",
            Box::pin(control_loop(inner.clone(), control, stop())),
        ));
        // What a map change touched is marked for reconciliation right where the replica
        // applies it: the key of a job or owner record, everything for membership and
        // range changes and whole-map events. Every node derives pool events from them.
        let hosts_workers = !inner.options.client_only;
        for (map, name, per_key) in [
            (&inner.jobs, "jobs", true),
            (&inner.owners, "owners", true),
            (&inner.workers, "workers", false),
            (&inner.groups, "groups", false),
        ] {
            inner.recovery.init(name, map.revision());
            if name == "groups" {
                inner.recovery.seen_ranges(map.get(super::groups::RANGES));
            }
            let node = Arc::downgrade(inner);
            map.on_change(Box::new(move |e| {
                if let Some(node) = node.upgrade() {
                    if hosts_workers {
                        // Before the mark: a loss holds the passes first.
                        node.state_changed(name, e);
                        node.mark(e.key.as_deref().filter(|_| per_key));
                    }
                    node.derive_events(name, e);
                }
            }));
        }
        if hosts_workers {
            tasks.push(spawn(
                "reconcile",
                Box::pin(reconcile_loop(inner.clone(), stop())),
            ));
            tasks.push(spawn("fence", Box::pin(fence_loop(inner.clone(), stop()))));
        }
        // Every node keeps its inbox alive, client-only ones too: a dispatcher hears back
        // through it.
        tasks.push(spawn(
            "keepalive",
            Box::pin(keepalive_loop(inner.clone(), stop())),
        ));
        inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tasks);
        Ok(())
    }

    /// The node's ID.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The pool's name.
    pub fn pool(&self) -> &str {
        &self.inner.pool
    }

    pub(crate) fn keyspace(&self) -> &crate::keys::Keyspace {
        &self.inner.options.keyspace
    }

    pub(crate) fn backend(&self) -> Arc<dyn Backend> {
        self.inner.backend.clone()
    }

    /// Creates (or joins) the pool-wide ticker `name`: each tick goes to exactly one of the
    /// nodes that created it. A new period replaces the stored one for every node.
    ///
    /// Errors: [`Error::InvalidName`], [`Error::InvalidArgument`] (zero period),
    /// [`Error::Closed`], backend errors.
    pub async fn new_ticker(&self, name: &str, period: Duration) -> Result<super::Ticker> {
        self.check_open()?;
        super::Ticker::start(
            self.backend(),
            self.keyspace(),
            &self.inner.pool,
            &self.inner.id,
            name,
            period,
        )
        .await
    }

    pub(super) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed {
                what: format!("pool {:?} node", self.inner.pool),
            });
        }
        Ok(())
    }

    pub(super) fn check_payload(&self, payload: &Bytes) -> Result<()> {
        let limit = self.inner.options.max_payload;
        if payload.len() > limit {
            return Err(Error::PayloadTooLarge {
                size: payload.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Adds a worker running `handler`. It takes its share of the jobs at once.
    ///
    /// An error means there is no such worker: what the failed attempt may have written
    /// (its liveness lease, its record: a write can be applied although its reply was lost)
    /// is removed before the error is returned, with retries bounded by the stop timeout.
    /// Should even that fail, the record is left without liveness and other nodes drop it
    /// within `worker_ttl`.
    ///
    /// Errors: [`Error::Closed`]; [`Error::InvalidArgument`] on a client-only node; backend
    /// errors.
    pub async fn add_worker(&self, handler: impl JobHandler) -> Result<Worker> {
        self.add_worker_in_group(super::DEFAULT_GROUP, handler)
            .await
    }

    /// Adds a worker running `handler` to worker group `group` (see
    /// [`set_group_range`](Self::set_group_range)): it runs only jobs whose keys are in
    /// the group's range, and takes its share of them at once; only jobs of its group
    /// move to it. Otherwise as [`add_worker`](Self::add_worker).
    ///
    /// Errors: as `add_worker`, and `InvalidName` for an invalid group name.
    #[tracing::instrument(level = "debug", name = "pulse.pool.op", skip_all, fields(op = "add_worker", pool = %self.inner.pool, node = %self.inner.id, group))]
    pub async fn add_worker_in_group(
        &self,
        group: &str,
        handler: impl JobHandler,
    ) -> Result<Worker> {
        self.check_open()?;
        super::groups::validate_group(group)?;
        if self.inner.options.client_only {
            return Err(Error::InvalidArgument(
                "a client-only node hosts no workers".into(),
            ));
        }
        let inner = &self.inner;
        let id = crate::ids::new_id();
        let running = inner.metrics.running(&id, group);
        let w = Arc::new(LocalWorker::new(
            id,
            group.to_owned(),
            Arc::new(handler),
            running,
        ));
        let (tag, alive) = (w.tag(), inner.alive_key(&w.tag())?);
        let record = w.record(&inner.id).encode()?;
        // Liveness first, then the record: a listed worker is always alive at first.
        let added = async {
            inner
                .backend
                .lease_acquire(&alive, &tag, inner.options.worker_ttl)
                .await?;
            inner
                .local
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(w.id.clone(), w.clone());
            inner.workers.set_and_wait(&w.id, record).await?;
            Ok::<_, Error>(())
        };
        if let Err(e) = added.await {
            inner
                .local
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&w.id);
            if let Err(cleanup) = retire(inner, w.clone(), Release::Handoff).await {
                warn!(pool = %inner.pool, worker = %w.id, error = %cleanup, "could not remove what a failed add_worker wrote; other nodes drop it once its liveness lapses");
            }
            return Err(e);
        }
        info!(pool = %inner.pool, worker = %w.id, group, "worker added");
        inner.mark(None);
        Ok(Worker::new(w))
    }

    /// Removes a worker: stops its jobs (they move to other workers), then withdraws it.
    /// Returns once each job's owner record is released, bounded by twice the stop timeout
    /// (the handlers' `stop`, then the releases).
    ///
    /// Errors: [`Error::Timeout`] when jobs were still starting or being released at that
    /// bound (the worker is stopped anyway; its liveness is left to lapse so other
    /// workers take what is left after `worker_ttl`); backend errors of the withdrawal.
    #[tracing::instrument(level = "debug", name = "pulse.pool.op", skip_all, fields(op = "remove_worker", pool = %self.inner.pool, node = %self.inner.id))]
    pub async fn remove_worker(&self, worker: &Worker) -> Result<()> {
        let w = self
            .inner
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(worker.id());
        match w {
            Some(w) => retire(&self.inner, w, Release::Handoff).await,
            None => Ok(()),
        }
    }

    /// This node's workers.
    pub fn workers(&self) -> Vec<Worker> {
        let mut ws: Vec<Worker> = self.inner.locals().into_iter().map(Worker::new).collect();
        ws.sort_by(|a, b| a.id().cmp(b.id()));
        ws
    }

    /// Every worker of the pool (from the local replica), sorted by ID.
    pub fn pool_workers(&self) -> Vec<PoolWorker> {
        let snap = self.inner.workers.snapshot();
        let mut out: Vec<PoolWorker> = snap
            .iter()
            .filter_map(|(id, v)| {
                let r = WorkerRecord::decode(v).ok()?;
                Some(PoolWorker {
                    id: id.clone(),
                    node: r.node,
                    group: r.group,
                    created_at: std::time::SystemTime::UNIX_EPOCH
                        + Duration::from_millis(r.created_ms),
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The keys of every job of the pool (local replica), sorted.
    pub fn job_keys(&self) -> Vec<String> {
        let mut keys = self.inner.jobs.keys();
        keys.sort();
        keys
    }

    /// The payload of job `key` (local replica); `None` when the job does not exist.
    pub fn job_payload(&self, key: &str) -> Option<Bytes> {
        self.inner.record(key).map(|r| r.payload)
    }

    /// The worker running `key` (local replica), if any.
    pub fn job_owner(&self, key: &str) -> Option<String> {
        self.inner
            .owners
            .get(key)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .filter(|o| !is_released(o))
            .map(|o| worker_of(&o).to_owned())
    }

    /// Leaves the pool: stops this node's jobs (they move to other nodes' workers),
    /// withdraws its workers, stops its tasks. Returns once every owner record its workers
    /// are responsible for is released, bounded as for `remove_worker`; errors as
    /// [`remove_worker`](Self::remove_worker). Idempotent.
    #[tracing::instrument(level = "debug", name = "pulse.pool.op", skip_all, fields(op = "close", pool = %self.inner.pool, node = %self.inner.id))]
    pub async fn close(&self) -> Result<()> {
        close(&self.inner, Release::Handoff).await
    }

    /// Fault injection for tests: stops this node the way a killed process stops — its
    /// tasks end, its workers stop renewing liveness, nothing is released or deleted, and
    /// no handler is called (the process is gone). Other nodes recover its jobs after
    /// `worker_ttl`.
    #[doc(hidden)]
    pub async fn simulate_crash(&self) {
        leave::crash(&self.inner).await
    }

    /// True once closing started.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// True once this node took part in a pool shutdown.
    pub fn is_shutdown(&self) -> bool {
        self.inner.shut_down.load(Ordering::SeqCst)
    }

    /// Shuts the whole pool down: refuses new nodes for the shutdown TTL, stops every job
    /// on every node, waits (bounded by the shutdown timeout; dropping the future stops
    /// waiting) until all stopped, then deletes the pool's state and closes this node.
    ///
    /// Errors: [`Error::Closed`]; [`Error::Timeout`] if jobs were still running at the
    /// deadline (the state is removed anyway).
    #[tracing::instrument(level = "debug", name = "pulse.pool.op", skip_all, fields(op = "shutdown", pool = %self.inner.pool, node = %self.inner.id))]
    pub async fn shutdown(&self) -> Result<()> {
        self.check_open()?;
        leave::shutdown(&self.inner).await
    }
}

/// The node hosting the owner of `key` (local replicas), if any.
pub(crate) fn owner_node(inner: &NodeInner, key: &str) -> Option<String> {
    let owner = inner.owners.get(key)?;
    let owner = worker_of(&String::from_utf8_lossy(&owner)).to_owned();
    let record = WorkerRecord::decode(&inner.workers.get(&owner)?).ok()?;
    Some(record.node)
}
