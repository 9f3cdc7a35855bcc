//! The committer: one thread that owns the database and writes the journal into it.
//!
//! It sleeps until the journal has changes, takes all of them (every operation made
//! since its last take, whole: group commit), writes them in one transaction and
//! publishes how far the file has come ([`Progress`]). A failed transaction is retried
//! with the same changes (plus what came meanwhile) until it succeeds or the backend is
//! dropped; writers waiting meanwhile see why in [`Progress::failing`]. When the last
//! handle goes, the thread writes what is left, fsyncs and closes the file.
//!
//! After a failed write (a full disk, an I/O error) redb refuses every later call with
//! `PreviousIo` until the database is opened again, and opening it again goes back to its
//! last durable commit. So a failure closes the database; the next try opens it again and
//! writes everything since that commit: the failed changes and, under eventual durability,
//! the ones committed without an fsync since the last one, which the thread keeps until
//! an fsync covers them. Changes state values after them, so writing one twice is
//! harmless.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use pulse::{Error, Result};
use pulse_memory::{journal::Change, MemoryBackend};
use tokio::sync::watch;

use crate::{store::Store, Durability, RedbOptions};

/// How far the file has come, in journal positions.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// Changes up to here are written (committed, perhaps not yet fsynced).
    pub(crate) written: u64,
    /// Changes up to here are written and fsynced.
    pub(crate) durable: u64,
    /// Why the last transaction failed and since when, while it keeps failing.
    pub(crate) failing: Option<(String, Instant)>,
}

/// A wake-up for the thread, set from any thread (the journal calls it under its lock).
#[derive(Debug, Default)]
struct Signal {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Signal {
    fn notify(&self) {
        *self.set.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Sleeps until notified or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let (mut set, _) = self
            .cv
            .wait_timeout_while(set, timeout, |set| !*set)
            .unwrap_or_else(|p| p.into_inner());
        *set = false;
    }
}

/// The handle of the committer thread; dropping it drains and closes the file.
#[derive(Debug)]
pub(crate) struct Committer {
    signal: Arc<Signal>,
    /// The highest journal position a waiter wants fsynced.
    sync_to: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Opens the file, loads it into a journaled memory backend and starts the thread.
    pub(crate) fn start(
        path: &Path,
        options: &RedbOptions,
    ) -> Result<(Committer, MemoryBackend, watch::Receiver<Progress>)> {
        let mut store = Store::open(path, options.cache_bytes)?;
        // Compaction needs no transaction in flight: now, before anything else runs.
        store.compact()?;
        let (changes, expired) = store.load(crate::ops::wall_now_ms())?;
        if !expired.is_empty() {
            let gone: Vec<Change> = expired
                .into_iter()
                .map(|key| Change::Delete { key })
                .collect();
            store.write(&gone, true)?;
        }
        let signal = Arc::new(Signal::default());
        let wake = signal.clone();
        let mem = MemoryBackend::journaled(Arc::new(move || wake.notify()));
        mem.restore(changes);
        let (tx, rx) = watch::channel(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let sync_to = Arc::new(AtomicU64::new(0));
        let run = Run {
            sync_to: sync_to.clone(),
            store: Some(store),
            cache_bytes: options.cache_bytes,
            mem: mem.clone(),
            signal: signal.clone(),
            stop: stop.clone(),
            progress: tx,
            eventual: options.durability == Durability::Eventual,
            flush_interval: options.flush_interval,
            path: path.to_owned(),
        };
        let thread = std::thread::Builder::new()
            .name("pulse-redb-commit".into())
            .spawn(move || run.run())
            .map_err(|e| Error::backend("redb open", e.to_string()))?;
        let committer = Committer {
            signal,
            sync_to,
            stop,
            thread: Some(thread),
        };
        Ok((committer, mem, rx))
    }

    /// Asks the thread to have everything up to journal position `target` fsynced now,
    /// whatever the durability (a writer or [`crate::RedbBackend::sync`] waits for it).
    pub(crate) fn hurry(&self, target: u64) {
        self.sync_to.fetch_max(target, Ordering::SeqCst);
        self.signal.notify();
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.signal.notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the thread owns.
struct Run {
    /// The open database; `None` after a failed write, until it is opened again.
    store: Option<Store>,
    cache_bytes: usize,
    mem: MemoryBackend,
    signal: Arc<Signal>,
    stop: Arc<AtomicBool>,
    sync_to: Arc<AtomicU64>,
    progress: watch::Sender<Progress>,
    eventual: bool,
    flush_interval: Duration,
    path: PathBuf,
}

impl Run {
    fn run(mut self) {
        let mut last_fsync = Instant::now();
        // Committed without an fsync since the last one (eventual durability): written
        // again should the database have to be opened again before an fsync.
        let mut unsynced: Vec<Change> = Vec::new();
        let mut dirty = false;
        let mut carried: Vec<Change> = Vec::new();
        // Journal position of the last fsynced commit.
        let mut durable_at = 0;
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            let (mut changes, position) = self.mem.take_changes();
            // Somebody waits for an fsync this one has not covered yet.
            let wanted = self.sync_to.load(Ordering::SeqCst) > durable_at;
            if !carried.is_empty() {
                carried.append(&mut changes);
                changes = std::mem::take(&mut carried);
            }
            if changes.is_empty() {
                if dirty && (stopping || wanted || last_fsync.elapsed() >= self.flush_interval) {
                    match self.commit(&[], true, position) {
                        Ok(()) => {
                            (dirty, last_fsync, durable_at) = (false, Instant::now(), position);
                            unsynced.clear();
                        }
                        Err(_) => {
                            carried = std::mem::take(&mut unsynced);
                            dirty = false;
                            if stopping {
                                return;
                            }
                            self.signal.wait(Duration::from_millis(200));
                        }
                    }
                    continue;
                }
                if stopping {
                    return;
                }
                if wanted {
                    // Nothing is unsynced or unwritten: all up to here is durable (the
                    // journal moved without a change to write).
                    durable_at = position;
                    self.progress.send_modify(|p| {
                        p.written = p.written.max(position);
                        p.durable = p.durable.max(position);
                    });
                    continue;
                }
                let nap = if dirty {
                    self.flush_interval.saturating_sub(last_fsync.elapsed())
                } else {
                    Duration::from_secs(1)
                };
                self.signal.wait(nap);
                continue;
            }
            let fsync =
                !self.eventual || stopping || wanted || last_fsync.elapsed() >= self.flush_interval;
            match self.commit(&changes, fsync, position) {
                Ok(()) if fsync => {
                    (dirty, last_fsync, durable_at) = (false, Instant::now(), position);
                    unsynced.clear();
                }
                Ok(()) => {
                    dirty = true;
                    unsynced.extend(changes);
                }
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), error = %e, "pulse-redb: a commit failed; retrying");
                    // The database goes back to its last durable commit when opened again.
                    unsynced.append(&mut changes);
                    carried = std::mem::take(&mut unsynced);
                    dirty = false;
                    if stopping {
                        // Nobody is left to wait: the changes are lost with the process.
                        return;
                    }
                    self.signal.wait(Duration::from_millis(200));
                }
            }
        }
    }

    /// Writes one transaction (opening the database again first if a failure closed it),
    /// and publishes the progress or the failure.
    fn commit(&mut self, changes: &[Change], fsync: bool, position: u64) -> Result<()> {
        let outcome = match self.store.take() {
            Some(store) => Ok(store),
            None => Store::open(&self.path, self.cache_bytes),
        }
        .and_then(|store| {
            let written = store.write(changes, fsync);
            if written.is_ok() {
                self.store = Some(store);
            }
            // Else the store is dropped: redb takes nothing more after an I/O error.
            written
        });
        match outcome {
            Ok(()) => {
                self.progress.send_modify(|p| {
                    p.written = position;
                    if fsync {
                        p.durable = position;
                    }
                    p.failing = None;
                });
                Ok(())
            }
            Err(e) => {
                let why = e.to_string();
                self.progress.send_modify(|p| {
                    let since = p.failing.as_ref().map_or_else(Instant::now, |(_, at)| *at);
                    p.failing = Some((why, since));
                });
                Err(e)
            }
        }
    }
}
