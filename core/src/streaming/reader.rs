//! Readers: every reader sees every event of its streams, from its own in-memory cursors.
//!
//! Guarantees and fixes over the Go version:
//! - `Start::Newest` is resolved once, when the reader (or a stream) is added, so events
//!   added before the first read are not skipped (W3); `Start::At` is inclusive (W6);
//! - streams are added and removed by name, idempotently (W7), and take effect at once: the
//!   current blocking read is interrupted;
//! - `close` interrupts a blocked read promptly (W4), is idempotent and safe to call from
//!   anywhere (W8); no lock is held while delivering (W5);
//! - the read task starts with the first subscriber, so nothing is read before someone
//!   listens; entries that are not events are skipped with a warning, never a panic.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};
use tracing::{debug, warn, Instrument};

use super::{
    delivery::{EventReceiver, Subscribers},
    health::{ReadHealth, Tracker},
    mover::Mover,
    Event, Filter, Start, Stream,
};
use crate::{backend::EntryId, spans, Error, Result};

/// Options of a reader. Defaults are documented on each field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReaderOptions {
    /// Where to start on every stream given at creation. Default [`Start::Newest`].
    pub start: Start,
    /// Longest a single blocking read waits for new events. Default 5 s. It only bounds
    /// how often the loop wakes up idle; close and stream changes interrupt it at once.
    pub block: Duration,
    /// Most events read per stream per round trip. Default 1000.
    pub max_polled: usize,
    /// Capacity of each subscriber's queue. Default 1000.
    pub buffer: usize,
    /// Which events are delivered. Default [`Filter::All`].
    pub filter: Filter,
    /// First delay before retrying after a read error (doubling up to 5 s). Default 100 ms.
    pub retry_delay: Duration,
    /// How long reads may keep failing before [`Reader::health`] says so. Default 10 s.
    pub read_patience: Duration,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            start: Start::Newest,
            block: Duration::from_secs(5),
            max_polled: 1000,
            buffer: 1000,
            filter: Filter::All,
            retry_delay: Duration::from_millis(100),
            read_patience: Duration::from_secs(10),
        }
    }
}

impl ReaderOptions {
    /// Sets [`ReaderOptions::start`].
    pub fn with_start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }
    /// Sets [`ReaderOptions::block`] (at least 1 ms).
    pub fn with_block(mut self, d: Duration) -> Self {
        self.block = d.max(Duration::from_millis(1));
        self
    }
    /// Sets [`ReaderOptions::max_polled`] (at least 1).
    pub fn with_max_polled(mut self, n: usize) -> Self {
        self.max_polled = n.max(1);
        self
    }
    /// Sets [`ReaderOptions::buffer`] (at least 1).
    pub fn with_buffer(mut self, n: usize) -> Self {
        self.buffer = n.max(1);
        self
    }
    /// Sets [`ReaderOptions::filter`].
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
    /// Sets [`ReaderOptions::retry_delay`].
    pub fn with_retry_delay(mut self, d: Duration) -> Self {
        self.retry_delay = d.max(Duration::from_millis(1));
        self
    }
    /// Sets [`ReaderOptions::read_patience`].
    pub fn with_read_patience(mut self, d: Duration) -> Self {
        self.read_patience = d;
        self
    }
}

struct Cursor {
    stream: Stream,
    after: EntryId,
}

struct ReaderInner {
    options: ReaderOptions,
    cursors: Mutex<Vec<Cursor>>,
    subscribers: Subscribers,
    changed: tokio::sync::Notify,
    closed: AtomicBool,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    health: Mutex<Tracker>,
    /// Shares in the movers of the streams read (delayed events), until close.
    movers: Mutex<Vec<Mover>>,
}

/// A reader over one or more streams. Cheap to clone; clones share the reader.
#[derive(Clone)]
pub struct Reader {
    inner: Arc<ReaderInner>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("streams", &self.streams())
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// A reader of this stream, its start resolved now.
    pub async fn new_reader(&self, options: ReaderOptions) -> Result<Reader> {
        let after = options.start.resolve(self).await?;
        let (shutdown, _) = watch::channel(false);
        let health = Tracker::new(format!("reader of {:?}", self.name), options.read_patience);
        Ok(Reader {
            inner: Arc::new(ReaderInner {
                health: Mutex::new(health),
                options,
                cursors: Mutex::new(vec![Cursor {
                    stream: self.clone(),
                    after,
                }]),
                subscribers: Subscribers::default(),
                changed: tokio::sync::Notify::new(),
                closed: AtomicBool::new(false),
                shutdown,
                task: Mutex::new(None),
                movers: Mutex::new(vec![Mover::join(self)]),
            }),
        })
    }
}

impl Reader {
    fn cursors(&self) -> std::sync::MutexGuard<'_, Vec<Cursor>> {
        self.inner.cursors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed {
                what: "reader".into(),
            });
        }
        Ok(())
    }

    /// Whether the reader is reading: [`ReadHealth::Failing`] once every read has failed
    /// for longer than [`ReaderOptions::read_patience`] (the server is unreachable, full or
    /// refuses us), [`ReadHealth::Reading`] again after the next successful read.
    pub fn health(&self) -> watch::Receiver<ReadHealth> {
        self.inner
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .watch()
    }

    /// The names of the streams being read.
    pub fn streams(&self) -> Vec<String> {
        self.cursors()
            .iter()
            .map(|c| c.stream.name.clone())
            .collect()
    }

    /// A new subscriber: it receives every (unfiltered) event read from now on, in stream
    /// order per stream. The first subscriber starts the reading.
    ///
    /// Errors: [`Error::Closed`].
    pub fn subscribe(&self) -> Result<EventReceiver> {
        self.check_open()?;
        let rx = self.inner.subscribers.add(self.inner.options.buffer);
        let mut task = self.inner.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.is_none() {
            let shutdown = self.inner.shutdown.subscribe();
            let span = tracing::info_span!("pulse.reader", streams = ?self.streams());
            *task = Some(tokio::spawn(
                run(self.inner.clone(), shutdown).instrument(span),
            ));
        }
        Ok(rx)
    }

    /// Adds a stream (no-op if one with the same name is already read), starting at `start`
    /// or, by default, at the reader's configured start, resolved now.
    ///
    /// Errors: [`Error::Closed`], backend errors resolving `Newest`.
    pub async fn add_stream(&self, stream: &Stream, start: Option<Start>) -> Result<()> {
        self.check_open()?;
        if self.streams().contains(&stream.name) {
            return Ok(());
        }
        let after = start
            .unwrap_or(self.inner.options.start)
            .resolve(stream)
            .await?;
        {
            let mut c = self.cursors();
            if !c.iter().any(|c| c.stream.name == stream.name) {
                c.push(Cursor {
                    stream: stream.clone(),
                    after,
                });
                self.movers().push(Mover::join(stream));
            }
        }
        self.inner.changed.notify_one();
        Ok(())
    }

    /// Stops reading the stream named `name` (no-op if not read).
    pub fn remove_stream(&self, name: &str) {
        let mut removed = Vec::new();
        self.cursors().retain(|c| {
            let keep = c.stream.name != name;
            if !keep {
                removed.push(c.stream.key.clone());
            }
            keep
        });
        self.movers()
            .retain(|m| !removed.iter().any(|k| k == m.stream_key()));
        self.inner.changed.notify_one();
    }

    fn movers(&self) -> std::sync::MutexGuard<'_, Vec<Mover>> {
        self.inner.movers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops reading: interrupts the current read, ends every subscription once its queue
    /// is drained. Idempotent; returns when the read task has stopped. `Ok` in every case
    /// today, a `Result` so that every handle's `close` has one shape.
    pub async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let _ = self.inner.shutdown.send(true);
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.movers().clear();
        self.inner.subscribers.close();
        Ok(())
    }

    /// True once [`Reader::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}

impl ReaderInner {
    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn run(inner: Arc<ReaderInner>, mut shutdown: watch::Receiver<bool>) {
    let opts = inner.options.clone();
    let mut delay = opts.retry_delay;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (backend, request) = {
            let c = inner.cursors.lock().unwrap_or_else(|p| p.into_inner());
            let backend = c.first().map(|c| c.stream.backend.clone());
            (
                backend,
                c.iter()
                    .map(|c| (c.stream.key.clone(), c.after))
                    .collect::<Vec<_>>(),
            )
        };
        let Some(backend) = backend else {
            // Nothing to read: wait for a stream to be added.
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = inner.changed.notified() => continue,
            }
        };
        let read = tokio::select! {
            _ = shutdown.changed() => return,
            _ = inner.changed.notified() => continue,
            r = backend.stream_read(&request, opts.max_polled, Some(opts.block)) => r,
        };
        let batches = match read {
            Ok(b) => {
                delay = opts.retry_delay;
                inner.tracker().ok();
                b
            }
            Err(e) => {
                inner.tracker().failed(&e);
                debug!(error = %e, ?delay, "stream read failed; retrying");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        for batch in batches {
            let Some(last) = batch.entries.last().map(|e| e.id) else {
                continue;
            };
            let (name, delivered) = {
                let mut c = inner.cursors.lock().unwrap_or_else(|p| p.into_inner());
                match c.iter_mut().find(|c| c.stream.key == batch.stream) {
                    Some(cursor) => {
                        cursor.after = cursor.after.max(last);
                        (
                            cursor.stream.name.clone(),
                            cursor.stream.metrics.read.clone(),
                        )
                    }
                    None => continue, // removed meanwhile
                }
            };
            for entry in batch.entries {
                let id = entry.id;
                let event = match Event::from_entry(&name, None, entry) {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(stream = %name, %id, error = %e, "skipping an entry that is not an event");
                        continue;
                    }
                };
                if !opts.filter.matches(&event) {
                    continue;
                }
                let span = spans::receive(&name, None, "", id);
                spans::link_producer(&span, event.trace_parent.as_deref());
                if !inner
                    .subscribers
                    .deliver(event, &delivered, &mut shutdown)
                    .instrument(span)
                    .await
                {
                    return;
                }
            }
        }
    }
}
