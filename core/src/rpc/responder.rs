//! The responder's side: a sink member hands a request to its handler, sends heartbeats
//! while the handler works (the first says it accepted it), and carries its answer to the
//! caller's inbox ([`Sink::reply`], [`Sink::reply_error`]).
//!
//! Invariants: a request past its deadline is never handed to a handler (the sink
//! acknowledges it instead); heartbeats for a request stop when it is answered or
//! acknowledged, when its deadline passes, or when the sink closes — so a caller sees them
//! stop when the responder dies; when every subscription it was delivered to ended
//! without an answer (the handler's task panicked or dropped its receiver), the caller is
//! told at the next heartbeat tick (`abandoned`) and aborts that attempt at once; an answer is added to the inbox before the request is
//! acknowledged, so a crash in between redelivers the request rather than losing the
//! answer (the caller keeps the first answer and drops a second).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use tokio::{
    sync::{mpsc::WeakSender, Notify},
    task::JoinHandle,
    time::Instant,
};
use tracing::debug;

use super::{
    cancel::{self, CancelState, Cancellation},
    inbox, ABANDONED_NAME, ACCEPT, CODE, HEARTBEAT, HEARTBEAT_NAME, ID, INBOX, RESPONDER,
};
use crate::{
    backend::{EntryId, PubSubEvent},
    streaming::{Event, NewEvent, Sink, Stream},
    Backend, Error, Result,
};

/// Longest error code of [`Sink::reply_error`], in bytes.
const MAX_CODE: usize = 64;

struct InFlight {
    id: String,
    inbox: Stream,
    deadline: SystemTime,
    every: Duration,
    next: Instant,
    /// Where the request is pending: (stream key, group, consumer).
    pending: (String, String, String),
    /// Fired when the caller cancels or the deadline passes; a cancelled request sends
    /// no heartbeats and its answer is dropped.
    cancel: Arc<CancelState>,
    /// The subscribers it was delivered to: once none listens (the handler's task ended
    /// without answering — it panicked, or dropped its receiver), nobody will answer.
    watchers: Vec<WeakSender<Event>>,
}

impl InFlight {
    fn cancelled(&self) -> bool {
        Cancellation::of(self.cancel.clone()).is_cancelled()
    }

    /// True once no subscriber it was delivered to listens any more.
    fn abandoned(&self) -> bool {
        self.watchers
            .iter()
            .all(|w| w.upgrade().is_none_or(|tx| tx.is_closed()))
    }
}

#[derive(Default)]
struct State {
    /// By (stream name, entry ID) of the request event.
    in_flight: HashMap<(String, EntryId), InFlight>,
    task: Option<JoinHandle<()>>,
    /// When the heartbeat task wakes next (`None`: when told), so a new request wakes it
    /// only if it needs a heartbeat sooner.
    wakes_at: Option<Instant>,
    /// Listeners on the cancel channels, by service stream key (module `cancel`).
    listeners: HashMap<String, JoinHandle<()>>,
    /// Request IDs cancelled recently, until their deadline: a request read just before
    /// its caller withdrew it is not handed to a handler.
    recent: HashMap<String, SystemTime>,
}

impl State {
    /// Request `id` was cancelled: its runs here stop (heartbeats, answer), and a copy
    /// read later is not delivered.
    fn cancel(&mut self, id: &str, deadline: SystemTime) {
        let now = SystemTime::now();
        self.recent.retain(|_, until| *until > now);
        if deadline > now {
            self.recent.insert(id.to_owned(), deadline);
        }
        for f in self.in_flight.values().filter(|f| f.id == id) {
            f.cancel.cancel();
        }
    }
}

/// A sink member's requests in flight and their heartbeats.
#[derive(Default)]
pub(crate) struct Responding {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl Drop for Responding {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a sink does with an event it is about to deliver.
pub(crate) enum Delivery {
    /// Hand it to a subscriber.
    Deliver,
    /// Acknowledge it without delivering: a request past its deadline.
    Expired,
}

impl Responding {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called as `event` is about to reach a handler of sink member `consumer` reading
    /// `stream`: a request past its deadline is not delivered; another request is
    /// answered *accepted* and kept alive with heartbeats until answered.
    pub(crate) fn on_delivery(
        &self,
        backend: &Arc<dyn Backend>,
        stream: &Stream,
        consumer: &str,
        event: &Event,
        watchers: Vec<WeakSender<Event>>,
    ) -> Delivery {
        let (Some(id), Some(inbox_name)) = (event.header(ID), event.header(INBOX)) else {
            return Delivery::Deliver;
        };
        let deadline = event.deadline().unwrap_or(SystemTime::UNIX_EPOCH);
        if deadline <= SystemTime::now() {
            debug!(request = %id, stream = %stream.name(), "a request past its deadline: acknowledged, not handled");
            return Delivery::Expired;
        }
        let Ok(inbox) = inbox::stream(
            backend.clone(),
            &stream.options.keyspace,
            inbox_name,
            stream.options.max_payload,
        ) else {
            return Delivery::Deliver; // its answer will say what is wrong
        };
        let every = event
            .header(HEARTBEAT)
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::from_secs(1), Duration::from_millis)
            .max(Duration::from_millis(10));
        // The first heartbeat says "accepted": soon enough for the caller's accept
        // timeout, and not at all when the handler answers first.
        let first = event
            .header(ACCEPT)
            .and_then(|ms| ms.parse::<u64>().ok())
            .map_or(every, |ms| every.min(Duration::from_millis(ms / 2)));
        let first_at = Instant::now() + first;
        let mut state = self.lock();
        // Checked under the lock that registers it, so a cancel is either seen here or
        // finds the request registered.
        if state.recent.contains_key(id) {
            debug!(request = %id, stream = %stream.name(), "a request its caller cancelled: acknowledged, not handled");
            return Delivery::Expired;
        }
        state.in_flight.insert(
            (event.stream.clone(), event.id),
            InFlight {
                id: id.to_owned(),
                inbox,
                deadline,
                every,
                next: first_at,
                pending: (
                    stream.key().to_owned(),
                    event.sink.clone().unwrap_or_default(),
                    consumer.to_owned(),
                ),
                cancel: Arc::default(),
                watchers,
            },
        );
        if !state.listeners.contains_key(stream.key()) {
            let task = tokio::spawn(listen(stream.clone(), self.state.clone()));
            state.listeners.insert(stream.key().to_owned(), task);
        }
        if state.task.is_none() {
            state.task = Some(tokio::spawn(beat(
                backend.clone(),
                self.state.clone(),
                self.changed.clone(),
            )));
        }
        let sooner = state.wakes_at.is_none_or(|at| first_at < at);
        drop(state);
        if sooner {
            self.changed.notify_one();
        }
        Delivery::Deliver
    }

    /// `events` were answered or acknowledged: their heartbeats stop.
    pub(crate) fn finished(&self, events: &[Event]) {
        let mut state = self.lock();
        if state.in_flight.is_empty() {
            return;
        }
        for e in events {
            state.in_flight.remove(&(e.stream.clone(), e.id));
        }
    }

    /// Whether the caller of `event` still waits (see [`Sink::cancellation`]).
    pub(crate) fn cancellation(&self, event: &Event) -> Cancellation {
        let state = self.lock();
        match state.in_flight.get(&(event.stream.clone(), event.id)) {
            Some(f) => Cancellation::of(f.cancel.clone()),
            None => Cancellation::default(),
        }
    }

    /// Whether `event` is a request in flight here whose caller cancelled it (its answer
    /// is for nobody).
    fn is_cancelled(&self, event: &Event) -> bool {
        self.lock()
            .in_flight
            .get(&(event.stream.clone(), event.id))
            .is_some_and(InFlight::cancelled)
    }

    /// The sink closes: every heartbeat and cancel listener stops.
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.in_flight.clear();
        if let Some(task) = state.task.take() {
            task.abort();
        }
        for (_, task) in state.listeners.drain() {
            task.abort();
        }
    }
}

/// Sends the heartbeats that are due, until stopped. With each, the request's pending
/// entry is marked fresh (idle 0), so a handler working past the sink's `ack_grace` is not
/// taken for a stuck one and redelivered while it still shows signs of life; once its
/// deadline passes (or the process dies) this stops and the usual reclaim applies.
async fn beat(backend: Arc<dyn Backend>, state: Arc<Mutex<State>>, changed: Arc<Notify>) {
    loop {
        let mut abandoned = Vec::new();
        let (due, next) = {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            let now = (Instant::now(), SystemTime::now());
            st.in_flight.retain(|_, f| {
                if f.deadline <= now.1 {
                    f.cancel.cancel(); // the caller stopped waiting
                    return false;
                }
                if f.abandoned() && !f.cancelled() {
                    // Its handler is gone: the caller is told (it aborts this attempt and
                    // may retry at once), heartbeats stop, and the request is reclaimed
                    // after the ack grace unless the caller withdrew it.
                    debug!(request = %f.id, "the handler's subscription ended without an answer");
                    abandoned.push((f.inbox.clone(), f.id.clone()));
                    return false;
                }
                true
            });
            let mut due = Vec::new();
            for ((_, entry), f) in st.in_flight.iter_mut() {
                if f.next <= now.0 && !f.cancelled() {
                    f.next = now.0 + f.every;
                    due.push((f.inbox.clone(), f.id.clone(), f.pending.clone(), *entry));
                }
            }
            // A cancelled request wakes the task only at its deadline, to be forgotten.
            let next = st
                .in_flight
                .values()
                .map(|f| {
                    if f.cancelled() {
                        Instant::now() + f.deadline.duration_since(now.1).unwrap_or_default()
                    } else {
                        f.next
                    }
                })
                .min();
            st.wakes_at = next;
            (due, next)
        };
        for (inbox, id) in abandoned {
            let told = NewEvent::new(ABANDONED_NAME, Bytes::new()).with_header(ID, id);
            if let Err(e) = inbox.add_if_exists(told).await {
                debug!(error = %e, "telling a caller its request was abandoned failed; it aborts without heartbeats");
            }
        }
        // One heartbeat entry per inbox, listing its requests.
        let mut fresh: HashMap<(String, String, String), Vec<EntryId>> = HashMap::new();
        let mut by_inbox: HashMap<String, (Stream, String)> = HashMap::new();
        for (inbox, id, pending, entry) in due {
            let ids = &mut by_inbox
                .entry(inbox.key().to_owned())
                .or_insert_with(|| (inbox, String::new()))
                .1;
            ids.push_str(&id);
            ids.push('\n');
            fresh.entry(pending).or_default().push(entry);
        }
        for (inbox, ids) in by_inbox.into_values() {
            if let Err(e) = inbox
                .add_if_exists(NewEvent::new(HEARTBEAT_NAME, ids))
                .await
            {
                debug!(error = %e, "a heartbeat failed; the next one may pass");
            }
        }
        for ((key, group, consumer), ids) in fresh {
            if let Err(e) = backend
                .group_set_idle(&key, &group, &consumer, &ids, Duration::ZERO)
                .await
            {
                debug!(error = %e, "keeping requests in flight fresh failed");
            }
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = changed.notified() => {}
                }
            }
            None => changed.notified().await,
        }
    }
}

/// Listens on `stream`'s cancel channel for as long as the sink member lives (aborted by
/// [`Responding::stop`]). Once subscribed, and again each time a lost subscription is
/// back, requests in flight whose entry left the stream meanwhile (their caller withdrew
/// them) are cancelled: a cancel published while nobody listened is not missed.
async fn listen(stream: Stream, state: Arc<Mutex<State>>) {
    let channel = cancel::channel(stream.key());
    let mut retry = Duration::from_millis(100);
    let mut sub = loop {
        match stream
            .backend
            .subscribe(std::slice::from_ref(&channel))
            .await
        {
            Ok(sub) => break sub,
            Err(e) => {
                debug!(stream = %stream.name(), error = %e, ?retry, "subscribing to cancels failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
    };
    recheck(&stream, &state).await;
    while let Some(event) = sub.recv().await {
        match event {
            PubSubEvent::Message { payload, .. } => {
                if let Some((id, deadline)) = cancel::parse(&payload) {
                    lock(&state).cancel(&id, deadline);
                }
            }
            PubSubEvent::Lost => {}
            PubSubEvent::Restored => recheck(&stream, &state).await,
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Cancels the requests in flight of `stream` whose entry is no longer in it.
async fn recheck(stream: &Stream, state: &Mutex<State>) {
    let live: Vec<(EntryId, Arc<CancelState>)> = lock(state)
        .in_flight
        .iter()
        .filter(|(_, f)| f.pending.0 == stream.key() && !f.cancelled())
        .map(|((_, entry), f)| (*entry, f.cancel.clone()))
        .collect();
    for (entry, cancel) in live {
        match stream
            .backend
            .stream_range(stream.key(), entry, entry, Some(1))
            .await
        {
            Ok(found) if found.is_empty() => cancel.cancel(),
            Ok(_) => {}
            Err(e) => {
                debug!(stream = %stream.name(), error = %e, "checking a request in flight failed")
            }
        }
    }
}

/// Checks that `code` can name an error.
fn check_code(code: &str) -> Result<()> {
    if code.is_empty() || code.len() > MAX_CODE || code.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "an error code is 1 to {MAX_CODE} bytes without control characters"
        )));
    }
    Ok(())
}

impl Sink {
    /// Answers the request `event` (delivered by this sink) with `payload`, then
    /// acknowledges it. The caller's [`Stream::request`] returns it; if the caller gave up
    /// already, it is dropped there.
    ///
    /// Errors: `InvalidArgument` (not a request, or delivered by another sink),
    /// `PayloadTooLarge` (the service stream's `max_payload`), `Connection` (the answer
    /// may or may not have reached the inbox; the request stays pending and is redelivered).
    pub async fn reply(&self, event: &Event, payload: impl Into<Bytes>) -> Result<()> {
        self.answer(event, NewEvent::new(super::REPLY_NAME, payload))
            .await
    }

    /// [`Sink::reply`] with headers for the caller ([`Reply::headers`](super::Reply::headers)).
    pub async fn reply_with_headers(
        &self,
        event: &Event,
        payload: impl Into<Bytes>,
        headers: Vec<(String, String)>,
    ) -> Result<()> {
        let mut answer = NewEvent::new(super::REPLY_NAME, payload);
        for (name, value) in headers {
            if name.starts_with("pulse.rpc.") {
                return Err(Error::InvalidArgument(
                    "headers named pulse.rpc.* are the answer's own".into(),
                ));
            }
            answer = answer.with_header(name, value);
        }
        self.answer(event, answer).await
    }

    /// Whether the caller of request `event` (delivered by this sink, not answered yet)
    /// still waits for the answer: the handle fires when the caller cancels (drops its
    /// future, or gives up after its timeout or retries) and when the request's deadline
    /// passes; stop the work then, the answer would be dropped. For an event that is not
    /// a request in flight here, a handle that never fires.
    pub fn cancellation(&self, event: &Event) -> Cancellation {
        self.responding().cancellation(event)
    }

    /// Answers the request `event` with an error, which the caller gets as
    /// [`Error::Remote`] with this `code` (1 to 64 bytes) and `message`; then acknowledges
    /// it. Errors: as [`Sink::reply`].
    pub async fn reply_error(&self, event: &Event, code: &str, message: &str) -> Result<()> {
        check_code(code)?;
        let answer = NewEvent::new(
            super::ERROR_NAME,
            Bytes::copy_from_slice(message.as_bytes()),
        )
        .with_header(CODE, code);
        self.answer(event, answer).await
    }

    async fn answer(&self, event: &Event, answer: NewEvent) -> Result<()> {
        if event.sink.as_deref() != Some(self.name()) {
            return Err(Error::InvalidArgument(format!(
                "event {} was not delivered by sink {:?}",
                event.id,
                self.name()
            )));
        }
        let (Some(id), Some(inbox_name)) = (event.header(ID), event.header(INBOX)) else {
            return Err(Error::InvalidArgument(format!(
                "event {} is not a request: there is nobody to answer",
                event.id
            )));
        };
        let service = self.stream_named(&event.stream).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "sink {:?} does not read {:?}",
                self.name(),
                event.stream
            ))
        })?;
        let inbox = inbox::stream(
            service.backend.clone(),
            &service.options.keyspace,
            inbox_name,
            service.options.max_payload,
        )?;
        let answer = answer
            .with_header(ID, id)
            .with_header(RESPONDER, self.consumer());
        let expired = event.deadline().is_some_and(|d| d <= SystemTime::now());
        if expired || self.responding().is_cancelled(event) {
            debug!(request = %id, "the caller cancelled or its deadline passed: answer dropped");
        } else if inbox.add_if_exists(answer).await?.is_none() {
            debug!(request = %id, "the caller's inbox is gone (it stopped waiting long ago): answer dropped");
        }
        self.responding().finished(std::slice::from_ref(event));
        self.ack(event).await
    }
}
