//! Cancellation of requests: a caller that stops waiting (its future dropped, its timeout
//! or its retries spent) tells the responders, and a handler can watch for it
//! ([`Sink::cancellation`]).
//!
//! How: the caller withdraws its request entries (a responder that has not read one yet
//! never will) and publishes the request ID on the service stream's cancel channel
//! (`<stream key>:cancel`, in the stream's hash slot). A sink member that has handed a
//! request of that stream to a handler listens on the channel (one subscription per
//! sink member and stream, opened with its first request): the request's
//! [`Cancellation`] fires, its heartbeats stop, and an answer given after that is dropped
//! (the request is acknowledged, nothing reaches the inbox). A request's deadline passing
//! fires it too.
//!
//! Pub/sub is at most once: a cancel published while a responder's subscription is down,
//! or before it subscribed, is missed. So once subscribed, and each time the subscription
//! comes back (`Restored`), the responder checks that each request in flight is still in
//! its stream and cancels those withdrawn meanwhile; a request read just before its
//! withdrawal is caught by the IDs of recent cancels, which a responder keeps until their
//! deadline. (A request entry trimmed away by the service stream's `max_len` while in
//! flight reads as withdrawn at such a check: give service streams room.) A cancel whose
//! withdrawal failed and whose message was lost leaves the handler running to its
//! deadline, and its answer is dropped by the caller.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use tokio::sync::Notify;
use tracing::debug;

use crate::{backend::EntryId, streaming::Stream};

/// The cancel channel of service stream `key`.
pub(crate) fn channel(stream_key: &str) -> String {
    format!("{stream_key}:cancel")
}

/// A cancel message: the request ID and its deadline (ms since the epoch), one per line.
pub(crate) fn message(id: &str, deadline_ms: u64) -> Bytes {
    Bytes::from(format!("{id}\n{deadline_ms}"))
}

/// Parses a cancel message; `None` for foreign data.
pub(crate) fn parse(payload: &[u8]) -> Option<(String, SystemTime)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (id, ms) = text.split_once('\n')?;
    let ms: u64 = ms.parse().ok()?;
    if id.is_empty() {
        return None;
    }
    Some((id.to_owned(), UNIX_EPOCH + Duration::from_millis(ms)))
}

#[derive(Debug, Default)]
pub(crate) struct CancelState {
    cancelled: AtomicBool,
    changed: Notify,
}

impl CancelState {
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// Whether the caller of a request still waits for its answer, as seen by the responder
/// ([`Sink::cancellation`](crate::streaming::Sink::cancellation)). Fires when the caller
/// cancels (drops its future, or gives up after its timeout or retries) and when the
/// request's deadline passes. Cheap to clone.
///
/// ```
/// # async fn handle(cancel: pulse::rpc::Cancellation) {
/// tokio::select! {
///     _ = cancel.cancelled() => { /* nobody waits any more: stop the work */ }
///     _ = async { /* the work */ } => {}
/// }
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Cancellation {
    state: Arc<CancelState>,
}

impl Cancellation {
    pub(crate) fn of(state: Arc<CancelState>) -> Self {
        Cancellation { state }
    }

    /// True once the request was cancelled or its deadline passed.
    pub fn is_cancelled(&self) -> bool {
        self.state.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once [`is_cancelled`](Self::is_cancelled) is true.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.state.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// The caller's side: armed while a request waits for an answer. Disarmed by an answer;
/// otherwise ([`GiveUp::now`], or dropped with the caller's future) it withdraws the
/// request's entries and publishes the cancel.
pub(crate) struct GiveUp {
    stream: Stream,
    id: String,
    deadline_ms: u64,
    sent: Arc<Mutex<Vec<EntryId>>>,
    armed: bool,
}

impl GiveUp {
    pub(crate) fn new(stream: &Stream, id: &str, deadline_ms: u64) -> Self {
        GiveUp {
            stream: stream.clone(),
            id: id.to_owned(),
            deadline_ms,
            sent: Arc::default(),
            armed: true,
        }
    }

    /// An entry of an attempt was added.
    pub(crate) fn sent(&self, entry: EntryId) {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    /// Withdraws the entries sent so far (an attempt given up: nobody is to work on it).
    pub(crate) async fn withdraw(&self) {
        let ids = self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
        withdraw(&self.stream, &ids).await;
    }

    /// The request was answered (or never sent): nothing to cancel.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }

    /// The caller stops waiting: withdraw and tell the responders, now.
    pub(crate) async fn now(mut self) {
        self.armed = false;
        let ids = self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
        cancel(self.stream.clone(), self.id.clone(), self.deadline_ms, ids).await;
    }
}

impl Drop for GiveUp {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // The caller's future was dropped mid-wait: cancel from a task of its own.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ids = self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
        runtime.spawn(cancel(
            self.stream.clone(),
            std::mem::take(&mut self.id),
            self.deadline_ms,
            ids,
        ));
    }
}

async fn withdraw(stream: &Stream, ids: &[EntryId]) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = stream.remove(ids).await {
        debug!(stream = %stream.name(), error = %e, "withdrawing a request failed");
    }
}

async fn cancel(stream: Stream, id: String, deadline_ms: u64, sent: Vec<EntryId>) {
    withdraw(&stream, &sent).await;
    // Told even when no entry is known: the caller may have gone while its add was on
    // the way (applied, the reply not read yet), and the responder cancels by request ID.
    let channel = channel(stream.key());
    if let Err(e) = stream
        .backend
        .publish(&channel, message(&id, deadline_ms))
        .await
    {
        debug!(stream = %stream.name(), request = %id, error = %e, "publishing a cancel failed; the responder learns at the deadline");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_foreign_ones_are_refused() {
        let (id, at) = parse(&message("01ABC", 1_700_000_000_123)).unwrap();
        assert_eq!(id, "01ABC");
        assert_eq!(at, UNIX_EPOCH + Duration::from_millis(1_700_000_000_123));
        for bad in [&b""[..], b"x", b"\n5", b"id\nsoon", b"\xff\n1"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_cancellation_wakes_its_waiters_and_stays_cancelled() {
        let state = Arc::new(CancelState::default());
        let c = Cancellation::of(state.clone());
        assert!(!c.is_cancelled());
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.cancelled().await }
        });
        tokio::task::yield_now().await;
        state.cancel();
        waiter.await.unwrap();
        assert!(c.is_cancelled());
        c.cancelled().await; // already cancelled: at once
    }
}
