//! Replicated maps: a named map mirrored in memory in every process that joins it.
//!
//! Reads are local and never touch the backend. Writes are atomic backend operations
//! that change the map, bump its revision and publish a notice in one step; every replica
//! applies notices in revision order, so all replicas converge to the backend's content.
//!
//! Guarantees:
//! - **Consistent join.** [`Map::join`] subscribes (confirmed) *before* it reads the
//!   map, and notices at or below the read's revision are ignored, so nothing committed
//!   after it is lost and nothing older is re-applied.
//! - **Any size.** A join or resync reads the map in bounded steps (no single command of
//!   ours holds the store for long, whatever the map's size) and makes the steps consistent
//!   with the notices that arrive meanwhile, so the replica it starts from is the map at
//!   one revision. Values over the notice budget travel without their value and are read
//!   by each replica ([`codec::NOTICE_VALUE_BUDGET`]).
//! - **No silent staleness.** After a lost subscription, a revision gap or regression, or a
//!   re-created or expired map, the replica reloads a snapshot and converges (see
//!   [`task`](self) docs in the source). A replica can lag, never stay behind.
//! - **Notifications never hide a reset.** Each subscriber gets every change (key and
//!   kind); a subscriber that falls behind gets one collapsed event with the strongest kind.
//! - **Concurrent writes share round trips.** A set goes straight to the backend while
//!   few writes of the map are in flight; beyond that, sets queue and go as one batch
//!   ([`map_set_many`](crate::backend::AtomicOps::map_set_many): one script call, one
//!   notice frame), each still atomic with its own condition, outcome and revision.
//! - **Read-your-write on demand.** [`Map::set_and_wait`] returns once the local replica
//!   reflects the write.
//! - **Close.** After [`Map::close`], writes fail with [`Error::Closed`] (except
//!   [`Map::reset`] and [`Map::destroy`], which are remote clean-up), reads keep the last
//!   content, subscribers end.
//!
//! ```
//! use pulse::rmap::{Map, MapOptions};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulse::Result<()> {
//! let backend = std::sync::Arc::new(pulse_memory::MemoryBackend::new());
//! let map = Map::join(backend.clone(), "settings", MapOptions::default()).await?;
//! let other = Map::join(backend, "settings", MapOptions::default()).await?;
//! map.set_and_wait("mode", "fast").await?;
//! assert_eq!(map.get("mode").as_deref(), Some(&b"fast"[..]));
//! let mut changes = other.subscribe()?;
//! map.increment("hits", 1).await?;
//! let event = changes.recv().await.expect("an event");
//! assert_eq!(event.key.as_deref(), Some("hits"));
//! # Ok(()) }
//! ```

mod batch;
mod events;
mod notices;
mod options;
mod replica;
mod snapshot;
mod state;
mod task;
mod typed;
mod writes;

use std::{
    collections::HashMap,
    ops::Deref,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock, Weak,
    },
};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, Instrument};

pub use events::{EventKind, MapEvent, MapSubscriber};
pub use options::MapOptions;
pub use state::MapState;

use crate::{
    backend::{
        DeleteCondition, DeleteOutcome, ListEdit, ListOutcome, MapTarget, MapWrite, Revision,
        SetCondition, SetOutcome,
    },
    codec,
    keys::validate_map_key,
    Backend, Error, Result,
};
use events::Slot;
use replica::{Applied, Replica};

/// An immutable snapshot of a map's content, cheap to take (no copy).
#[derive(Clone, Debug)]
pub struct MapSnapshot {
    content: Arc<HashMap<String, Bytes>>,
    revision: Revision,
}

impl MapSnapshot {
    /// The revision this snapshot reflects.
    pub fn revision(&self) -> Revision {
        self.revision
    }
}

impl Deref for MapSnapshot {
    type Target = HashMap<String, Bytes>;
    fn deref(&self) -> &Self::Target {
        &self.content
    }
}

/// Called with each change event of a replica, in order, from the task applying it (so it
/// must be quick and never block). Crate-internal: the pool marks the keys it must look
/// at this way, without a task and a queue per map.
pub(crate) type ChangeHook = Box<dyn Fn(&MapEvent) + Send + Sync>;

/// Where `set_and_wait` callers wait: the replica's revision, and whether it is closed.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    revision: Revision,
    closed: bool,
}

pub(crate) struct MapInner {
    name: String,
    backend: Arc<dyn Backend>,
    /// Sets go through here (group commit of concurrent writes).
    writes: Arc<batch::Batcher>,
    target: MapTarget,
    options: MapOptions,
    replica: RwLock<Replica>,
    progress: watch::Sender<Progress>,
    subscribers: Mutex<Vec<Weak<Slot>>>,
    hooks: Mutex<Vec<ChangeHook>>,
    closed: AtomicBool,
    shutdown: watch::Sender<bool>,
    /// The task applying notices; taken (and awaited) by the first [`Map::close`].
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: crate::telemetry::MapMetrics,
}

/// A handle on a replicated map. Clones share one replica.
#[derive(Clone)]
pub struct Map {
    inner: Arc<MapInner>,
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("name", &self.inner.name)
            .field("revision", &self.inner.revision())
            .finish_non_exhaustive()
    }
}

impl MapInner {
    fn revision(&self) -> Revision {
        self.replica
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .revision
    }

    fn is_locally_empty(&self) -> bool {
        self.replica
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .content
            .is_empty()
    }

    fn publish(&self, events: Vec<events::MapEvent>, revision: Revision) {
        if !events.is_empty() {
            let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            subs.retain(|w| w.strong_count() > 0);
            for slot in subs.iter().filter_map(Weak::upgrade) {
                for e in &events {
                    slot.push(e.clone());
                }
            }
            drop(subs);
            for hook in self.hooks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                events.iter().for_each(hook);
            }
        }
        self.progress.send_modify(|p| p.revision = revision);
    }

    /// Applies the notices of one frame, in order; true when a resync is needed instead
    /// (the notices before the one that needs it stay applied).
    fn apply(&self, notices: Vec<codec::MapNotice>) -> bool {
        let mut events = Vec::with_capacity(notices.len());
        let (resync, revision) = {
            let mut r = self.replica.write().unwrap_or_else(|p| p.into_inner());
            // A closed replica keeps its last content (checked under the lock, so nothing
            // applies after `close` returns).
            if self.closed.load(Ordering::SeqCst) {
                return false;
            }
            let mut resync = false;
            for notice in notices {
                match r.apply(notice) {
                    Applied::Stale => {}
                    Applied::Resync => {
                        resync = true;
                        break;
                    }
                    Applied::Event(e) => events.push(e),
                }
            }
            (resync, r.revision)
        };
        if !events.is_empty() {
            self.publish(events, revision);
        }
        resync
    }

    /// Replaces the replica by a snapshot, notifying the differences.
    fn replace(&self, next: Replica, kind: Option<&str>) {
        let (events, revision) = {
            let mut r = self.replica.write().unwrap_or_else(|p| p.into_inner());
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            let events = r.diff(&next, kind);
            *r = next;
            (events, r.revision)
        };
        self.publish(events, revision);
    }
}

impl Drop for MapInner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl Map {
    /// Joins (creating on first write) the map `name`: subscribes to its notices, loads a
    /// snapshot and starts applying changes in the background.
    ///
    /// Errors: [`Error::InvalidName`] for an invalid name (nothing contacted);
    /// [`Error::Connection`] (or another backend error) when the subscription or the read
    /// fails; [`Error::Timeout`] when five reads in a row could not be made consistent
    /// (the map was re-created during each, or its notices stopped arriving). Nothing is
    /// left behind: the subscription is dropped.
    #[tracing::instrument(level = "debug", name = "pulse.rmap.join", skip_all, fields(map = name))]
    pub async fn join(backend: Arc<dyn Backend>, name: &str, options: MapOptions) -> Result<Map> {
        let keys = options.keyspace.map(name)?;
        let target = MapTarget::new(keys.hash, keys.channel)
            .with_ttl(options.ttl)
            .with_max_value(options.max_value_size);
        Self::join_target(backend, name, target, options).await
    }

    /// Joins a map at explicit keys (used by the building blocks that lay out their own
    /// maps, e.g. a pool's maps under the pool's hash tag).
    pub(crate) async fn join_target(
        backend: Arc<dyn Backend>,
        name: &str,
        target: MapTarget,
        options: MapOptions,
    ) -> Result<Map> {
        let mut sub = backend
            .subscribe(std::slice::from_ref(&target.channel))
            .await?;
        let patience = snapshot::patience(options.check_interval);
        let mut attempts = 0;
        let replica = loop {
            attempts += 1;
            match snapshot::load(&*backend, &target.hash, &mut sub, patience).await? {
                Some(loaded) => break loaded.replica,
                // Re-created, or a notice went missing, while it was read: again, a few
                // times (each attempt is bounded by the map's size and `patience`).
                None if attempts < 5 => continue,
                None => {
                    return Err(Error::Timeout {
                        what: format!("a consistent read of map {name:?} ({attempts} attempts)"),
                    })
                }
            }
        };
        let (progress, _) = watch::channel(Progress {
            revision: replica.revision,
            closed: false,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let check_interval = options.check_interval;
        let inner = Arc::new(MapInner {
            name: name.to_owned(),
            writes: batch::Batcher::new(backend.clone(), target.clone()),
            backend,
            target,
            options,
            replica: RwLock::new(replica),
            progress,
            subscribers: Mutex::new(Vec::new()),
            hooks: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            shutdown,
            task: Mutex::new(None),
            metrics: crate::telemetry::MapMetrics::new(name),
        });
        let span = tracing::info_span!("pulse.rmap.replica", map = %name);
        let task = tokio::spawn(
            task::run(Arc::downgrade(&inner), sub, shutdown_rx, check_interval).instrument(span),
        );
        *inner.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        debug!(map = %name, revision = ?inner.revision(), "joined");
        Ok(Map { inner })
    }

    /// The map's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Replica> {
        self.inner.replica.read().unwrap_or_else(|p| p.into_inner())
    }

    // ----- local reads -----

    /// The value of `key` in the local replica (`Some(empty)` for an empty value).
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.read().content.get(key).cloned()
    }

    /// True when the local replica has `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.read().content.contains_key(key)
    }

    /// The keys of the local replica, in no particular order.
    pub fn keys(&self) -> Vec<String> {
        self.read().content.keys().cloned().collect()
    }

    /// Number of keys in the local replica.
    pub fn len(&self) -> usize {
        self.read().content.len()
    }

    /// True when the local replica is empty.
    pub fn is_empty(&self) -> bool {
        self.read().content.is_empty()
    }

    /// The whole local content at one revision, without copying it.
    pub fn snapshot(&self) -> MapSnapshot {
        let r = self.read();
        MapSnapshot {
            content: r.content.clone(),
            revision: r.revision,
        }
    }

    /// The revision the local replica reflects.
    pub fn revision(&self) -> Revision {
        self.inner.revision()
    }

    /// Subscribes to changes applied to the local replica, from now on.
    ///
    /// Errors: [`Error::Closed`] after [`Map::close`].
    pub fn subscribe(&self) -> Result<MapSubscriber> {
        self.check_open()?;
        let (sub, slot) = MapSubscriber::new(self.inner.options.event_buffer);
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&slot));
        // The map may have closed in between: never hand out a subscriber that never ends.
        if self.inner.closed.load(Ordering::SeqCst) {
            slot.close();
        }
        Ok(sub)
    }

    /// Calls `hook` with every change applied to the local replica from now on.
    pub(crate) fn on_change(&self, hook: ChangeHook) {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// Stops replicating: writes fail with [`Error::Closed`] (except reset and destroy),
    /// reads keep the last content, subscribers end and waiting `set_and_wait` calls fail.
    /// Returns once the background task has stopped. Idempotent (a second call returns at
    /// once); `Ok` in every case today, a `Result` so that every handle's `close` has one
    /// shape.
    pub async fn close(&self) -> Result<()> {
        self.shut();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        Ok(())
    }

    /// The synchronous part of [`Map::close`]: no notice is applied after it.
    fn shut(&self) {
        {
            // Taken under the replica lock: no notice is applied after this point.
            let _guard = self
                .inner
                .replica
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if self.inner.closed.swap(true, Ordering::SeqCst) {
                return;
            }
        }
        let _ = self.inner.shutdown.send(true);
        for slot in self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .filter_map(|w| w.upgrade())
        {
            slot.close();
        }
        self.inner.progress.send_modify(|p| p.closed = true);
        debug!(map = %self.inner.name, "closed");
    }

    /// True after [`Map::close`].
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}
