//! Sinks: consumer groups. Every instance of a sink (same name, any process) shares the
//! group's cursor: each event goes to one live instance, which must acknowledge it.
//!
//! How instances stay honest, and the Go weaknesses fixed on the way:
//! - **Liveness per stream and sink (W11, W12).** Each instance renews a lease
//!   `<stream key>:sink:<name>:alive:<consumer>` every `ack_grace / 4`, expiring after
//!   `ack_grace` by the *backend's* clock. Renewal runs in its own task, independent of
//!   delivery, so a slow subscriber never makes its instance look dead (W5).
//! - **Reclaim (W9, W10).** Per stream, one instance per `check_interval` (elected by a
//!   lease) moves to itself (a) every pending event of instances whose liveness lease
//!   expired, and (b) events pending on any instance for longer than `ack_grace`. It
//!   deletes a dead instance's consumer only once that consumer has nothing pending, so no
//!   delivered event is ever dropped from the pending list.
//! - **Filtered and malformed events are acknowledged (W1)**, never left pending; entries
//!   that are not events are logged and acknowledged, never a panic.
//! - **Lost streams (W2).** When the stream (and so the group) disappears — deleted,
//!   expired, server restarted empty — the read loop re-creates the group from the start
//!   of the new stream, with back-off, never a busy loop.
//! - **Start position (W14).** The start option applies when the group is created; when
//!   the group already exists it is ignored, logged, and reported by
//!   [`Sink::joined_existing_group`]. Removing a stream never destroys the group.
//! - **Acks** are batched: concurrent `ack` calls and the loop's own acks go out together,
//!   one `XACK` per stream per batch.
//!
//! This module holds the sink and its acks; its read loop and delivery are in
//! `streaming/sink_reads.rs`, the liveness lease and the reclaim pass in
//! `streaming/liveness.rs`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot, watch, Notify},
    task::JoinHandle,
};
use tracing::{debug, info, warn, Instrument};

use super::{
    delivery::{EventReceiver, Subscribers},
    health::{ReadHealth, Tracker},
    liveness::{alive_key, keepalive, reclaim_key, reclaim_loop},
    mover::Mover,
    sink_options::SinkOptions,
    Event, Start, Stream,
};
use crate::{
    backend::{EntryId, GroupStart},
    keys::validate_name,
    spans::{self, traced},
    telemetry::SinkMetrics,
    Backend, Error, Result,
};

/// One stream a sink instance consumes.
#[derive(Clone)]
pub(super) struct Member {
    pub(super) stream: Stream,
    joined_existing: bool,
    pub(super) metrics: SinkMetrics,
}

pub(super) struct AckRequest {
    pub(super) key: String,
    pub(super) ids: Vec<EntryId>,
    pub(super) done: Option<oneshot::Sender<Result<()>>>,
}

pub(super) struct SinkInner {
    pub(super) name: String,
    pub(super) consumer: String,
    pub(super) backend: Arc<dyn Backend>,
    pub(super) options: SinkOptions,
    members: Mutex<Vec<Member>>,
    /// Stream name → key and series, for every stream ever consumed (acks of removed
    /// streams work).
    keys: Mutex<HashMap<String, (String, SinkMetrics)>>,
    pub(super) subscribers: Subscribers,
    pub(super) acks: mpsc::UnboundedSender<AckRequest>,
    pub(super) changed: Notify,
    /// Woken by a new subscriber (a read loop waits for one when all have gone).
    pub(super) subscribed: Notify,
    closed: AtomicBool,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    started: AtomicBool,
    pub(super) health: Mutex<Tracker>,
    /// Shares in the movers of the streams consumed (delayed events), until close.
    movers: Mutex<Vec<Mover>>,
    /// Requests handed to handlers and not answered yet ([`crate::rpc`]).
    pub(super) responding: crate::rpc::Responding,
}

/// One instance of a sink. Cheap to clone; clones share the instance.
#[derive(Clone)]
pub struct Sink {
    pub(super) inner: Arc<SinkInner>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.inner.name)
            .field("consumer", &self.inner.consumer)
            .finish_non_exhaustive()
    }
}

fn group_start(start: Start) -> GroupStart {
    match start {
        Start::Newest => GroupStart::Newest,
        Start::Oldest => GroupStart::After(EntryId::ZERO),
        Start::After(id) => GroupStart::After(id),
        Start::At(t) => {
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis() as u64;
            GroupStart::After(EntryId::new(ms, 0).prev().unwrap_or(EntryId::ZERO))
        }
    }
}

impl Stream {
    /// Joins (creating if needed) the sink `name` on this stream as a new instance.
    ///
    /// Errors: [`Error::InvalidName`], backend errors.
    pub async fn new_sink(&self, name: &str, options: SinkOptions) -> Result<Sink> {
        options.check()?;
        validate_name("sink", name)?;
        let (acks, ack_rx) = mpsc::unbounded_channel();
        let (shutdown, _) = watch::channel(false);
        let health = Tracker::new(format!("sink {name:?}"), options.read_patience);
        let inner = Arc::new(SinkInner {
            health: Mutex::new(health),
            name: name.to_owned(),
            consumer: crate::ids::new_id(),
            backend: self.backend.clone(),
            options,
            members: Mutex::new(Vec::new()),
            keys: Mutex::new(HashMap::new()),
            subscribers: Subscribers::default(),
            acks,
            changed: Notify::new(),
            subscribed: Notify::new(),
            closed: AtomicBool::new(false),
            shutdown,
            tasks: Mutex::new(Vec::new()),
            started: AtomicBool::new(false),
            movers: Mutex::new(Vec::new()),
            responding: crate::rpc::Responding::default(),
        });
        let sink = Sink { inner };
        let start = sink.inner.options.start;
        sink.join_stream(self, start).await?;
        tokio::spawn(
            flush_acks(sink.inner.backend.clone(), sink.inner.name.clone(), ack_rx)
                .instrument(sink.loop_span("pulse.sink.acks")),
        );
        let keepalive = tokio::spawn(
            keepalive(sink.inner.clone(), sink.inner.shutdown.subscribe())
                .instrument(sink.loop_span("pulse.sink.keepalive")),
        );
        sink.tasks().push(keepalive);
        Ok(sink)
    }
}

impl Sink {
    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn members(&self) -> Vec<Member> {
        self.inner
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    pub(super) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed {
                what: format!("sink {:?}", self.inner.name),
            });
        }
        Ok(())
    }

    /// Creates the group (at `start`) and this instance's consumer and liveness on `stream`.
    async fn join_stream(&self, stream: &Stream, start: Start) -> Result<()> {
        let b = &self.inner.backend;
        let (name, consumer) = (&self.inner.name, &self.inner.consumer);
        if let Start::After(id) = start {
            super::stream::check_after(stream, id).await?;
        }
        let created = b
            .group_create(&stream.key, name, group_start(start), true)
            .await?;
        if !created && start != Start::Newest {
            info!(sink = %name, stream = %stream.name, "group exists: its position is kept, the start option is ignored");
        }
        b.group_create_consumer(&stream.key, name, consumer).await?;
        b.lease_acquire(
            &alive_key(stream, name, consumer),
            consumer,
            self.inner.options.ack_grace,
        )
        .await?;
        let metrics = self
            .inner
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(stream.name.clone())
            .or_insert_with(|| (stream.key.clone(), SinkMetrics::new(&stream.name, name)))
            .1
            .clone();
        let mut members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
        if !members.iter().any(|m| m.stream.name == stream.name) {
            members.push(Member {
                stream: stream.clone(),
                joined_existing: !created,
                metrics,
            });
            self.movers().push(Mover::join(stream));
        }
        Ok(())
    }

    /// The span a background loop of this instance runs in.
    fn loop_span(&self, name: &'static str) -> tracing::Span {
        tracing::info_span!(
            "pulse.sink.loop",
            otel.name = name,
            messaging.system = "pulse",
            messaging.consumer.group.name = %self.inner.name,
            messaging.client.id = %self.inner.consumer,
        )
    }

    /// The sink's name (the consumer group).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This instance's consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// The names of the streams consumed.
    pub fn streams(&self) -> Vec<String> {
        self.members().into_iter().map(|m| m.stream.name).collect()
    }

    /// Whether the group already existed on `stream` when this instance joined it (so the
    /// start option was not applied); `None` if the stream is not consumed.
    pub fn joined_existing_group(&self, stream: &str) -> Option<bool> {
        self.members()
            .into_iter()
            .find(|m| m.stream.name == stream)
            .map(|m| m.joined_existing)
    }

    /// Whether this instance is reading: [`ReadHealth::Failing`] once every read has failed
    /// for longer than [`SinkOptions::read_patience`] (the server is unreachable, full or
    /// refuses us), [`ReadHealth::Reading`] again after the next successful read.
    pub fn health(&self) -> watch::Receiver<ReadHealth> {
        self.inner.tracker().watch()
    }

    /// A new subscriber. It receives every event this instance receives; the first
    /// subscriber starts reading and reclaiming. While every subscriber has dropped its
    /// receiver the instance takes no new events (they go to other instances; those it
    /// holds are reclaimed by them after `ack_grace`), until someone subscribes again.
    ///
    /// Errors: [`Error::Closed`].
    pub fn subscribe(&self) -> Result<EventReceiver> {
        self.check_open()?;
        let rx = self.inner.subscribers.add(self.inner.options.buffer);
        self.inner.subscribed.notify_one();
        if !self.inner.started.swap(true, Ordering::SeqCst) {
            let read = tokio::spawn(
                super::sink_reads::read_loop(self.inner.clone(), self.inner.shutdown.subscribe())
                    .instrument(self.loop_span("pulse.sink.read")),
            );
            let mut tasks = self.tasks();
            tasks.push(read);
            if !self.inner.options.no_ack {
                tasks.push(tokio::spawn(
                    reclaim_loop(self.inner.clone(), self.inner.shutdown.subscribe())
                        .instrument(self.loop_span("pulse.sink.reclaim")),
                ));
            }
        }
        Ok(rx)
    }

    /// Acknowledges an event delivered by this sink. Works after [`Sink::close`]. Events
    /// of other sinks or readers are ignored.
    ///
    /// Errors: backend errors (the event stays pending and is redelivered later).
    pub async fn ack(&self, event: &Event) -> Result<()> {
        self.ack_many(std::slice::from_ref(event)).await
    }

    /// Acknowledges several events in one round trip per stream (sent directly; a single
    /// event joins the flusher's batch of concurrent acknowledgements).
    pub async fn ack_many(&self, events: &[Event]) -> Result<()> {
        // Stream key -> (stream name, series, IDs).
        let mut by_key: HashMap<String, (String, SinkMetrics, Vec<EntryId>)> = HashMap::new();
        self.inner.responding.finished(events);
        {
            let keys = self.inner.keys.lock().unwrap_or_else(|p| p.into_inner());
            for e in events
                .iter()
                .filter(|e| e.sink.as_deref() == Some(self.inner.name.as_str()))
            {
                if let Some((key, metrics)) = keys.get(&e.stream) {
                    let slot = by_key
                        .entry(key.clone())
                        .or_insert_with(|| (e.stream.clone(), metrics.clone(), Vec::new()));
                    slot.2.push(e.id);
                }
            }
        }
        for (key, (stream, metrics, ids)) in by_key {
            let n = ids.len();
            let span = spans::ack(&stream, &self.inner.name, n);
            traced(span, self.ack_one_stream(key, ids)).await?;
            metrics.acked.increment(n as u64);
        }
        crate::rpc::acknowledged(self, events).await;
        Ok(())
    }

    /// Acknowledges `ids` of the stream at `key`.
    async fn ack_one_stream(&self, key: String, ids: Vec<EntryId>) -> Result<()> {
        let b = &self.inner.backend;
        // A batch is already one XACK: send it from here. Single acks go through the
        // flusher, which joins concurrent ones into one call.
        if ids.len() > 1 {
            return b.group_ack(&key, &self.inner.name, &ids).await.map(|_| ());
        }
        let (tx, rx) = oneshot::channel();
        let req = AckRequest {
            key: key.clone(),
            ids,
            done: Some(tx),
        };
        match self.inner.acks.send(req) {
            Ok(()) => rx
                .await
                .unwrap_or_else(|_| Err(Error::connection("ack flusher stopped"))),
            Err(mpsc::error::SendError(req)) => b
                .group_ack(&key, &self.inner.name, &req.ids)
                .await
                .map(|_| ()),
        }
    }

    /// Consumes another stream (no-op if one with the same name is consumed), creating the
    /// group at `start` (default: the sink's start) if it does not exist.
    pub async fn add_stream(&self, stream: &Stream, start: Option<Start>) -> Result<()> {
        self.check_open()?;
        if self.streams().contains(&stream.name) {
            return Ok(());
        }
        self.join_stream(stream, start.unwrap_or(self.inner.options.start))
            .await?;
        self.inner.changed.notify_one();
        Ok(())
    }

    /// Stops consuming the stream named `name`. The group is kept (its cursor and pending
    /// events belong to the other instances); this instance's pending events there are
    /// reclaimed by another instance once its liveness for that stream lapses.
    pub async fn remove_stream(&self, name: &str) -> Result<()> {
        let removed = {
            let mut members = self.inner.members.lock().unwrap_or_else(|p| p.into_inner());
            let pos = members.iter().position(|m| m.stream.name == name);
            pos.map(|i| members.remove(i))
        };
        self.inner.changed.notify_one();
        if let Some(m) = removed {
            self.movers()
                .retain(|mover| mover.stream_key() != m.stream.key);
            self.leave(&m.stream).await?;
        }
        Ok(())
    }

    fn movers(&self) -> std::sync::MutexGuard<'_, Vec<Mover>> {
        self.inner.movers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream named `name`, if this instance consumes it.
    pub(crate) fn stream_named(&self, name: &str) -> Option<Stream> {
        self.members()
            .into_iter()
            .find(|m| m.stream.name == name)
            .map(|m| m.stream)
    }

    /// This instance's requests in flight.
    pub(crate) fn responding(&self) -> &crate::rpc::Responding {
        &self.inner.responding
    }

    /// Gives up this instance's place on `stream`: deletes its consumer if nothing is
    /// pending, and releases its liveness so others reclaim what is pending at once.
    async fn leave(&self, stream: &Stream) -> Result<()> {
        let b = &self.inner.backend;
        let (name, consumer) = (&self.inner.name, &self.inner.consumer);
        match b
            .group_pending(&stream.key, name, Some(consumer), EntryId::ZERO, 1)
            .await
        {
            Ok(p) if p.is_empty() => {
                b.group_delete_consumer(&stream.key, name, consumer).await?;
            }
            Ok(_) | Err(Error::NoGroup { .. }) => {}
            Err(e) => return Err(e),
        }
        b.lease_release(&alive_key(stream, name, consumer), consumer)
            .await?;
        // Another instance may reclaim at once (the lease outlasts an idle reclaimer's wait).
        b.lease_release(&reclaim_key(stream, name), consumer)
            .await?;
        Ok(())
    }

    /// Stops this instance: interrupts the current read, stops reclaiming and renewing
    /// liveness, ends the subscriptions, and leaves every stream (see
    /// [`Sink::remove_stream`]). Events delivered but not acknowledged are redelivered to
    /// another instance. Idempotent.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let _ = self.inner.shutdown.send(true);
        let tasks: Vec<JoinHandle<()>> = self.tasks().drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        self.movers().clear();
        self.inner.responding.stop();
        self.inner.subscribers.close();
        let mut first_err = None;
        for m in self.members() {
            if let Err(e) = self.leave(&m.stream).await {
                first_err.get_or_insert(e);
            }
        }
        debug!(sink = %self.inner.name, consumer = %self.inner.consumer, "closed");
        first_err.map_or(Ok(()), Err)
    }

    /// Fault injection for tests: stops this instance the way a killed process stops —
    /// no more reads, reclaims or liveness renewals, and nothing released or deleted.
    /// Its pending events are reclaimed by another instance once its liveness lapses.
    #[doc(hidden)]
    pub async fn simulate_crash(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let _ = self.inner.shutdown.send(true);
        let tasks: Vec<JoinHandle<()>> = self.tasks().drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        self.inner.responding.stop(); // a dead process sends no heartbeats
        self.inner.subscribers.close();
    }

    /// True once [`Sink::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}

/// Sends queued acknowledgements in batches until the sink is dropped.
async fn flush_acks(
    backend: Arc<dyn Backend>,
    group: String,
    mut rx: mpsc::UnboundedReceiver<AckRequest>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut by_key: HashMap<String, Vec<EntryId>> = HashMap::new();
        for r in &batch {
            by_key.entry(r.key.clone()).or_default().extend(&r.ids);
        }
        let mut failed: HashMap<String, Error> = HashMap::new();
        for (key, ids) in by_key {
            if let Err(e) = backend.group_ack(&key, &group, &ids).await {
                warn!(sink = %group, error = %e, "ack failed; the events will be redelivered");
                failed.insert(key, e);
            }
        }
        for r in batch {
            if let Some(done) = r.done {
                let res = match failed.get(&r.key) {
                    Some(e) => Err(e.for_each_waiter()),
                    None => Ok(()),
                };
                let _ = done.send(res);
            }
        }
    }
}

impl SinkInner {
    pub(super) fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of the instance's shutdown signal.
    pub(super) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub(super) fn members(&self) -> Vec<Member> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
