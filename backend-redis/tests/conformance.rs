//! The shared conformance suite, run against the Redis backend on a private
//! `redis-server` (or `PULSE_REDIS_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

mod support;

use pulse_conformance::{conformance_suite, redis_server, Fixture};
use pulse_redis::{RedisBackend, RedisOptions};

async fn fixture() -> Option<Fixture> {
    let url = redis_server::shared_url()?;
    let options = RedisOptions::default()
        .with_reconnect_delays(Duration::from_millis(20), Duration::from_millis(500))
        .with_health_check_interval(Duration::from_secs(1));
    let backend = RedisBackend::connect_with(&url, options)
        .await
        .expect("connect to the test server");
    Some(Fixture::new(
        Arc::new(backend.clone()),
        Arc::new(support::PubSubFaults {
            backend,
            url: Some(url),
        }),
    ))
}

conformance_suite!(fixture);
