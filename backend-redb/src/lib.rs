//! # pulse-redb
//!
//! Pulse without Redis that keeps its data: every [`pulse::backend`] trait on a file of
//! the [`redb`] embedded database, so that one process (`pulse serve --backend
//! redb:data.redb`, or a service of yours) is a persistent message bus, map store and job
//! pool with nothing else to run.
//!
//! ## How it works
//! The data is served from memory and kept on disk, as Redis does with its append-only
//! file: the operations are those of [`pulse_memory`] (the same code, so the same
//! semantics: blocking reads wake at once, pub/sub is in-process with `Lost`/`Restored`),
//! run on a [journaled](pulse_memory::MemoryBackend::journaled) state whose changes a
//! committer thread writes into the file's tables ([`store`](crate) layout in
//! `docs/ARCHITECTURE.md`).
//! - **Writes return once durable.** With [`Durability::Immediate`] (the default) an
//!   operation that changed something returns after the transaction holding its changes
//!   was committed and fsynced. The committer takes every change made while it was busy
//!   into its next transaction (group commit), so many concurrent writers share an fsync.
//!   [`Durability::Eventual`] returns at once and fsyncs at least every
//!   [`RedbOptions::flush_interval`]: a crash may lose the last moments of acknowledged
//!   writes, never half of one, and the file stays consistent.
//! - **Reads never wait** for a commit. A read may see a write whose commit is still under
//!   way; if the process dies then, the write is lost, and its writer was never told `Ok`.
//! - **Atomicity survives a crash.** One operation's changes are journaled together and
//!   a transaction takes whole operations in order: after a crash the file holds a prefix
//!   of the operations, each whole (a map write with its revision, an ack with its
//!   pending entry, a job record with its owner).
//! - **Time is wall-clock on disk.** Expiry, lease, delivery and last-seen times are
//!   stored as wall-clock milliseconds, so a TTL or a lease set before a restart is
//!   honoured after it (a lease of a worker that died with the process lapses).
//! - **A failed write** (a full disk) is retried by the committer; writers wait up to
//!   [`RedbOptions::commit_timeout`] and then get [`Error::Connection`] (the operation
//!   is in memory and will be written if the disk recovers, or lost with the process).
//! - **One process owns the file**: a second process gets [`Error::InUse`] naming it;
//!   opens of the same path in one process share one backend.
//! - **The data set lives in memory** (as in Redis); the file is read once, at open.
//!   Deleted and trimmed data is freed in the file (redb reuses the pages), and the file is
//!   compacted when opened.
//!
//! ```
//! use pulse::backend::{AddOptions, EntryId, StreamOps};
//! use pulse_redb::{RedbBackend, RedbOptions};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulse::Result<()> {
//! let dir = std::env::temp_dir().join(format!("pulse-redb-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("data.redb");
//! let backend = RedbBackend::open(&path, RedbOptions::default()).await?;
//! let fields = vec![("n".into(), "hello".into())];
//! let id = backend.stream_add("events", fields, &AddOptions::default()).await?;
//! drop(backend);
//! // Opened again (another run of the program): the event is there.
//! let backend = RedbBackend::open(&path, RedbOptions::default()).await?;
//! let read = backend.stream_read(&[("events".into(), EntryId::ZERO)], 10, None).await?;
//! assert_eq!(Some(read[0].entries[0].id), id);
//! # drop(backend); std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(()) }
//! ```

mod committer;
mod ops;
mod store;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, Weak},
    time::Duration,
};

use pulse::{Error, Result};
use pulse_memory::MemoryBackend;
use tokio::sync::watch;

use committer::{Committer, Progress};

/// When a write is on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// A write returns once its transaction is committed and fsynced (the default).
    #[default]
    Immediate,
    /// A write returns at once; an fsync follows within
    /// [`RedbOptions::flush_interval`]. A crash may lose that much acknowledged work,
    /// never part of an operation.
    Eventual,
}

/// How a file is opened.
#[derive(Clone, Debug)]
pub struct RedbOptions {
    /// When writes are on disk.
    pub durability: Durability,
    /// redb's page cache, in bytes (default 64 MiB).
    pub cache_bytes: usize,
    /// How long a write waits for its commit (when the disk refuses) before it fails with
    /// [`Error::Connection`] (default 10 s).
    pub commit_timeout: Duration,
    /// With [`Durability::Eventual`], the longest time between fsyncs (default 200 ms).
    pub flush_interval: Duration,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            durability: Durability::Immediate,
            cache_bytes: 64 << 20,
            commit_timeout: Duration::from_secs(10),
            flush_interval: Duration::from_millis(200),
        }
    }
}

impl RedbOptions {
    /// These options with `durability`.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

/// The backend on one redb file. Clones (and other opens of the same path in this
/// process) share it; the file is closed when the last one is dropped.
#[derive(Clone, Debug)]
pub struct RedbBackend {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    options: RedbOptions,
    mem: MemoryBackend,
    progress: watch::Receiver<Progress>,
    committer: Committer,
}

/// The files open in this process, so that a second open shares the first.
fn open_files() -> &'static Mutex<HashMap<PathBuf, Weak<Shared>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

impl RedbBackend {
    /// Opens the file at `path`, creating it when missing, and loads what it holds.
    ///
    /// Errors: [`Error::InUse`] when another process has it open; [`Error::Malformed`]
    /// when it is not a Pulse file (or one of a layout this version does not know);
    /// [`Error::Backend`] for an I/O failure. Opening a path this process already has
    /// open returns the same backend (its options stay those of the first open).
    pub async fn open(path: impl AsRef<Path>, options: RedbOptions) -> Result<RedbBackend> {
        let path = std::path::absolute(path.as_ref())
            .map_err(|e| Error::Config(format!("{}: {e}", path.as_ref().display())))?;
        let path2 = path.clone();
        // Opening reads the whole file: off the async threads.
        tokio::task::spawn_blocking(move || Self::open_blocking(path2, options))
            .await
            .map_err(|e| Error::backend("redb open", e.to_string()))?
    }

    fn open_blocking(path: PathBuf, options: RedbOptions) -> Result<RedbBackend> {
        let mut open = open_files().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = open.get(&path).and_then(Weak::upgrade) {
            return Ok(RedbBackend { shared });
        }
        let (committer, mem, progress) = Committer::start(&path, &options)?;
        let shared = Arc::new(Shared {
            path: path.clone(),
            options,
            mem,
            progress,
            committer,
        });
        open.retain(|_, w| w.strong_count() > 0);
        open.insert(path, Arc::downgrade(&shared));
        Ok(RedbBackend { shared })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Fault injection for tests: every subscription sees its connection lost and restored
    /// (as [`MemoryBackend::interrupt_subscriptions`]).
    pub fn interrupt_subscriptions(&self) {
        self.shared.mem.interrupt_subscriptions();
    }

    /// Waits until everything written so far is on disk, whatever the durability (for
    /// [`Durability::Eventual`], a point to stop at).
    pub async fn sync(&self) -> Result<()> {
        self.settle(true).await
    }

    /// Waits for the commit of the changes made so far (see the crate docs).
    async fn settle(&self, durable: bool) -> Result<()> {
        let s = &self.shared;
        let target = s.mem.journal_position();
        let eventual = s.options.durability == Durability::Eventual && !durable;
        let mut progress = s.progress.clone();
        let reached = |p: &Progress| {
            if eventual {
                p.failing.is_none() || p.written >= target
            } else {
                p.durable >= target
            }
        };
        if reached(&progress.borrow()) {
            return Ok(());
        }
        if !eventual {
            s.committer.hurry(target);
        }
        // No timer: the committer republishes while a commit keeps failing, so a waiter
        // gives up by the failure's own age (a paused tokio clock cannot cut this short).
        let timeout = s.options.commit_timeout;
        let given_up = |p: &Progress| {
            p.failing
                .as_ref()
                .is_some_and(|(_, since)| since.elapsed() >= timeout)
        };
        let outcome = progress
            .wait_for(|p| reached(p) || given_up(p))
            .await
            .map(|p| (reached(&p), p.failing.clone()));
        match outcome {
            Ok((true, _)) => Ok(()),
            Ok((false, failing)) => Err(Error::connection(format!(
                "{}: not written within {timeout:?}: {}",
                s.path.display(),
                failing.map(|(why, _)| why).unwrap_or_default()
            ))),
            Err(_) => Err(Error::connection(format!(
                "{}: the committer stopped",
                s.path.display()
            ))),
        }
    }
}

impl pulse::Backend for RedbBackend {
    fn kind(&self) -> &'static str {
        "redb"
    }
}
