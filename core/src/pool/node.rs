//! A process's membership in a pool: dispatching, hosting workers, reconciling.
//!
//! State lives in four replicated maps under the pool's hash tag — `jobs` (key → job
//! record: the job exists while it is there), `owners` (key → the worker running it),
//! `workers` (worker → node) and `control` (the shutdown flag) — plus one liveness lease per
//! worker. Every node *reconciles*: for each of its workers and each job, compare where the
//! job should run (rendezvous hash over live workers) with what runs, and act:
//! - a job this worker should run and nobody owns (or whose owner is dead, or released it)
//!   is taken by compare-and-set on its owner record, *then* started;
//! - a job this worker runs but should not (moved, stopped, ownership lost) is stopped,
//!   *then* its owner record is released (or deleted).
//!
//! So a job is started only by the one worker that won its owner record, and a record only
//! changes hands once its holder stopped (or its liveness expired on the backend's clock,
//! after the holder fenced itself): never two concurrent runs, and no job is lost while its
//! record exists.
//!
//! Passes are incremental: a change of a job or owner record marks its key (`Dirty`), and a
//! pass looks only at marked keys; membership and liveness changes and a periodic tick
//! (`worker_ttl / 3`) mark everything. Taking a job runs in its own task (`take`).

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
    time::Instant,
};
use tracing::{debug, info, warn};

use super::{
    handler::JobHandler,
    hashing::route,
    records::{now_ms, worker_of, InboxMessage, JobRecord, WorkerRecord},
    worker::{self, LocalWorker, Release, Slot, RELEASED},
    NodeOptions,
};
use crate::{
    backend::{EntryId, MapTarget, SetCondition, Ttl},
    codec,
    keys::{validate_map_key, validate_name},
    rmap::{Map, MapOptions},
    streaming::{Event, NewEvent, Reader, ReaderOptions, Start, Stream, StreamOptions},
    Backend, Error, Result,
};

const SHUTDOWN: &str = "shutdown";

/// Most inbox messages handled (and then deleted together) at once.
const INBOX_BATCH: usize = 256;

/// The keys whose job or owner record changed since the last reconcile pass, or `all` when
/// anything else changed (membership, liveness, a collapsed or whole-map event, the
/// periodic safety pass): a pass looks only at what may have changed, so a dispatch costs
/// O(1) locally instead of a scan of every job.
#[derive(Debug, Default)]
struct Dirty {
    all: bool,
    keys: HashSet<String>,
}

pub(crate) struct NodeInner {
    pub(crate) id: String,
    pub(crate) pool: String,
    backend: Arc<dyn Backend>,
    pub(crate) options: NodeOptions,
    pub(crate) jobs: Map,
    pub(crate) owners: Map,
    workers: Map,
    control: Map,
    inbox: Stream,
    reader: Reader,
    local: Mutex<HashMap<String, Arc<LocalWorker>>>,
    waiters: Mutex<HashMap<u64, oneshot::Sender<Option<String>>>>,
    next_dispatch: AtomicU64,
    /// Workers whose liveness lease was missing at the last check (two checks in a row
    /// get them removed). Every other listed worker is presumed alive.
    dead: Mutex<HashSet<String>>,
    pub(crate) kick: Notify,
    /// What the next reconcile pass must look at (see [`Dirty`]).
    dirty: Mutex<Dirty>,
    closed: AtomicBool,
    shut_down: AtomicBool,
    stop_tasks: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A node of a pool. Cheap to clone; clones share the node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("pool", &self.inner.pool)
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// A worker hosted by a node.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<LocalWorker>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// The worker's ID, unique in the pool.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// When it was added.
    pub fn created_at(&self) -> std::time::SystemTime {
        self.inner.created
    }

    /// The keys of the jobs it runs (started and not stopping), sorted.
    pub fn jobs(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .inner
            .slots()
            .iter()
            .filter(|(_, s)| **s == Slot::Running)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// True once removed (or its node closed).
    pub fn is_stopped(&self) -> bool {
        self.inner.is_stopped()
    }
}

/// A worker of the pool, from any node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolWorker {
    /// The worker's ID.
    pub id: String,
    /// The node hosting it.
    pub node: String,
    /// When it was added.
    pub created_at: std::time::SystemTime,
}

fn unique_id() -> String {
    format!(
        "{:x}-{:x}-{:x}",
        now_ms(),
        std::process::id(),
        crate::backend::new_epoch()
    )
}

/// How long a node's inbox outlives its node's last keep-alive.
fn inbox_ttl(options: &NodeOptions) -> Duration {
    (options.worker_ttl * 10).max(Duration::from_secs(60))
}

fn inbox_name(pool: &str, node: &str) -> String {
    format!("{pool}:inbox:{node}")
}

impl NodeInner {
    fn alive_key(&self, worker: &str) -> Result<String> {
        self.options
            .keyspace
            .pool(&self.pool, &format!("alive:{worker}"))
    }

    fn locals(&self) -> Vec<Arc<LocalWorker>> {
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Another node's inbox, for sending. A send does not touch the inbox's expiry: its
    /// owner's keep-alive does, so the inbox of a node that died expires however many
    /// messages are still sent to it, and a send is one `XADD`.
    fn inbox_stream(&self, node: &str) -> Result<Stream> {
        let opts = StreamOptions::default().with_keyspace(self.options.keyspace.clone());
        Stream::new(self.backend.clone(), &inbox_name(&self.pool, node), opts)
    }

    /// Appends to a node's inbox, only if that inbox exists (never into the void).
    pub(crate) async fn send_inbox(&self, node: &str, msg: &InboxMessage) {
        let sent = async {
            let stream = self.inbox_stream(node)?;
            stream
                .add_if_exists(NewEvent::new("m", codec::encode(msg)?))
                .await
        };
        match sent.await {
            Ok(Some(_)) => {}
            Ok(None) => debug!(pool = %self.pool, %node, "inbox gone; message dropped"),
            Err(e) => warn!(pool = %self.pool, %node, error = %e, "could not send to a node inbox"),
        }
    }

    /// True only when the backend confirms `worker`'s liveness lease is gone.
    async fn confirmed_dead(&self, worker: &str) -> bool {
        match self.alive_key(worker) {
            Ok(key) => matches!(self.backend.exists(&key).await, Ok(false)),
            Err(_) => false,
        }
    }

    /// Marks job `key` (or, with `None`, everything) for the next reconcile pass and wakes it.
    pub(crate) fn mark(&self, key: Option<&str>) {
        {
            let mut d = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
            match key {
                Some(k) if !d.all => {
                    d.keys.insert(k.to_owned());
                }
                Some(_) => {}
                None => {
                    d.all = true;
                    d.keys.clear();
                }
            }
        }
        self.kick.notify_one();
    }

    fn take_dirty(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn record(&self, key: &str) -> Option<JobRecord> {
        self.jobs
            .get(key)
            .and_then(|v| codec::decode("job record", &v).ok())
    }
}

impl Node {
    /// Joins pool `name` as a new node: joins its maps, creates its inbox, starts its tasks.
    ///
    /// Errors: [`Error::InvalidName`]; [`Error::ShuttingDown`] while the pool's shutdown flag
    /// is set; backend errors (nothing is left running).
    pub async fn join(backend: Arc<dyn Backend>, name: &str, options: NodeOptions) -> Result<Node> {
        validate_name("pool", name)?;
        let map_opts = MapOptions::default().with_keyspace(options.keyspace.clone());
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
            control.close();
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
        let id = unique_id();
        let inbox_opts = StreamOptions::default()
            .with_keyspace(options.keyspace.clone())
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
            inbox,
            reader,
            local: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            next_dispatch: AtomicU64::new(1),
            dead: Mutex::new(HashSet::new()),
            kick: Notify::new(),
            dirty: Mutex::new(Dirty {
                all: true,
                keys: HashSet::new(),
            }),
            closed: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            stop_tasks,
            tasks: Mutex::new(Vec::new()),
        });
        let node = Node { inner };
        node.start_tasks()?;
        info!(pool = %name, node = %node.inner.id, client_only = node.inner.options.client_only, "joined");
        Ok(node)
    }

    fn start_tasks(&self) -> Result<()> {
        let inner = &self.inner;
        let mut tasks = Vec::new();
        let inbox = inner.reader.subscribe()?;
        tasks.push(tokio::spawn(inbox_loop(
            inner.clone(),
            inbox,
            inner.stop_tasks.subscribe(),
        )));
        let control = inner.control.subscribe()?;
        tasks.push(tokio::spawn(control_loop(
            inner.clone(),
            control,
            inner.stop_tasks.subscribe(),
        )));
        if !inner.options.client_only {
            // What a map change touched is marked for reconciliation right where the replica
            // applies it: the key of a job or owner record, everything for membership
            // changes and whole-map events.
            for (map, per_key) in [
                (&inner.jobs, true),
                (&inner.owners, true),
                (&inner.workers, false),
            ] {
                let node = Arc::downgrade(inner);
                map.on_change(Box::new(move |e| {
                    if let Some(node) = node.upgrade() {
                        node.mark(e.key.as_deref().filter(|_| per_key));
                    }
                }));
            }
            tasks.push(tokio::spawn(reconcile_loop(
                inner.clone(),
                inner.stop_tasks.subscribe(),
            )));
            tasks.push(tokio::spawn(keepalive_loop(
                inner.clone(),
                inner.stop_tasks.subscribe(),
            )));
            tasks.push(tokio::spawn(fence_loop(
                inner.clone(),
                inner.stop_tasks.subscribe(),
            )));
        }
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

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed {
                what: format!("pool {:?} node", self.inner.pool),
            });
        }
        Ok(())
    }

    fn check_payload(&self, payload: &Bytes) -> Result<()> {
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
    /// Errors: [`Error::Closed`]; [`Error::InvalidArgument`] on a client-only node.
    pub async fn add_worker(&self, handler: impl JobHandler) -> Result<Worker> {
        self.check_open()?;
        if self.inner.options.client_only {
            return Err(Error::InvalidArgument(
                "a client-only node hosts no workers".into(),
            ));
        }
        let w = Arc::new(LocalWorker::new(unique_id(), Arc::new(handler)));
        let inner = &self.inner;
        // Liveness first, then the record: a listed worker is always alive at first.
        inner
            .backend
            .lease_acquire(
                &inner.alive_key(&w.tag())?,
                &w.tag(),
                inner.options.worker_ttl,
            )
            .await?;
        inner
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(w.id.clone(), w.clone());
        let record = WorkerRecord {
            node: inner.id.clone(),
            created_ms: now_ms(),
            generation: w.generation.load(Ordering::SeqCst),
        };
        if let Err(e) = inner
            .workers
            .set_and_wait(&w.id, codec::encode(&record)?)
            .await
        {
            inner
                .local
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&w.id);
            let _ = inner
                .backend
                .lease_release(&inner.alive_key(&w.tag())?, &w.tag())
                .await;
            return Err(e);
        }
        info!(pool = %inner.pool, worker = %w.id, "worker added");
        inner.mark(None);
        Ok(Worker { inner: w })
    }

    /// Removes a worker: stops its jobs (they move to other workers), then withdraws it.
    /// Bounded by the stop timeout per job.
    pub async fn remove_worker(&self, worker: &Worker) -> Result<()> {
        let w = self
            .inner
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&worker.inner.id);
        match w {
            Some(w) => retire(&self.inner, w, Release::Handoff).await,
            None => Ok(()),
        }
    }

    /// This node's workers.
    pub fn workers(&self) -> Vec<Worker> {
        let mut ws: Vec<Worker> = self
            .inner
            .locals()
            .into_iter()
            .map(|inner| Worker { inner })
            .collect();
        ws.sort_by(|a, b| a.inner.id.cmp(&b.inner.id));
        ws
    }

    /// Every worker of the pool (from the local replica), sorted by ID.
    pub fn pool_workers(&self) -> Vec<PoolWorker> {
        let snap = self.inner.workers.snapshot();
        let mut out: Vec<PoolWorker> = snap
            .iter()
            .filter_map(|(id, v)| {
                let r: WorkerRecord = codec::decode("worker record", v).ok()?;
                Some(PoolWorker {
                    id: id.clone(),
                    node: r.node,
                    created_at: std::time::SystemTime::UNIX_EPOCH
                        + Duration::from_millis(r.created_ms),
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Dispatches a job: admits it (one atomic set-if-absent of its record), then waits
    /// until a worker's `start` ran, bounded by the dispatch timeout.
    ///
    /// Errors: [`Error::JobExists`] when the key is running or being dispatched;
    /// [`Error::JobFailed`] with the handler's error (the job then does not exist);
    /// [`Error::Timeout`] (the job exists and starts when a worker can take it);
    /// [`Error::InvalidKey`], [`Error::PayloadTooLarge`], [`Error::Closed`], backend errors.
    pub async fn dispatch_job(&self, key: &str, payload: impl Into<Bytes>) -> Result<()> {
        self.check_open()?;
        validate_map_key(key)?;
        let inner = &self.inner;
        let payload: Bytes = payload.into();
        self.check_payload(&payload)?;
        let dispatch_id = inner.next_dispatch.fetch_add(1, Ordering::Relaxed);
        let record = JobRecord {
            payload,
            created_ms: now_ms(),
            dispatch: Some((inner.id.clone(), dispatch_id)),
        };
        let encoded = Bytes::from(codec::encode(&record)?);
        let (tx, rx) = oneshot::channel();
        inner
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dispatch_id, tx);
        let forget = || {
            inner
                .waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&dispatch_id)
        };
        match inner.jobs.set_if_absent(key, encoded.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                forget();
                return Err(Error::JobExists {
                    key: key.to_owned(),
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
                // A new job that failed to start does not exist (unless it changed since).
                let _ = inner.jobs.test_and_delete(key, encoded).await;
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

    /// Stops a job: deletes its record; its worker stops it. Returns whether it existed.
    pub async fn stop_job(&self, key: &str) -> Result<bool> {
        self.check_open()?;
        validate_map_key(key)?;
        Ok(self.inner.jobs.delete(key).await?.is_some())
    }

    /// Sends `payload` to the handler of the worker running `key`. Returns false when the
    /// job has no running owner right now (nothing sent). Delivery is at most once: a
    /// notification racing with a move may be dropped (logged).
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
            .filter(|o| o != RELEASED)
            .map(|o| worker_of(&o).to_owned())
    }

    /// Leaves the pool: stops this node's jobs (they move to other nodes' workers),
    /// withdraws its workers, stops its tasks. Bounded by the stop timeout per job.
    /// Idempotent.
    pub async fn close(&self) -> Result<()> {
        close(&self.inner, Release::Handoff).await
    }

    /// Fault injection for tests: stops this node the way a killed process stops — its
    /// tasks end, its workers stop renewing liveness, nothing is released or deleted, and
    /// no handler is called (the process is gone). Other nodes recover its jobs after
    /// `worker_ttl`.
    #[doc(hidden)]
    pub async fn simulate_crash(&self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        let _ = inner.stop_tasks.send(true);
        let tasks: Vec<JoinHandle<()>> = inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        for w in inner.locals() {
            w.stopped.store(true, Ordering::SeqCst);
        }
        inner.reader.close().await;
        for m in [&inner.jobs, &inner.owners, &inner.workers, &inner.control] {
            m.close();
        }
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
    pub async fn shutdown(&self) -> Result<()> {
        self.check_open()?;
        let inner = &self.inner;
        info!(pool = %inner.pool, node = %inner.id, "shutting down the pool");
        inner.control.set(SHUTDOWN, inner.id.clone()).await?;
        inner.jobs.reset().await?;
        let deadline = Instant::now() + inner.options.shutdown_timeout;
        let mut changes = inner.owners.subscribe()?;
        let mut timed_out = false;
        while !inner.owners.is_empty() {
            let live: Vec<String> = inner.owners.keys();
            // Records of dead or released owners are nobody's to stop: clear them.
            for key in live {
                if let Some(o) = inner.owners.get(&key) {
                    let o = String::from_utf8_lossy(&o).into_owned();
                    if o == RELEASED || inner.confirmed_dead(&o).await {
                        let _ = inner.owners.test_and_delete(&key, o).await;
                    }
                }
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Ok(Some(_)) => {}
                Ok(None) => break, // the map closed under us
                Err(_) => {
                    timed_out = true;
                    break;
                }
            }
        }
        close(inner, Release::Delete).await?;
        inner.shut_down.store(true, Ordering::SeqCst);
        inner.owners.destroy().await?;
        inner.jobs.destroy().await?;
        inner.workers.destroy().await?;
        if timed_out {
            return Err(Error::Timeout {
                what: format!("jobs of pool {:?} to stop", inner.pool),
            });
        }
        Ok(())
    }
}

fn owner_node(inner: &NodeInner, key: &str) -> Option<String> {
    let owner = inner.owners.get(key)?;
    let owner = worker_of(&String::from_utf8_lossy(&owner)).to_owned();
    let record: WorkerRecord = codec::decode("worker record", &inner.workers.get(&owner)?).ok()?;
    Some(record.node)
}

/// Stops a worker's jobs and withdraws it from the pool.
async fn retire(inner: &Arc<NodeInner>, w: Arc<LocalWorker>, release: Release) -> Result<()> {
    w.stopped.store(true, Ordering::SeqCst);
    // Only started jobs can be stopped; jobs still starting are stopped once started.
    let keys: Vec<String> = {
        let mut slots = w.slots();
        let running: Vec<String> = slots
            .iter()
            .filter(|(_, s)| **s == Slot::Running)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &running {
            slots.insert(k.clone(), Slot::Stopping);
        }
        running
    };
    let stops: Vec<_> = keys
        .into_iter()
        .map(|k| tokio::spawn(worker::stop(inner.clone(), w.clone(), k, release)))
        .collect();
    for s in stops {
        let _ = s.await;
    }
    // Jobs still starting finish their start, see the worker retiring and stop themselves
    // (`worker::start`); wait for that, bounded by the stop timeout.
    let deadline = Instant::now() + inner.options.stop_timeout;
    loop {
        let freed = w.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable(); // registered before the check: no wake-up is missed
        if w.slots().is_empty() {
            break;
        }
        if tokio::time::timeout_at(deadline, freed).await.is_err() {
            warn!(pool = %inner.pool, worker = %w.id, "jobs still starting at the stop timeout");
            break;
        }
    }
    if let Some(current) = inner.workers.get(&w.id) {
        inner.workers.test_and_delete(&w.id, current).await?;
    }
    inner
        .backend
        .lease_release(&inner.alive_key(&w.tag())?, &w.tag())
        .await?;
    info!(pool = %inner.pool, worker = %w.id, "worker removed");
    Ok(())
}

async fn close(inner: &Arc<NodeInner>, release: Release) -> Result<()> {
    if inner.closed.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let _ = inner.stop_tasks.send(true);
    let tasks: Vec<JoinHandle<()>> = inner
        .tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain(..)
        .collect();
    // Tasks stop at their next await on the stop signal; a reconcile pass in progress
    // finishes first (never leave a half-taken job). Abort only what overruns.
    for mut t in tasks {
        if tokio::time::timeout(inner.options.stop_timeout, &mut t)
            .await
            .is_err()
        {
            t.abort();
        }
    }
    let workers: Vec<Arc<LocalWorker>> = inner
        .local
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .map(|(_, w)| w)
        .collect();
    let mut first_err = None;
    for w in workers {
        if let Err(e) = retire(inner, w, release).await {
            first_err.get_or_insert(e);
        }
    }
    inner.reader.close().await;
    if let Err(e) = inner.inbox.destroy().await {
        first_err.get_or_insert(e);
    }
    inner
        .waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    for m in [&inner.jobs, &inner.owners, &inner.workers, &inner.control] {
        m.close();
    }
    info!(pool = %inner.pool, node = %inner.id, "closed");
    first_err.map_or(Ok(()), Err)
}

async fn control_loop(
    inner: Arc<NodeInner>,
    mut sub: crate::rmap::MapSubscriber,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            e = sub.recv() => {
                if e.is_none() {
                    return;
                }
                let requested_by = inner.control.get(SHUTDOWN);
                // The initiating node runs the shutdown itself.
                let by_other = requested_by.as_deref().is_some_and(|by| by != inner.id.as_bytes());
                if by_other && !inner.closed.load(Ordering::SeqCst) {
                    info!(pool = %inner.pool, node = %inner.id, "pool shutdown requested");
                    inner.shut_down.store(true, Ordering::SeqCst);
                    let inner = inner.clone();
                    // Close from another task: close() stops (and awaits) this one.
                    tokio::spawn(async move { close(&inner, Release::Delete).await });
                    return;
                }
            }
        }
    }
}

/// Reads this node's inbox, a batch of waiting messages at a time.
async fn inbox_loop(
    inner: Arc<NodeInner>,
    mut rx: crate::streaming::EventReceiver,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            _ = stop.changed() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let mut batch = vec![first];
        while batch.len() < INBOX_BATCH {
            match rx.try_recv() {
                Some(e) => batch.push(e),
                None => break,
            }
        }
        let ids: Vec<EntryId> = batch.iter().map(|e| e.id).collect();
        for event in batch {
            handle_inbox(&inner, event).await;
        }
        // Handled messages are deleted, so an inbox holds only what its node has not read
        // yet instead of one entry per job it ever dispatched. A failed delete leaves them
        // to the inbox's expiry when the node goes.
        if let Err(e) = inner.inbox.remove(&ids).await {
            debug!(pool = %inner.pool, error = %e, "could not delete handled inbox messages");
        }
    }
}

/// One inbox message: a dispatch result for a waiting `dispatch_job`, or a notification
/// for a job running here (forwarded at most twice when the job has moved).
async fn handle_inbox(inner: &Arc<NodeInner>, event: Event) {
    if event.name != "m" {
        return;
    }
    match codec::decode::<InboxMessage>("inbox message", &event.payload) {
        Ok(InboxMessage::Started {
            dispatch_id, error, ..
        }) => {
            if let Some(tx) = inner
                .waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&dispatch_id)
            {
                let _ = tx.send(error);
            }
        }
        Ok(InboxMessage::Notify { key, payload, hops }) => {
            let local = inner
                .locals()
                .into_iter()
                .find(|w| w.slots().get(&key) == Some(&Slot::Running));
            match local {
                Some(w) => {
                    if let Err(e) = w.handler.notify(&key, payload).await {
                        warn!(job = %key, error = %e, "notification handler failed");
                    }
                }
                None if hops < 2 => match owner_node(inner, &key) {
                    Some(node) => {
                        inner
                            .send_inbox(
                                &node,
                                &InboxMessage::Notify {
                                    key,
                                    payload,
                                    hops: hops + 1,
                                },
                            )
                            .await
                    }
                    None => warn!(job = %key, "notification dropped: the job has no owner"),
                },
                None => warn!(job = %key, "notification dropped after forwarding"),
            }
        }
        Err(e) => warn!(pool = %inner.pool, error = %e, "ignoring a malformed inbox message"),
    }
}

/// Renews every local worker's liveness every `worker_ttl / 3` (each call bounded), and
/// keeps the node's inbox and the workers' records in place.
async fn keepalive_loop(inner: Arc<NodeInner>, mut stop: watch::Receiver<bool>) {
    let ttl = inner.options.worker_ttl;
    let period = ttl / 3;
    let bound = period / 2;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        for w in inner.locals() {
            if w.is_stopped() {
                continue;
            }
            // After a pause this loop may run before the watchdog: never renew a possibly
            // lapsed identity — fence first, then come back under a new generation.
            if w.renewal_overdue(ttl * 2 / 3) && !w.fenced.swap(true, Ordering::SeqCst) {
                fence(&inner, &w).await;
            }
            if w.is_fenced() {
                // The old identity may have lapsed and its jobs been taken: come back under
                // a new generation, so records of the old one are dead for everyone.
                let old = w.tag();
                w.generation.fetch_add(1, Ordering::SeqCst);
                if let Ok(key) = inner.alive_key(&old) {
                    let _ =
                        tokio::time::timeout(bound, inner.backend.lease_release(&key, &old)).await;
                }
            }
            let tag = w.tag();
            let Ok(key) = inner.alive_key(&tag) else {
                continue;
            };
            let sent = Instant::now();
            match tokio::time::timeout(bound, inner.backend.lease_acquire(&key, &tag, ttl)).await {
                Ok(Ok(true)) => {
                    *w.last_renewal.lock().unwrap_or_else(|p| p.into_inner()) = sent;
                    if w.is_fenced() {
                        let record = WorkerRecord {
                            node: inner.id.clone(),
                            created_ms: now_ms(),
                            generation: w.generation.load(Ordering::SeqCst),
                        };
                        if let Ok(v) = codec::encode(&record) {
                            if tokio::time::timeout(bound, inner.workers.set(&w.id, v))
                                .await
                                .is_ok_and(|r| r.is_ok())
                            {
                                w.fenced.store(false, Ordering::SeqCst);
                                info!(worker = %w.id, generation = record.generation, "liveness restored under a new generation");
                                inner.mark(None);
                            }
                        }
                    }
                }
                Ok(Ok(false)) => warn!(worker = %w.id, "liveness lease held by someone else"),
                Ok(Err(e)) => warn!(worker = %w.id, error = %e, "liveness renewal failed"),
                Err(_) => warn!(worker = %w.id, "liveness renewal timed out"),
            }
        }
        // Keep (or re-create) this node's inbox, and re-register workers whose record was
        // removed while they were cut off.
        let refresh = inner
            .backend
            .expire(inner.inbox.key(), Ttl::Sliding(inbox_ttl(&inner.options)));
        let _ = tokio::time::timeout(bound, refresh).await;
        if let Ok(Ok(false)) =
            tokio::time::timeout(bound, inner.backend.exists(inner.inbox.key())).await
        {
            let _ = tokio::time::timeout(bound, inner.inbox.add("init", Bytes::new())).await;
        }
        for w in inner.locals() {
            if w.is_stopped() || w.is_fenced() || inner.workers.contains_key(&w.id) {
                continue;
            }
            let record = WorkerRecord {
                node: inner.id.clone(),
                created_ms: now_ms(),
                generation: w.generation.load(Ordering::SeqCst),
            };
            if let Ok(v) = codec::encode(&record) {
                let _ = tokio::time::timeout(bound, inner.workers.set_if_absent(&w.id, v)).await;
            }
        }
    }
}

/// Fences workers that could not renew in time: once the last successful renewal was sent
/// `2/3 worker_ttl` ago — before the lease can expire on the backend, whatever the reply
/// delays — the worker stops all its jobs and starts nothing until a renewal succeeds.
/// Runs on its own short timer so no slow backend call can delay it.
async fn fence_loop(inner: Arc<NodeInner>, mut stop: watch::Receiver<bool>) {
    let fence_after = inner.options.worker_ttl * 2 / 3;
    let tick = (inner.options.worker_ttl / 20).max(Duration::from_millis(1));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        for w in inner.locals() {
            if !w.is_stopped()
                && w.renewal_overdue(fence_after)
                && !w.fenced.swap(true, Ordering::SeqCst)
            {
                fence(&inner, &w).await;
            }
        }
    }
}

/// Stops every job of `w` without touching owner records: they may belong to others now.
async fn fence(inner: &Arc<NodeInner>, w: &Arc<LocalWorker>) {
    let keys: Vec<String> = {
        let mut slots = w.slots();
        let keys: Vec<String> = slots
            .iter()
            .filter(|(_, s)| **s == Slot::Running)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            slots.insert(k.clone(), Slot::Stopping);
        }
        keys
    };
    if !keys.is_empty() {
        warn!(worker = %w.id, jobs = keys.len(), "liveness may have lapsed: stopping this worker's jobs");
    }
    for k in keys {
        worker::stop(inner.clone(), w.clone(), k, Release::Nothing).await;
    }
}

async fn reconcile_loop(inner: Arc<NodeInner>, mut stop: watch::Receiver<bool>) {
    let period = inner.options.worker_ttl / 3;
    let mut next_refresh = Instant::now();
    let mut dead_seen: HashSet<String> = HashSet::new();
    loop {
        if Instant::now() >= next_refresh {
            refresh_alive(&inner, &mut dead_seen).await; // marks everything
            next_refresh = Instant::now() + period;
        }
        reconcile(&inner).await;
        tokio::select! {
            _ = stop.changed() => return,
            _ = inner.kick.notified() => {}
            _ = tokio::time::sleep_until(next_refresh) => {}
        }
    }
}

/// Re-reads which listed workers have lost their liveness; removes the records of workers
/// found dead twice in a row.
async fn refresh_alive(inner: &Arc<NodeInner>, dead_seen: &mut HashSet<String>) {
    let locals: HashSet<String> = inner
        .locals()
        .iter()
        .filter(|w| !w.is_stopped())
        .map(|w| w.id.clone())
        .collect();
    let mut dead = HashSet::new();
    for id in inner.workers.keys() {
        if locals.contains(&id) {
            continue;
        }
        let generation = inner
            .workers
            .get(&id)
            .and_then(|v| codec::decode::<WorkerRecord>("worker record", &v).ok())
            .map_or(1, |r| r.generation);
        let Ok(key) = inner.alive_key(&format!("{id}#{generation}")) else {
            continue;
        };
        match inner.backend.exists(&key).await {
            Ok(true) => {}
            Ok(false) => {
                dead.insert(id);
            }
            Err(e) => {
                debug!(error = %e, "liveness check failed; keeping the previous view");
                return;
            }
        }
    }
    for id in dead.intersection(dead_seen) {
        if let Some(v) = inner.workers.get(id) {
            let _ = inner.workers.test_and_delete(id, v).await;
            info!(pool = %inner.pool, worker = %id, "removed a dead worker");
        }
    }
    *dead_seen = dead.clone();
    *inner.dead.lock().unwrap_or_else(|p| p.into_inner()) = dead;
    inner.mark(None);
}

/// A job a worker decided to take: its owner record as seen, and whether the previous
/// owner's death must be confirmed first.
struct Take {
    key: String,
    record: JobRecord,
    previous: Option<String>,
    tag: String,
    confirm: bool,
}

/// Wins the owner record of `t.key` by compare-and-set (after confirming the previous
/// owner's death if needed), then starts the job; frees the slot if the job is not taken.
async fn take(inner: Arc<NodeInner>, w: Arc<LocalWorker>, t: Take) {
    let free = |w: &LocalWorker| {
        w.slots().remove(&t.key);
        w.slot_freed.notify_waiters();
    };
    if let Some(o) = t.previous.as_deref().filter(|_| t.confirm) {
        if !inner.confirmed_dead(o).await {
            return free(&w);
        }
    }
    let won = match &t.previous {
        None => inner
            .owners
            .set_if(&t.key, t.tag.clone(), SetCondition::IfAbsent)
            .await
            .map(|r| r.written.then_some(r.revision)),
        // Even a record naming this very worker is confirmed by compare-and-set: the
        // replica may be stale (this worker handed the job off since).
        Some(o) => inner
            .owners
            .test_and_set(&t.key, o.clone(), t.tag.clone())
            .await
            .map(|r| r.written.then_some(r.revision)),
    };
    match won {
        Ok(Some(revision)) => {
            w.won_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(t.key.clone(), (revision, t.tag));
            let requeued = t.previous.is_some();
            worker::start(inner, w, t.key, t.record, requeued).await;
        }
        Ok(None) => free(&w),
        Err(e) => {
            free(&w);
            warn!(job = %t.key, error = %e, "could not take a job");
        }
    }
}

/// One pass: start what this node's workers should run, stop what they should not.
async fn reconcile(inner: &Arc<NodeInner>) {
    if inner.closed.load(Ordering::SeqCst) {
        return;
    }
    let dead = inner.dead.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let members = inner.workers.snapshot();
    let active: Vec<&str> = members
        .keys()
        .map(String::as_str)
        .filter(|w| !dead.contains(*w))
        .collect();
    let dirty = inner.take_dirty();
    // A full pass reads consistent snapshots. An incremental one reads only its keys, point
    // by point: a snapshot held while notices arrive would make the replica copy the whole
    // map on its next write (copy-on-write), an O(jobs) cost per dispatch.
    let jobs = dirty.all.then(|| inner.jobs.snapshot());
    let owners = dirty.all.then(|| inner.owners.snapshot());
    let job_of = |k: &str| match &jobs {
        Some(s) => s.get(k).cloned(),
        None => inner.jobs.get(k),
    };
    let owner_of = |k: &str| {
        match &owners {
            Some(s) => s.get(k).cloned(),
            None => inner.owners.get(k),
        }
        .map(|v| match std::str::from_utf8(&v) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(&v).into_owned(),
        })
    };
    // Read before the value it qualifies (a newer value than the revision is harmless).
    let owners_revision = || {
        owners
            .as_ref()
            .map_or_else(|| inner.owners.revision(), |s| s.revision())
    };
    // The jobs this pass may start, each with the worker it routes to (computed once: each
    // local worker takes those routed to it).
    let candidates: Vec<(String, Bytes, Option<&str>)> = match &jobs {
        Some(all) => all
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), route(k, active.iter().copied())))
            .collect(),
        None => dirty
            .keys
            .iter()
            .filter_map(|k| job_of(k).map(|v| (k.clone(), v, route(k, active.iter().copied()))))
            .collect(),
    };
    for w in inner.locals() {
        let fence_after = inner.options.worker_ttl * 2 / 3;
        if w.is_stopped() || w.is_fenced() || w.renewal_overdue(fence_after) {
            continue; // the watchdog or the keep-alive fences it
        }
        // Stop what this worker runs but should not.
        let running: Vec<String> = {
            let slots = w.slots();
            if dirty.all {
                slots
                    .iter()
                    .filter(|(_, s)| **s == Slot::Running)
                    .map(|(k, _)| k.clone())
                    .collect()
            } else {
                dirty
                    .keys
                    .iter()
                    .filter(|k| slots.get(*k) == Some(&Slot::Running))
                    .cloned()
                    .collect()
            }
        };
        for key in running {
            // Ownership is judged only from a replica that has seen our winning write.
            let won_at = w
                .won_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            let revision = owners_revision();
            let replica_current = won_at
                .as_ref()
                .is_some_and(|(r, _)| revision.epoch == r.epoch && revision.rev >= r.rev);
            let won_tag = won_at.map(|(_, t)| t);
            let release = if job_of(&key).is_none() {
                Some(Release::Delete)
            } else if replica_current && owner_of(&key) != won_tag {
                Some(Release::Nothing)
            } else if route(&key, active.iter().copied()).is_some_and(|t| t != w.id) {
                Some(Release::Handoff)
            } else {
                None
            };
            if let Some(release) = release {
                w.slots().insert(key.clone(), Slot::Stopping);
                tokio::spawn(worker::stop(inner.clone(), w.clone(), key, release));
            }
        }
        // Start what this worker should run.
        for (key, value, target) in &candidates {
            if *target != Some(w.id.as_str()) || w.slots().contains_key(key) || w.backing_off(key) {
                continue;
            }
            let Ok(record) = codec::decode::<JobRecord>("job record", value) else {
                warn!(job = %key, "ignoring a malformed job record");
                continue;
            };
            let previous = owner_of(key);
            let tag = w.tag();
            let confirm = match previous.as_deref() {
                None => false,
                Some(o) if o == RELEASED || o == tag => false,
                // Another owner (another worker, or an old generation of this one): only once
                // the backend confirms that identity's liveness is gone for good.
                Some(o) => {
                    let id = worker_of(o);
                    let stale_generation = members
                        .get(id)
                        .and_then(|v| codec::decode::<WorkerRecord>("worker record", v).ok())
                        .is_some_and(|r| format!("{id}#{}", r.generation) != o);
                    if !(dead.contains(id)
                        || !members.contains_key(id)
                        || stale_generation
                        || id == w.id)
                    {
                        continue; // the live owner releases it first
                    }
                    true
                }
            };
            // The round trips (liveness check, owner CAS, start) run in their own task, so
            // one pass takes many jobs at once (their CAS pipeline on the connection); the
            // `Starting` slot keeps later passes off the key meanwhile.
            w.slots().insert(key.clone(), Slot::Starting);
            tokio::spawn(take(
                inner.clone(),
                w.clone(),
                Take {
                    key: key.clone(),
                    record,
                    previous,
                    tag,
                    confirm,
                },
            ));
        }
    }
    // Owner records of jobs that no longer exist and whose owner is gone or released.
    let recorded: Vec<String> = match &owners {
        Some(all) => all.keys().cloned().collect(),
        None => dirty.keys.iter().cloned().collect(),
    };
    for key in &recorded {
        let Some(owner) = owner_of(key) else {
            continue;
        };
        if job_of(key).is_none()
            && (owner == RELEASED
                || (dead.contains(worker_of(&owner)) && inner.confirmed_dead(&owner).await))
        {
            let _ = inner.owners.test_and_delete(key, owner).await;
        }
    }
}
