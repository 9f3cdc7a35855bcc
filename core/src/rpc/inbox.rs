//! The caller's inbox: one stream per process (per backend handle and keyspace) that
//! every answer to its requests is added to, read by one reader, routed by request ID.
//!
//! Invariants: a request registers its ID ([`Inbox::expect`]) before it is sent, so no
//! answer can arrive unrouted; an answer for an ID nobody waits for (late, duplicate,
//! after a retry won) is counted and dropped. The inbox closes itself (its reader, and
//! the stream is deleted) after [`LINGER`] with no request in flight; a request arriving
//! then opens a new one. Answers are added with a sliding expiry ([`TTL`]) and a bounded
//! length, so an inbox whose process died expires on its own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex as StdMutex, OnceLock},
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
    backend::Ttl,
    keys::Keyspace,
    streaming::{EventReceiver, Reader, ReaderOptions, Start, Stream, StreamOptions},
    Backend, Error, Result,
};

/// How long an inbox stays open with nothing in flight.
const LINGER: Duration = Duration::from_secs(30);
/// Expiry of an inbox stream after its last answer.
pub(crate) const TTL: Duration = Duration::from_secs(600);
/// About how many answers an inbox keeps.
const MAX_LEN: u64 = 10_000;
/// Every inbox name starts with this.
pub(crate) const PREFIX: &str = "_inbox.";

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
        .with_ttl(Ttl::Sliding(TTL))
        .with_max_payload(max_payload);
    Stream::new(backend, name, options)
}

struct Shared {
    name: String,
    registry_key: (usize, String),
    pending: StdMutex<HashMap<String, mpsc::UnboundedSender<Signal>>>,
    last_used: StdMutex<Instant>,
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
        if let Some(shared) = inboxes.get(&key) {
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
        let reader = stream
            .new_reader(ReaderOptions::default().with_start(Start::Newest))
            .await?;
        let events = reader.subscribe()?;
        let shared = Arc::new(Shared {
            name,
            registry_key: key.clone(),
            pending: StdMutex::new(HashMap::new()),
            last_used: StdMutex::new(Instant::now()),
        });
        inboxes.insert(key, shared.clone());
        let late = crate::telemetry::rpc_late_replies();
        let span = tracing::debug_span!("pulse.rpc.inbox", inbox = %shared.name);
        tokio::spawn(tracing::Instrument::instrument(
            route(shared.clone(), stream, reader, events, late),
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
async fn route(
    shared: Arc<Shared>,
    stream: Stream,
    reader: Reader,
    mut events: EventReceiver,
    late: Counter,
) {
    let mut tick = tokio::time::interval(LINGER / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
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
            _ = tick.tick() => {
                let mut inboxes = registry().lock().await;
                if shared.idle() {
                    inboxes.remove(&shared.registry_key);
                    break;
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
    let _ = reader.close().await;
    if let Err(e) = stream.destroy().await {
        debug!(error = %e, "deleting an idle inbox failed; it expires");
    }
}
