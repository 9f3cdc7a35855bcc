//! Pool events ([`Node::events`]): what happens in the pool as far as a node can see — jobs
//! started and moved anywhere (from the owner records), jobs stopped here and why, workers
//! joining, leaving and fencing, ranges changed, jobs waiting for a group, the state lost
//! and recovered.
//!
//! Each subscriber has its own bounded queue; the pool never waits for a subscriber. When
//! a queue is full its content is replaced by one [`PoolEvent::Lagged`], which tells the
//! subscriber to re-read the pool ([`Node::inspect`]) — like collapsed map events. Events
//! derived from the replicas describe changes seen from the moment of subscribing: a move
//! whose first half (the release) came before it is reported as a start.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
};

use tokio::sync::Notify;

use super::{handler::StopReason, node::Node};
use crate::{Error, Result};

/// Most events a subscriber's queue holds before it is collapsed into [`PoolEvent::Lagged`].
pub const EVENT_QUEUE: usize = 1024;

/// Something that happened in the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A job started on `worker` (any node's), after `moves` moves.
    JobStarted {
        /// The job key.
        key: String,
        /// The worker running it now.
        worker: String,
        /// How often it moved before this run.
        moves: u32,
    },
    /// A job moved from one worker to another (seen when the new run started).
    JobMoved {
        /// The job key.
        key: String,
        /// The worker that ran it.
        from: String,
        /// The worker running it now.
        to: String,
    },
    /// A job stopped on a worker of this node.
    JobStopped {
        /// The job key.
        key: String,
        /// The worker.
        worker: String,
        /// Why.
        reason: StopReason,
    },
    /// A job left the pool (its record was deleted).
    JobRemoved {
        /// The job key.
        key: String,
    },
    /// A worker joined the pool (or came back under a new generation).
    WorkerJoined {
        /// The worker.
        worker: String,
        /// Its node.
        node: String,
        /// Its group.
        group: String,
    },
    /// A worker left the pool (removed, its node closed, or judged dead).
    WorkerLeft {
        /// The worker.
        worker: String,
    },
    /// A worker of this node could not renew its liveness in time and stopped its jobs.
    WorkerFenced {
        /// The worker.
        worker: String,
    },
    /// The groups' ranges changed.
    RangesChanged,
    /// Jobs of `group` wait because it has no live worker (reported on change).
    JobsWaiting {
        /// The group.
        group: String,
        /// How many jobs wait.
        count: usize,
    },
    /// The pool's state was lost or regressed in the store; this node re-admits its jobs.
    StateLost,
    /// The re-admission after [`PoolEvent::StateLost`] is done.
    StateRecovered {
        /// How many jobs this node re-admitted.
        jobs: usize,
    },
    /// This subscriber fell behind and events were dropped: re-read the pool.
    Lagged,
}

struct Queue {
    events: Mutex<(VecDeque<PoolEvent>, bool)>,
    notify: Notify,
}

/// A subscription to a node's pool events ([`Node::events`]). Dropping it unsubscribes.
pub struct PoolEvents {
    queue: Arc<Queue>,
}

impl std::fmt::Debug for PoolEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolEvents").finish_non_exhaustive()
    }
}

impl PoolEvents {
    /// The next event; `None` once the node is closed and the queue drained.
    pub async fn recv(&mut self) -> Option<PoolEvent> {
        loop {
            let notified = self.queue.notify.notified();
            {
                let mut q = self.queue.events.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(e) = q.0.pop_front() {
                    return Some(e);
                }
                if q.1 {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<PoolEvent> {
        self.queue
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .pop_front()
    }
}

/// A node's subscribers and what deriving events from the replicas needs.
#[derive(Default)]
pub(crate) struct Events {
    subscribers: Mutex<Vec<Weak<Queue>>>,
    count: AtomicUsize,
    /// The last worker seen running each job (to tell a move from a start).
    last_holder: Mutex<HashMap<String, String>>,
    /// The workers seen listed.
    known_workers: Mutex<HashSet<String>>,
}

impl Events {
    /// True while someone listens (nothing is derived otherwise).
    pub(crate) fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Hands `event` to every subscriber, collapsing a full queue.
    pub(crate) fn emit(&self, event: PoolEvent) {
        if !self.active() {
            return;
        }
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|w| w.strong_count() > 0);
        self.count.store(subs.len(), Ordering::Relaxed);
        for q in subs.iter().filter_map(Weak::upgrade) {
            let mut guard = q.events.lock().unwrap_or_else(|p| p.into_inner());
            if guard.0.len() >= EVENT_QUEUE {
                guard.0.clear();
                guard.0.push_back(PoolEvent::Lagged);
            } else {
                guard.0.push_back(event.clone());
            }
            drop(guard);
            q.notify.notify_one();
        }
    }

    /// A job's owner is `worker` now: a start, or a move from the last one seen.
    pub(crate) fn started(&self, key: &str, worker: &str, moves: u32) {
        if !self.active() {
            return;
        }
        let previous = self
            .last_holder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), worker.to_owned());
        if previous.as_deref() == Some(worker) {
            return; // the same run, seen again (a resync)
        }
        if let Some(from) = previous {
            self.emit(PoolEvent::JobMoved {
                key: key.to_owned(),
                from,
                to: worker.to_owned(),
            });
        }
        self.emit(PoolEvent::JobStarted {
            key: key.to_owned(),
            worker: worker.to_owned(),
            moves,
        });
    }

    /// A job's record is gone.
    pub(crate) fn removed(&self, key: &str) {
        if !self.active() {
            return;
        }
        self.last_holder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.emit(PoolEvent::JobRemoved {
            key: key.to_owned(),
        });
    }

    /// Worker `id` is listed (with `node` and `group`), or not any more (`None`).
    pub(crate) fn worker(&self, id: &str, listed: Option<(&str, &str)>) {
        if !self.active() {
            return;
        }
        let mut known = self.known_workers.lock().unwrap_or_else(|p| p.into_inner());
        match listed {
            Some((node, group)) if known.insert(id.to_owned()) => {
                drop(known);
                self.emit(PoolEvent::WorkerJoined {
                    worker: id.to_owned(),
                    node: node.to_owned(),
                    group: group.to_owned(),
                });
            }
            None if known.remove(id) => {
                drop(known);
                self.emit(PoolEvent::WorkerLeft {
                    worker: id.to_owned(),
                });
            }
            _ => {}
        }
    }

    /// The node closed: subscribers get `None` once drained.
    pub(crate) fn close(&self) {
        let subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        for q in subs.iter().filter_map(Weak::upgrade) {
            q.events.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
            q.notify.notify_one();
        }
    }
}

impl super::node::NodeInner {
    /// Derives pool events from a change replica `map` applied (nothing without
    /// subscribers).
    pub(crate) fn derive_events(&self, map: &str, e: &crate::rmap::MapEvent) {
        use super::records::{is_released, owner_moves, worker_of, WorkerRecord};
        use crate::rmap::EventKind;
        if !self.events.active() {
            return;
        }
        if map == "groups" {
            self.events.emit(PoolEvent::RangesChanged);
            return;
        }
        let Some(key) = e.key.as_deref() else {
            return;
        };
        match (map, e.kind) {
            ("owners", EventKind::Change) => {
                if let Some(v) = self.owners.get(key) {
                    let v = String::from_utf8_lossy(&v);
                    if !is_released(&v) {
                        self.events.started(key, worker_of(&v), owner_moves(&v));
                    }
                }
            }
            ("jobs", EventKind::Delete) => self.events.removed(key),
            ("workers", EventKind::Change) => {
                if let Some(r) = self
                    .workers
                    .get(key)
                    .and_then(|v| WorkerRecord::decode(&v).ok())
                {
                    self.events.worker(key, Some((&r.node, &r.group)));
                }
            }
            ("workers", EventKind::Delete) => self.events.worker(key, None),
            _ => {}
        }
    }
}

impl Node {
    /// Subscribes to the pool's events as this node sees them (see [`PoolEvent`]): a
    /// bounded queue, collapsed into [`PoolEvent::Lagged`] when this subscriber falls
    /// behind.
    ///
    /// Errors: `Closed`.
    pub fn events(&self) -> Result<PoolEvents> {
        if self.is_closed() {
            return Err(Error::Closed {
                what: format!("pool {:?} node", self.pool()),
            });
        }
        let inner = &self.inner;
        let events = &inner.events;
        // What is there now is the baseline of the changes reported from here on.
        {
            let mut holders = events.last_holder.lock().unwrap_or_else(|p| p.into_inner());
            if !events.active() {
                holders.clear();
                for (key, value) in inner.owners.snapshot().iter() {
                    let value = String::from_utf8_lossy(value);
                    if !super::records::is_released(&value) {
                        holders.insert(key.clone(), super::records::worker_of(&value).to_owned());
                    }
                }
                *events
                    .known_workers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) =
                    inner.workers.keys().into_iter().collect();
            }
        }
        let queue = Arc::new(Queue {
            events: Mutex::new((VecDeque::new(), false)),
            notify: Notify::new(),
        });
        let mut subs = events.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|w| w.strong_count() > 0);
        subs.push(Arc::downgrade(&queue));
        events.count.store(subs.len(), Ordering::Relaxed);
        Ok(PoolEvents { queue })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribed(events: &Events) -> PoolEvents {
        let queue = Arc::new(Queue {
            events: Mutex::new((VecDeque::new(), false)),
            notify: Notify::new(),
        });
        events
            .subscribers
            .lock()
            .unwrap()
            .push(Arc::downgrade(&queue));
        events.count.store(1, Ordering::Relaxed);
        PoolEvents { queue }
    }

    #[tokio::test]
    async fn a_slow_subscriber_gets_one_lagged_instead_of_a_flood() {
        let events = Events::default();
        let mut rx = subscribed(&events);
        for i in 0..EVENT_QUEUE + 5 {
            events.emit(PoolEvent::JobRemoved {
                key: format!("k{i}"),
            });
        }
        assert_eq!(rx.recv().await, Some(PoolEvent::Lagged));
        let rest: Vec<PoolEvent> = std::iter::from_fn(|| rx.try_recv()).collect();
        assert_eq!(rest.len(), 4, "the events after the collapse");
        events.close();
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_new_owner_after_another_is_a_move() {
        let events = Events::default();
        let mut rx = subscribed(&events);
        events.started("k", "w1", 0);
        events.started("k", "w1", 0); // seen again: nothing
        events.started("k", "w2", 1);
        let got: Vec<PoolEvent> = std::iter::from_fn(|| rx.try_recv()).collect();
        assert_eq!(
            got,
            [
                PoolEvent::JobStarted {
                    key: "k".into(),
                    worker: "w1".into(),
                    moves: 0
                },
                PoolEvent::JobMoved {
                    key: "k".into(),
                    from: "w1".into(),
                    to: "w2".into()
                },
                PoolEvent::JobStarted {
                    key: "k".into(),
                    worker: "w2".into(),
                    moves: 1
                },
            ]
        );
    }
}
