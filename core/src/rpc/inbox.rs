//! The caller's inbox: one stream per process (per backend handle and keyspace) that
//! every answer to its requests is added to, read by one reader, routed by request ID.
//!
//! Invariants: a request registers its ID ([`Inbox::expect`]) before it is sent, so no
//! answer can arrive unrouted; an answer for an ID nobody waits for (late, duplicate,
//! after a retry won) is counted and dropped. The inbox closes itself (its reader, and
//! the stream is deleted) after [`LINGER`] with no request in flight; a request arriving
//! then opens a new one. The inbox stream is created by its caller, which renews its
//! expiry ([`TTL`]) while open; responders add answers (trimmed to a bounded length) only
//! while it exists, so an inbox whose process died expires on its own and takes nothing
//! more.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex as StdMutex, OnceLock,
    },
    time::Duration,
};

use metrics::Counter;
use tokio::{
    sync::{mpsc, Mutex},
    time::Instant,
};
use tracing::debug;

use super::Signal;
use crate::{
    backend::EntryId,
    backend::Ttl,
    keys::Keyspace,
    streaming::{Event, Stream, StreamOptions},
    Backend, Error, Result,
};

/// How long an inbox stays open with nothing in flight.
const LINGER: Duration = Duration::from_secs(30);
/// Expiry of an inbox stream, renewed by its caller every `LINGER / 2`.
const TTL: Duration = Duration::from_secs(600);
/// Longest blocking read of the inbox (it only bounds how often an idle inbox wakes).
const BLOCK: Duration = Duration::from_secs(5);
/// About how many answers an inbox keeps.
const MAX_LEN: u64 = 10_000;
/// Every inbox name starts with this.
const PREFIX: &str = "_inbox.";
/// The name of the entry that creates an inbox stream.
const OPEN: &str = "open";

type Registry = Mutex<HashMap<(usize, String), Arc<Shared>>>;

fn registry() -> &'static Registry {
    static INBOXES: OnceLock<Registry> = OnceLock::new();
    INBOXES.get_or_init(Registry::default)
}

/// The stream of inbox `name` under `keyspace`, as callers and responders both open it.
pub(crate) fn stream(
    backend: Arc<dyn Backend>,
    keyspace: &Keyspace,
    name: &str,
    max_payload: usize,
) -> Result<Stream> {
    if !name.starts_with(PREFIX) {
        return Err(Error::InvalidArgument(format!(
            "{name:?} is not a request inbox"
        )));
    }
    let options = StreamOptions::default()
        .with_keyspace(keyspace.clone())
        .with_max_len(MAX_LEN)
        .with_max_payload(max_payload);
    let mut stream = Stream::new(backend, name, options)?;
    // One series for every inbox: their names are per process and per opening.
    stream.metrics = crate::telemetry::StreamMetrics::new(PREFIX);
    Ok(stream)
}

/// Makes sure the inbox stream exists and expires [`TTL`] from now: responders add to it
/// only if it exists, so an inbox whose process died (its expiry no longer renewed) or
/// that was deleted takes no more answers.
async fn keep(stream: &Stream) -> Result<()> {
    if !stream
        .backend
        .expire(stream.key(), Ttl::Sliding(TTL))
        .await?
    {
        stream.add(OPEN, bytes::Bytes::new()).await?;
        stream
            .backend
            .expire(stream.key(), Ttl::Sliding(TTL))
            .await?;
    }
    Ok(())
}

struct Shared {
    name: String,
    registry_key: (usize, String),
    pending: StdMutex<HashMap<String, mpsc::UnboundedSender<Signal>>>,
    last_used: StdMutex<Instant>,
    /// False once the routing task is gone (closed, or dropped with its runtime): a
    /// registry entry for a dead inbox is replaced, never joined.
    alive: AtomicBool,
}

/// Held by the routing task: however the task ends (its runtime shut down included), the
/// inbox is marked dead and its waiters learn it at once.
struct Alive(Arc<Shared>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
        self.0
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl Shared {
    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
            && self
                .last_used
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                >= LINGER
    }
}

/// A handle on this process's inbox for one service stream's keyspace.
pub(crate) struct Inbox(Arc<Shared>);

/// A request's place in the inbox: its answers arrive here; dropping it forgets the ID.
pub(crate) struct Waiting {
    id: String,
    rx: mpsc::UnboundedReceiver<Signal>,
    shared: Arc<Shared>,
}

impl Waiting {
    /// The next signal for this request; `None` when the inbox closed.
    pub(crate) async fn next(&mut self) -> Option<Signal> {
        self.rx.recv().await
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.shared.touch();
    }
}

impl Inbox {
    /// This process's inbox for `service`'s backend and keyspace, opened if needed.
    pub(crate) async fn join(service: &Stream) -> Result<Inbox> {
        let keyspace = &service.options.keyspace;
        let key = (
            Arc::as_ptr(&service.backend) as *const () as usize,
            keyspace.prefix().to_owned(),
        );
        let mut inboxes = registry().lock().await;
        if let Some(shared) = inboxes.get(&key).filter(|s| s.alive.load(Ordering::SeqCst)) {
            shared.touch();
            return Ok(Inbox(shared.clone()));
        }
        let name = format!("{PREFIX}{}", crate::ids::new_id());
        let stream = stream(
            service.backend.clone(),
            keyspace,
            &name,
            service.options.max_payload,
        )?;
        keep(&stream).await?;
        let cursor = crate::backend::stream_last_id(stream.backend.as_ref(), stream.key()).await?;
        let shared = Arc::new(Shared {
            name,
            registry_key: key.clone(),
            pending: StdMutex::new(HashMap::new()),
            last_used: StdMutex::new(Instant::now()),
            alive: AtomicBool::new(true),
        });
        inboxes.insert(key, shared.clone());
        let late = crate::telemetry::rpc_late_replies();
        let span = tracing::debug_span!("pulse.rpc.inbox", inbox = %shared.name);
        tokio::spawn(tracing::Instrument::instrument(
            route(shared.clone(), stream, cursor, late),
            span,
        ));
        Ok(Inbox(shared))
    }

    /// The inbox stream's name, for the request's header.
    pub(crate) fn name(&self) -> &str {
        &self.0.name
    }

    /// Registers request `id`: its answers are routed to the returned [`Waiting`].
    pub(crate) fn expect(&self, id: &str) -> Waiting {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), tx);
        self.0.touch();
        Waiting {
            id: id.to_owned(),
            rx,
            shared: self.0.clone(),
        }
    }
}

/// Routes the inbox's answers until it has been idle for [`LINGER`], then closes it.
/// It reads the stream itself (no reader and subscriber in between: answers are on the
/// request's critical path).
async fn route(shared: Arc<Shared>, stream: Stream, mut cursor: EntryId, late: Counter) {
    let _alive = Alive(shared.clone());
    let mut tick = tokio::time::interval(LINGER / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = Duration::from_millis(50);
    loop {
        let from = [(stream.key().to_owned(), cursor)];
        let read = tokio::select! {
            read = stream.backend.stream_read(&from, 1000, Some(BLOCK)) => read,
            _ = tick.tick() => {
                {
                    let mut inboxes = registry().lock().await;
                    if shared.idle() {
                        inboxes.remove(&shared.registry_key);
                        break;
                    }
                }
                if let Err(e) = keep(&stream).await {
                    debug!(error = %e, "renewing the inbox failed; retrying at the next tick");
                }
                continue;
            }
        };
        let batches = match read {
            Ok(batches) => {
                retry = Duration::from_millis(50);
                batches
            }
            Err(e) => {
                debug!(error = %e, ?retry, "reading the inbox failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        for entry in batches.into_iter().flat_map(|b| b.entries) {
            cursor = entry.id;
            let Ok(event) = Event::from_entry(stream.name(), None, entry) else {
                continue;
            };
            for (id, signal) in super::signals_of(event) {
                let to = shared
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                    .cloned();
                let answer = matches!(signal, Signal::Reply(_) | Signal::Error { .. });
                match to {
                    Some(tx) if tx.send(signal).is_ok() => {}
                    _ if answer => {
                        late.increment(1);
                        debug!(request = %id, "an answer nobody waits for (late, or a duplicate): dropped");
                    }
                    _ => {}
                }
            }
        }
    }
    {
        let mut inboxes = registry().lock().await;
        if inboxes
            .get(&shared.registry_key)
            .is_some_and(|s| Arc::ptr_eq(s, &shared))
        {
            inboxes.remove(&shared.registry_key);
        }
    }
    // Whoever still waits learns that the inbox is gone (`Error::Closed`), at once.
    shared
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    if let Err(e) = stream.destroy().await {
        debug!(error = %e, "deleting an idle inbox failed; it expires");
    }
}
