//! The committer: one thread that owns the database and writes the journal into it.
//!
//! It sleeps until the journal has changes, takes all of them (every operation made
//! since its last take, whole: group commit), writes them in one transaction and
//! publishes how far the file has come ([`Progress`]). A failed transaction is retried
//! with the same changes (plus what came meanwhile) until it succeeds or the backend is
//! dropped; writers waiting meanwhile see why in [`Progress::failing`]. When the last
//! handle goes, the thread writes what is left, fsyncs and closes the file.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
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
        let run = Run {
            store,
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
            stop,
            thread: Some(thread),
        };
        Ok((committer, mem, rx))
    }

    /// Asks the thread to look now (a writer waits for durability).
    pub(crate) fn hurry(&self) {
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
    store: Store,
    mem: MemoryBackend,
    signal: Arc<Signal>,
    stop: Arc<AtomicBool>,
    progress: watch::Sender<Progress>,
    eventual: bool,
    flush_interval: Duration,
    path: PathBuf,
}

impl Run {
    fn run(self) {
        let mut last_fsync = Instant::now();
        // Written without an fsync since the last one (eventual durability).
        let mut unsynced = false;
        let mut carried: Vec<Change> = Vec::new();
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            let (mut changes, position) = self.mem.take_changes();
            if !carried.is_empty() {
                carried.append(&mut changes);
                changes = std::mem::take(&mut carried);
            }
            if changes.is_empty() {
                if unsynced && (stopping || last_fsync.elapsed() >= self.flush_interval) {
                    if self.commit(&[], true, position).is_ok() {
                        unsynced = false;
                        last_fsync = Instant::now();
                    }
                    continue;
                }
                if stopping {
                    return;
                }
                let nap = if unsynced {
                    self.flush_interval.saturating_sub(last_fsync.elapsed())
                } else {
                    Duration::from_secs(1)
                };
                self.signal.wait(nap);
                continue;
            }
            let fsync = !self.eventual || stopping || last_fsync.elapsed() >= self.flush_interval;
            match self.commit(&changes, fsync, position) {
                Ok(()) => {
                    if fsync {
                        unsynced = false;
                        last_fsync = Instant::now();
                    } else {
                        unsynced = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), error = %e, "pulse-redb: a commit failed; retrying");
                    carried = changes;
                    if stopping {
                        // Nobody is left to wait: the changes are lost with the process.
                        return;
                    }
                    self.signal.wait(Duration::from_millis(200));
                }
            }
        }
    }

    /// Writes one transaction and publishes the progress (or the failure).
    fn commit(&self, changes: &[Change], fsync: bool, position: u64) -> Result<()> {
        match self.store.write(changes, fsync) {
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
