//! Replicated maps on Redis under real faults, each on a private `redis-server`: killed
//! subscription connections and server restarts with and without persistence all end with
//! every replica converged to the server's content.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use pulse::{
    rmap::{Map, MapOptions},
    Backend,
};
use pulse_conformance::redis_server::{private_server, RedisServer};
use pulse_redis::{RedisBackend, RedisOptions};

async fn backend(server: &RedisServer) -> Arc<dyn Backend> {
    let options = RedisOptions::default()
        .with_reconnect_delays(Duration::from_millis(20), Duration::from_millis(200))
        .with_health_check_interval(Duration::from_millis(200));
    Arc::new(
        RedisBackend::connect_with(&server.url(), options)
            .await
            .unwrap(),
    )
}

fn opts() -> MapOptions {
    MapOptions::default()
        .with_check_interval(Duration::from_millis(100))
        .with_resync_delay(Duration::from_millis(20))
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Waits until every replica holds exactly the server's content.
async fn converged(maps: &[&Map], server: &RedisServer, hash: &str) {
    let mut conn = raw(server).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(hash)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let mut remote: Vec<(String, Bytes)> = all
            .into_iter()
            .filter(|(k, _)| !k.starts_with('='))
            .map(|(k, v)| (k, Bytes::from(v)))
            .collect();
        remote.sort();
        let same = maps.iter().all(|m| {
            let mut local: Vec<(String, Bytes)> = m
                .snapshot()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            local.sort();
            local == remote
        });
        if same {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replicas did not converge to {remote:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_maps_share_one_subscription_connection() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let b = backend(&server).await;
    let mut maps = Vec::new();
    for i in 0..10 {
        maps.push(
            Map::join(b.clone(), &format!("m{i}"), opts())
                .await
                .unwrap(),
        );
    }
    let mut conn = raw(&server).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        list.lines().count(),
        1,
        "one pub/sub connection for ten maps:\n{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_converge_after_their_subscriptions_are_killed() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let (a, b) = (backend(&server).await, backend(&server).await);
    let observer = Map::join(a, "m", opts()).await.unwrap();
    let writer = Map::join(b, "m", opts()).await.unwrap();
    writer.set_and_wait("before", "1").await.unwrap();
    let mut conn = raw(&server).await;
    for round in 0..3 {
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        // Writes race with the reconnection: some notices are certainly missed.
        for i in 0..20 {
            writer
                .set(&format!("k{i}"), format!("{round}"))
                .await
                .unwrap();
        }
        writer.delete("k3").await.unwrap();
    }
    let hash = pulse::keys::Keyspace::default().map("m").unwrap().hash;
    converged(&[&observer, &writer], &server, &hash).await;
    assert_eq!(observer.get("k5"), Some(Bytes::from("2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_converge_after_a_restart_without_persistence() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let (a, b) = (backend(&server).await, backend(&server).await);
    let observer = Map::join(a, "m", opts()).await.unwrap();
    let writer = Map::join(b, "m", opts()).await.unwrap();
    for i in 0..10 {
        writer.set(&format!("k{i}"), "old").await.unwrap();
    }
    let hash = pulse::keys::Keyspace::default().map("m").unwrap().hash;
    converged(&[&observer, &writer], &server, &hash).await;
    server.restart().unwrap();
    // Everything is gone: replicas must follow, then accept the new generation.
    converged(&[&observer, &writer], &server, &hash).await;
    assert!(observer.is_empty());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while writer.set("new", "1").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    converged(&[&observer, &writer], &server, &hash).await;
    assert_eq!(observer.get("new"), Some(Bytes::from("1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_converge_after_a_restart_with_persistence() {
    let Some(server) = private_server(&["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let (a, b) = (backend(&server).await, backend(&server).await);
    let observer = Map::join(a, "m", opts()).await.unwrap();
    let writer = Map::join(b, "m", opts()).await.unwrap();
    for i in 0..10 {
        writer.set(&format!("k{i}"), "kept").await.unwrap();
    }
    let hash = pulse::keys::Keyspace::default().map("m").unwrap().hash;
    converged(&[&observer, &writer], &server, &hash).await;
    let before = observer.revision();
    server.restart().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while writer.set("after", "1").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    converged(&[&observer, &writer], &server, &hash).await;
    assert_eq!(observer.len(), 11, "persisted content kept");
    assert_eq!(
        observer.revision().epoch,
        before.epoch,
        "same generation after a persistent restart"
    );
    assert!(observer.revision().rev > before.rev);
}
