//! The shared conformance suite, run against the Redis backend on a private 3-master
//! Redis Cluster (or `PULSE_REDIS_CLUSTER_URL`): every case, as on one server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use pulse_conformance::{conformance_suite, redis_cluster, BoxFuture, Faults, Fixture};
use pulse_redis::{RedisBackend, RedisOptions};

/// Kills this backend's own pub/sub connections (one per node with subscriptions), like a
/// network failure would, without disturbing other tests sharing the cluster.
struct ClusterFaults {
    backend: RedisBackend,
}

impl Faults for ClusterFaults {
    fn kill_subscriptions(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let connections = self.backend.pubsub_connections();
            assert!(!connections.is_empty(), "a subscription exists");
            for (node, id) in connections {
                let client = redis::Client::open(format!("redis://{node}/")).unwrap();
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

async fn fixture() -> Option<Fixture> {
    let url = redis_cluster::shared_cluster_url()?;
    let options = RedisOptions::default()
        .with_reconnect_delays(Duration::from_millis(20), Duration::from_millis(500))
        .with_health_check_interval(Duration::from_secs(1));
    let backend = RedisBackend::connect_with(&url, options)
        .await
        .expect("connect to the test cluster");
    assert!(backend.is_cluster());
    Some(Fixture::new(
        Arc::new(backend.clone()),
        Arc::new(ClusterFaults { backend }),
    ))
}

conformance_suite!(fixture);
