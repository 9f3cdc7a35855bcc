//! Pub/sub on a Redis Cluster: one hub ([`crate::pubsub::Hub`]) per node, each channel
//! subscribed on the node that serves its slot.
//!
//! A script's `PUBLISH` reaches subscribers on every node, but a subscriber on another node
//! hears it only after it crossed the cluster bus, which is slow: the pool's dispatch rate
//! fell to a third when its notices took that hop (docs/ARCHITECTURE.md, decision 27). So a
//! channel is subscribed on the master of its slot, where the script that publishes its
//! notices runs and delivers them before it returns.
//!
//! Invariants:
//! - Each node's hub holds one connection, to that node first; when the node cannot be
//!   reached it falls back to the seeds in order (delivery is still correct there, only
//!   slower), with `Lost`/`Restored` as for a single server.
//! - Channels of one slot (one map, one pool) share a hub, so their relative order is kept;
//!   a subscription over several slots merges its hubs' events: `Lost` when the first of
//!   them is lost, `Restored` when the last is back.
//! - A channel's node is chosen when it is subscribed; after a slot migration or a failover
//!   its hub keeps delivering from where it is (classic channels are cluster-wide).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use pulse::{
    backend::{PubSubEvent, Subscription},
    keys::hash_slot,
    Error, Result,
};
use tokio::sync::mpsc;

use crate::{
    cluster::{Node, Topology},
    pubsub::Hub,
    RedisOptions,
};

/// The hubs of a cluster backend, one per node with subscriptions.
pub(crate) struct Lanes {
    topology: Arc<Topology>,
    /// RESP3 clients for the seeds, the fallbacks of every hub.
    seeds: Vec<(Node, redis::Client)>,
    options: RedisOptions,
    hubs: Mutex<HashMap<Node, Arc<Hub>>>,
}

impl Lanes {
    pub(crate) fn new(
        topology: Arc<Topology>,
        seeds: Vec<(Node, redis::Client)>,
        options: RedisOptions,
    ) -> Self {
        Lanes {
            topology,
            seeds,
            options,
            hubs: Mutex::new(HashMap::new()),
        }
    }

    /// The master serving `channel`'s slot (where its notices are published), as known.
    pub(crate) fn node_for(&self, channel: &str) -> Option<Node> {
        self.topology.owner(hash_slot(channel))
    }

    fn hub_for(&self, node: Node) -> Result<Arc<Hub>> {
        let mut hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hub) = hubs.get(&node) {
            return Ok(hub.clone());
        }
        let own = crate::pubsub_client(&self.topology.info_for(&node))?;
        let mut clients = vec![own];
        clients.extend(
            self.seeds
                .iter()
                .filter(|(seed, _)| *seed != node)
                .map(|(_, client)| client.clone()),
        );
        let hub = Hub::start(clients, self.options.clone());
        hubs.insert(node, hub.clone());
        Ok(hub)
    }

    /// Subscribes `channels`, each on the node of its slot.
    pub(crate) async fn subscribe(&self, channels: &[String]) -> Result<Subscription> {
        if channels.is_empty() {
            return Err(Error::InvalidArgument("no channels to subscribe to".into()));
        }
        let mut groups: Vec<(Node, Vec<String>)> = Vec::new();
        for channel in channels {
            let node =
                match self.node_for(channel) {
                    Some(node) => node,
                    None => self.seeds.first().map(|(n, _)| n.clone()).ok_or_else(|| {
                        Error::connection("no cluster node known to subscribe on")
                    })?,
                };
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, group)) => group.push(channel.clone()),
                None => groups.push((node, vec![channel.clone()])),
            }
        }
        let mut subs = Vec::with_capacity(groups.len());
        for (node, group) in groups {
            subs.push(self.hub_for(node)?.subscribe(&group).await?);
        }
        if subs.len() == 1 {
            return subs
                .pop()
                .ok_or_else(|| Error::connection("no subscription"));
        }
        Ok(merge(subs))
    }

    /// Every hub's node and the server-side client ID of its connection (fault tests).
    pub(crate) fn connections(&self) -> Vec<(String, i64)> {
        let hubs = self.hubs.lock().unwrap_or_else(|p| p.into_inner());
        hubs.values()
            .filter_map(|hub| Some((hub.node(), hub.client_id()?)))
            .collect()
    }
}

/// One subscription over several hubs' subscriptions (see the module doc for `Lost` and
/// `Restored`). Dropping it stops the forwarding task, which drops the parts.
fn merge(parts: Vec<Subscription>) -> Subscription {
    let (tx, rx) = mpsc::unbounded_channel();
    let (events, mut merged) = mpsc::unbounded_channel::<(usize, Option<PubSubEvent>)>();
    let mut forwards = Vec::new();
    for (i, mut part) in parts.into_iter().enumerate() {
        let events = events.clone();
        forwards.push(tokio::spawn(async move {
            loop {
                let event = part.recv().await;
                let closed = event.is_none();
                if events.send((i, event)).is_err() || closed {
                    return;
                }
            }
        }));
    }
    drop(events);
    let task = tokio::spawn(async move {
        let mut lost = std::collections::HashSet::new();
        while let Some((part, event)) = merged.recv().await {
            let out = match event {
                None => return, // the backend closed
                Some(PubSubEvent::Lost) => {
                    let first = lost.is_empty();
                    (lost.insert(part) && first).then_some(PubSubEvent::Lost)
                }
                Some(PubSubEvent::Restored) => {
                    let was = lost.remove(&part);
                    (was && lost.is_empty()).then_some(PubSubEvent::Restored)
                }
                Some(message) => Some(message),
            };
            if let Some(event) = out {
                if tx.send(event).is_err() {
                    return;
                }
            }
        }
    });
    forwards.push(task);
    Subscription::new(rx, AbortOnDrop(forwards))
}

/// Aborts the forwarding tasks of a merged subscription when it is dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;

    use super::*;

    fn part() -> (mpsc::UnboundedSender<PubSubEvent>, Subscription) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Subscription::new(rx, ()))
    }

    fn message(n: &str) -> PubSubEvent {
        PubSubEvent::Message {
            channel: "c".into(),
            payload: Bytes::copy_from_slice(n.as_bytes()),
        }
    }

    /// `Lost` once when the first part is lost, `Restored` once when the last is back;
    /// messages pass through.
    #[tokio::test]
    async fn a_merged_subscription_reports_loss_once_and_recovery_at_the_end() {
        let ((a, one), (b, two)) = (part(), part());
        let mut merged = merge(vec![one, two]);
        a.send(message("1")).unwrap();
        assert_eq!(merged.recv().await, Some(message("1")));
        a.send(PubSubEvent::Lost).unwrap();
        assert_eq!(merged.recv().await, Some(PubSubEvent::Lost));
        b.send(PubSubEvent::Lost).unwrap();
        a.send(PubSubEvent::Restored).unwrap();
        b.send(message("2")).unwrap();
        assert_eq!(
            merged.recv().await,
            Some(message("2")),
            "a second Lost or an early Restored"
        );
        b.send(PubSubEvent::Restored).unwrap();
        assert_eq!(merged.recv().await, Some(PubSubEvent::Restored));
        drop((a, b));
        assert_eq!(merged.recv().await, None, "closed parts close the merge");
    }
}
