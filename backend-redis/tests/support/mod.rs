//! What the conformance fixtures on Redis share: killing the backend's own pub/sub
//! connections server-side, like a network failure would, without disturbing other tests
//! sharing the server or cluster.

use pulse_conformance::{BoxFuture, Faults};
use pulse_redis::RedisBackend;

/// [`Faults`] for a Redis backend on one server or a cluster: every pub/sub connection it
/// has (one per node with subscriptions) is killed with `CLIENT KILL ID` on its node.
pub(crate) struct PubSubFaults {
    /// The backend whose connections are killed.
    pub(crate) backend: RedisBackend,
    /// The URL to reach a single server with (its credentials included); `None`: each
    /// connection's node at `redis://host:port/`.
    pub(crate) url: Option<String>,
}

impl Faults for PubSubFaults {
    fn kill_subscriptions(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let connections = self.backend.pubsub_connections();
            assert!(!connections.is_empty(), "a subscription exists");
            for (node, id) in connections {
                let url = self
                    .url
                    .clone()
                    .unwrap_or_else(|| format!("redis://{node}/"));
                let client = redis::Client::open(url).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                let killed: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(id)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(killed, 1, "the pub/sub connection was not found on {node}");
            }
        })
    }
}
