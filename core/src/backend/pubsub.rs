//! Publish/subscribe with explicit loss and recovery signals.
//!
//! A backend multiplexes all subscriptions of one backend instance over one connection.
//! Pub/sub is fire-and-forget: messages published while a subscription is not established
//! are lost. So instead of hiding reconnections, a backend reports them: every live
//! subscription receives [`PubSubEvent::Lost`] when the connection fails and
//! [`PubSubEvent::Restored`] once it is re-established and its channels are subscribed
//! again. A subscriber that keeps derived state (an rmap replica) must resync after
//! `Restored`.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::Result;

/// What a subscription receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PubSubEvent {
    /// A message published on one of the subscription's channels.
    Message {
        /// The channel.
        channel: String,
        /// The message.
        payload: Bytes,
    },
    /// The connection was lost; messages may be missed until [`PubSubEvent::Restored`].
    Lost,
    /// The connection is back and the channels are subscribed again.
    Restored,
}

/// A live subscription to a set of channels. Dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<PubSubEvent>,
    _guard: Box<dyn Send + Sync>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// Used by backends: `rx` receives the events, `guard` is dropped with the subscription
    /// and must unsubscribe in its `Drop`.
    pub fn new(
        rx: mpsc::UnboundedReceiver<PubSubEvent>,
        guard: impl Send + Sync + 'static,
    ) -> Self {
        Subscription {
            rx,
            _guard: Box::new(guard),
        }
    }

    /// The next event, or `None` once the backend is closed.
    pub async fn recv(&mut self) -> Option<PubSubEvent> {
        self.rx.recv().await
    }

    /// The next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<PubSubEvent> {
        self.rx.try_recv().ok()
    }
}

/// Publish/subscribe.
#[async_trait]
pub trait PubSubOps: Send + Sync {
    /// Publishes `payload` on `channel`; returns how many subscriptions received it as far
    /// as the server that took it knows: on one Redis server every subscriber; on a Redis
    /// Cluster the subscribers connected to the node serving the channel's slot (where the
    /// Redis backend subscribes it, so this process's subscriptions are counted) — a lower
    /// bound, never a delivery guarantee. The map operations of [`AtomicOps`] publish
    /// their notices themselves, and deliver each only once its write is visible.
    ///
    /// Order: the messages published on one channel reach a subscription in publish order,
    /// and so do those of channels that share a hash tag (one map, one pool); across hash
    /// tags a cluster keeps no order. A subscription receives every message published after
    /// `subscribe` returned, and may also receive one published shortly before (on a
    /// cluster a message may cross the cluster bus).
    ///
    /// [`AtomicOps`]: super::AtomicOps
    ///
    /// Errors: `Connection`. Conformance: `pubsub_delivers_in_order`.
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<u64>;

    /// Subscribes to `channels` and returns once the subscription is confirmed, so every
    /// message published after this returns is delivered (unless the connection is lost,
    /// which is then reported). Messages of one channel arrive in publish order.
    ///
    /// Errors: `InvalidArgument` (no channels), `Connection` when the subscription could
    /// not be established. Conformance: `pubsub_delivers_in_order`,
    /// `pubsub_only_subscribed_channels`, `pubsub_drop_unsubscribes`,
    /// `pubsub_reports_loss_and_restore`.
    async fn subscribe(&self, channels: &[String]) -> Result<Subscription>;
}
