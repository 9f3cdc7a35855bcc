//! The shared conformance suite, run against the Redis backend on a private 3-master
//! Redis Cluster (or `PULSE_REDIS_CLUSTER_URL`): every case, as on one server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

mod support;

use pulse_conformance::{conformance_suite, redis_cluster, Fixture};
use pulse_redis::{RedisBackend, RedisOptions};

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
        Arc::new(support::PubSubFaults { backend, url: None }),
    ))
}

conformance_suite!(fixture);
