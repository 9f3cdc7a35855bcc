//! Change notifications for subscribers of a map.
//!
//! Each subscriber has its own bounded queue. The replica never blocks on a slow subscriber
//! and never loses the *strongest* news: when a queue is full, its content is collapsed
//! into one event with no key and the strongest kind seen (`Reset` > `Delete` > `Change`),
//! which tells the subscriber to re-read the map. So a `Reset` that follows a `Change` is
//! never masked (fixes the Go version's capacity-1, drop-on-full channel).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

use crate::backend::Revision;

/// What kind of change happened, ordered by strength.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A key was set.
    Change,
    /// A key was deleted.
    Delete,
    /// The map was reset, destroyed, expired or re-created: any key may have changed.
    Reset,
}

/// One change, as seen by the local replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEvent {
    /// The kind of change (for a collapsed event, the strongest of those collapsed).
    pub kind: EventKind,
    /// The key that changed; `None` when the change concerns the whole map (reset) or
    /// several events were collapsed because the subscriber fell behind.
    pub key: Option<String>,
    /// The replica's revision once the change was applied.
    pub revision: Revision,
}

#[derive(Debug)]
struct Queue {
    events: VecDeque<MapEvent>,
    closed: bool,
}

/// The producer side of one subscriber.
#[derive(Debug)]
pub(crate) struct Slot {
    queue: Mutex<Queue>,
    notify: Notify,
    capacity: usize,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `event`, collapsing the queue when it is full. Never blocks.
    pub(crate) fn push(&self, event: MapEvent) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        if q.events.len() >= self.capacity {
            let strongest = q.events.iter().map(|e| e.kind).chain([event.kind]).max();
            q.events.clear();
            q.events.push_back(MapEvent {
                kind: strongest.unwrap_or(EventKind::Reset),
                key: None,
                revision: event.revision,
            });
        } else {
            q.events.push_back(event);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Ends the subscription once the queued events are read.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }
}

/// A subscription to a map's changes, from [`Map::subscribe`](super::Map::subscribe).
/// Dropping it unsubscribes.
#[derive(Debug)]
pub struct MapSubscriber {
    slot: Arc<Slot>,
}

impl MapSubscriber {
    pub(crate) fn new(capacity: usize) -> (Self, Arc<Slot>) {
        let slot = Arc::new(Slot {
            queue: Mutex::new(Queue {
                events: VecDeque::new(),
                closed: false,
            }),
            notify: Notify::new(),
            capacity: capacity.max(1),
        });
        (MapSubscriber { slot: slot.clone() }, slot)
    }

    /// The next event; `None` once the map is closed and every queued event was read.
    pub async fn recv(&mut self) -> Option<MapEvent> {
        loop {
            {
                let mut q = self.slot.lock();
                if let Some(e) = q.events.pop_front() {
                    return Some(e);
                }
                if q.closed {
                    return None;
                }
            }
            self.slot.notify.notified().await;
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<MapEvent> {
        self.slot.lock().events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, key: &str, rev: u64) -> MapEvent {
        MapEvent {
            kind,
            key: Some(key.into()),
            revision: Revision { epoch: 1, rev },
        }
    }

    #[tokio::test]
    async fn events_arrive_in_order() {
        let (mut sub, slot) = MapSubscriber::new(8);
        slot.push(ev(EventKind::Change, "a", 1));
        slot.push(ev(EventKind::Delete, "a", 2));
        assert_eq!(sub.recv().await, Some(ev(EventKind::Change, "a", 1)));
        assert_eq!(sub.recv().await, Some(ev(EventKind::Delete, "a", 2)));
        assert_eq!(sub.try_recv(), None);
    }

    #[tokio::test]
    async fn a_full_queue_collapses_into_the_strongest_kind() {
        let (mut sub, slot) = MapSubscriber::new(2);
        slot.push(ev(EventKind::Change, "a", 1));
        slot.push(MapEvent {
            kind: EventKind::Reset,
            key: None,
            revision: Revision { epoch: 1, rev: 2 },
        });
        slot.push(ev(EventKind::Change, "b", 3)); // full: collapse
        let e = sub.recv().await.unwrap();
        assert_eq!((e.kind, e.key, e.revision.rev), (EventKind::Reset, None, 3));
        assert_eq!(sub.try_recv(), None);
    }

    #[tokio::test]
    async fn close_ends_after_queued_events() {
        let (mut sub, slot) = MapSubscriber::new(4);
        slot.push(ev(EventKind::Change, "a", 1));
        slot.close();
        slot.push(ev(EventKind::Change, "b", 2)); // ignored after close
        assert!(sub.recv().await.is_some());
        assert_eq!(sub.recv().await, None);
    }
}
