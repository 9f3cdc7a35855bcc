//! Big maps and big values on a private `redis-server`: a join or a reset never holds the
//! server (no command of it in `SLOWLOG` near what one whole read took), and a value bigger
//! than a subscriber's output buffer limit replicates without getting the subscription
//! dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use pulse::{
    keys::Keyspace,
    rmap::{Map, MapOptions},
    Backend,
};
use pulse_conformance::redis_server::{private_server, RedisServer};
use pulse_redis::RedisBackend;

async fn backend(server: &RedisServer) -> Arc<dyn Backend> {
    Arc::new(RedisBackend::connect(&server.url()).await.unwrap())
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The durations (µs) of the commands `SLOWLOG` recorded.
async fn slow_durations(conn: &mut redis::aio::MultiplexedConnection) -> Vec<i64> {
    let entries: Vec<Vec<redis::Value>> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(128)
        .query_async(conn)
        .await
        .unwrap();
    entries
        .iter()
        .map(|e| match e.get(2) {
            Some(redis::Value::Int(us)) => *us,
            other => panic!("unexpected SLOWLOG entry field {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_big_map_never_blocks_the_server() {
    const N: usize = 300_000;
    let Some(server) = private_server(&["--slowlog-log-slower-than", "10000"]) else {
        return;
    };
    let ks = Keyspace::default();
    let hash = ks.map("big").unwrap().hash;
    let mut conn = raw(&server).await;
    // A map's hash as the map operations leave it, written in bulk.
    let _: () = redis::cmd("HSET")
        .arg(&hash)
        .arg("=epoch")
        .arg(77)
        .arg("=rev")
        .arg(N)
        .arg("=kind")
        .arg("set")
        .query_async(&mut conn)
        .await
        .unwrap();
    for start in (0..N).step_by(2000) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&hash);
        for i in start..start + 2000 {
            cmd.arg(format!("key-{i:07}")).arg(format!("value-{i}"));
        }
        let _: () = cmd.query_async(&mut conn).await.unwrap();
    }
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut conn)
        .await
        .unwrap();
    let map = Map::join(backend(&server).await, "big", MapOptions::default())
        .await
        .unwrap();
    assert_eq!(map.len(), N);
    assert_eq!(
        map.get("key-0123456").as_deref(),
        Some(&b"value-123456"[..])
    );
    assert_eq!(map.revision().rev, N as u64);
    // Every step is ~1 ms; a server descheduled mid-command on a loaded 2-core machine can
    // still log one, so allow two, and none near what one whole read took (~350 ms).
    let slow = slow_durations(&mut conn).await;
    assert!(
        slow.len() <= 2 && slow.iter().all(|us| *us < 50_000),
        "commands over 10 ms (µs): {slow:?}"
    );
    // Clearing it does not hold the server either (the hash is freed off the main thread).
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut conn)
        .await
        .unwrap();
    map.reset().await.unwrap();
    let slow = slow_durations(&mut conn).await;
    assert!(
        slow.len() <= 2 && slow.iter().all(|us| *us < 50_000),
        "reset: commands over 10 ms (µs): {slow:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_subscriber_buffer_limit_replicates() {
    let Some(server) = private_server(&["--client-output-buffer-limit", "pubsub 2mb 1mb 60"])
    else {
        return;
    };
    let opts = MapOptions::default().with_max_value_size(8 << 20);
    let reader = Map::join(backend(&server).await, "m", opts.clone())
        .await
        .unwrap();
    let writer = Map::join(backend(&server).await, "m", opts).await.unwrap();
    let mut conn = raw(&server).await;
    let pubsub_clients = |list: String| {
        let mut ids: Vec<String> = list
            .lines()
            .filter_map(|l| l.split(' ').next().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    let list = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("CLIENT")
                .arg("LIST")
                .arg("TYPE")
                .arg("pubsub")
                .query_async::<String>(&mut conn)
                .await
                .unwrap()
        }
    };
    let before = pubsub_clients(list(&mut conn).await);
    assert_eq!(before.len(), 2, "one subscription connection per backend");
    let big = Bytes::from(vec![b'x'; 4 << 20]);
    for round in 0..3u8 {
        let mut value = big.to_vec();
        value[0] = round;
        writer.set("big", value.clone()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while reader.get("big").as_deref() != Some(&value[..]) {
            assert!(tokio::time::Instant::now() < deadline, "never replicated");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let after = pubsub_clients(list(&mut conn).await);
    assert_eq!(before, after, "a subscription connection was dropped");
}
