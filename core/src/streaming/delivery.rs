//! Fan-out of events to the subscribers of one reader or sink instance.
//!
//! Each subscriber is a bounded queue. Delivery waits for room (back-pressure) but holds no
//! lock while waiting, and is abandoned as soon as the owner shuts down. A subscriber whose
//! receiver was dropped is forgotten.

use std::sync::{Arc, Mutex, MutexGuard};

use metrics::Counter;
use tokio::sync::{mpsc, watch};

use super::Event;

/// The receiving end of a subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::Receiver<Event>,
}

impl EventReceiver {
    /// The next event; `None` once the reader or sink is closed and the queue is drained.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// The subscribers of one reader or sink instance.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    /// Copy-on-write: delivery takes the list without copying it (it changes only when a
    /// subscriber comes or goes).
    senders: Mutex<Arc<Vec<mpsc::Sender<Event>>>>,
}

impl Subscribers {
    fn senders(&self) -> MutexGuard<'_, Arc<Vec<mpsc::Sender<Event>>>> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new subscriber with a queue of `buffer` events.
    pub(crate) fn add(&self, buffer: usize) -> EventReceiver {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        Arc::make_mut(&mut self.senders()).push(tx);
        EventReceiver { rx }
    }

    /// Weak handles on the current subscribers: whether any of them still listens can be
    /// asked later without keeping their queues open (a request in flight asks it, to
    /// tell a handler that died holding it, see `rpc::responder`).
    pub(crate) fn watchers(&self) -> Vec<mpsc::WeakSender<Event>> {
        self.senders().iter().map(mpsc::Sender::downgrade).collect()
    }

    /// True when at least one subscriber is still listening.
    pub(crate) fn any(&self) -> bool {
        let mut s = self.senders();
        if s.iter().any(mpsc::Sender::is_closed) {
            Arc::make_mut(&mut s).retain(|tx| !tx.is_closed());
        }
        !s.is_empty()
    }

    /// Delivers `event` to every subscriber, waiting for room; false if shut down meanwhile.
    /// The last subscriber gets `event` itself, the others a copy.
    /// Counts the delivery in `delivered` (once, however many subscribers).
    pub(crate) async fn deliver(
        &self,
        event: Event,
        delivered: &Counter,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let senders = self.senders().clone();
        if !senders.is_empty() {
            delivered.increment(1);
        }
        if let Some((last, others)) = senders.split_last() {
            for tx in others {
                if !send(tx, event.clone(), shutdown).await {
                    return false;
                }
            }
            if !send(last, event, shutdown).await {
                return false;
            }
        }
        !*shutdown.borrow()
    }

    /// Ends every subscription (receivers drain what is queued, then get `None`).
    pub(crate) fn close(&self) {
        *self.senders() = Arc::default();
    }
}

/// Queues `event` for one subscriber, waiting for room; false if shut down meanwhile.
async fn send(
    tx: &mpsc::Sender<Event>,
    event: Event,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    // Fast path: room in the queue (the common case) needs no waiting machinery.
    let event = match tx.try_send(event) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return true,
        Err(mpsc::error::TrySendError::Full(event)) => event,
    };
    tokio::select! {
        biased;
        _ = shutdown.changed() => false,
        _ = tx.send(event) => true,
    }
}
