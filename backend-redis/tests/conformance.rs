//! The shared conformance suite, run against the Redis backend on a private
//! `redis-server` (or `PULSE_REDIS_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use pulse_conformance::{conformance_suite, redis_server, BoxFuture, Faults, Fixture};
use pulse_redis::{RedisBackend, RedisOptions};

/// Kills this backend's own pub/sub connection server-side, like a network failure would,
/// without disturbing other tests sharing the server.
struct RedisFaults {
    backend: RedisBackend,
    url: String,
}

impl Faults for RedisFaults {
    fn kill_subscriptions(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let id = self
                .backend
                .pubsub_client_id()
                .expect("a subscription exists");
            let client = redis::Client::open(self.url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(killed, 1, "the pub/sub connection was not found");
        })
    }
}

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
        Arc::new(RedisFaults { backend, url }),
    ))
}

conformance_suite!(fixture);
