//! Connecting to a Redis Cluster, and what a cluster that is partly down or badly named
//! answers: typed errors within bounded waits, never a hang or a panic. Also the cluster
//! capabilities the suite cannot see from outside: scripts reloaded on the node that lost
//! them, a blocked read that stalls nothing, reads over streams on different nodes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use pulse::{
    backend::{AddOptions, AtomicOps, EntryId, MapTarget, SetCondition, StreamOps},
    keys::{hash_slot, Keyspace},
    Error,
};
use pulse_conformance::{
    redis_cluster::{private_cluster, RedisCluster},
    redis_server::private_server,
};
use pulse_redis::{RedisBackend, RedisOptions};

fn quick() -> RedisOptions {
    RedisOptions::default()
        .with_command_timeout(Duration::from_secs(1))
        .with_connect_timeout(Duration::from_secs(1))
}

fn fields(v: &str) -> Vec<(String, Bytes)> {
    vec![("v".to_owned(), Bytes::copy_from_slice(v.as_bytes()))]
}

/// A name whose key (`key(name)`) is in a slot served by master `node` now.
fn name_on(
    cluster: &RedisCluster,
    node: usize,
    prefix: &str,
    key: impl Fn(&str) -> String,
) -> String {
    let port = cluster.nodes()[node].port();
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|name| cluster.owner_of_slot(hash_slot(&key(name)), 0).ok() == Some(port))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_that_mix_cluster_and_single_servers_are_config_errors() {
    let (Some(cluster), Some(single)) = (private_cluster(3, 0), private_server(&[])) else {
        return;
    };
    let node = cluster.nodes()[0].port();
    // A single-server URL to a cluster node would half work (its own slots only).
    let e = RedisBackend::connect_with(&format!("redis://127.0.0.1:{node}/"), quick())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("redis+cluster://")),
        "{e:?}"
    );
    // A cluster URL that names a single server among its seeds.
    let mixed = format!(
        "redis+cluster://127.0.0.1:{node},127.0.0.1:{}/",
        single.port()
    );
    let e = RedisBackend::connect_with(&mixed, quick())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("not a Redis Cluster node")),
        "{e:?}"
    );
    let only = format!("redis+cluster://127.0.0.1:{}/", single.port());
    let e = RedisBackend::connect_with(&only, quick())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    // A seed that is down is skipped when another answers.
    let down = format!("redis+cluster://127.0.0.1:1,127.0.0.1:{node}/");
    let backend = RedisBackend::connect_with(&down, quick()).await.unwrap();
    assert!(backend.is_cluster());
    // The same from a list of seeds.
    let seeds = [
        "redis://127.0.0.1:1/".to_owned(),
        format!("redis://127.0.0.1:{node}/"),
    ];
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let backend = RedisBackend::connect_cluster(&seeds, quick())
        .await
        .unwrap();
    assert!(backend.is_cluster());
    for bad in [
        &[][..],
        &["redis+cluster://127.0.0.1:1/"][..],
        &["redis://127.0.0.1:1/", "rediss://127.0.0.1:2/"][..],
        &["redis://127.0.0.1:1/3"][..],
    ] {
        let e = RedisBackend::connect_cluster(bad, quick())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{bad:?}: {e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_nobody_answers_for_is_a_connection_error() {
    let started = std::time::Instant::now();
    let e = RedisBackend::connect_with("redis+cluster://127.0.0.1:1,127.0.0.1:2/", quick())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Connection { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// With a master down the cluster answers `CLUSTERDOWN`: the call is a `Connection` error
/// once the command timeout is spent (nothing applied), and works again once the master
/// is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_is_down_answers_connection_errors_then_recovers() {
    let Some(cluster) = private_cluster(3, 0) else {
        return;
    };
    let backend = RedisBackend::connect_with(&cluster.url(), quick())
        .await
        .unwrap();
    let ks = Keyspace::new("down").unwrap();
    // A map on a master that stays up: the cluster as a whole refuses it.
    let name = name_on(&cluster, 1, "m", |n| ks.map(n).unwrap().hash);
    let keys = ks.map(&name).unwrap();
    let map = MapTarget::new(keys.hash, keys.channel);
    backend
        .map_set(&map, "k", Bytes::from("1"), SetCondition::Always)
        .await
        .unwrap();
    cluster.nodes()[0].stop();
    // The others mark the cluster failed after the node timeout (2 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let e = loop {
        match backend
            .map_set(&map, "k", Bytes::from("2"), SetCondition::Always)
            .await
        {
            Ok(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster never went down"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&e, Error::Connection { message, .. } if message.contains("CLUSTERDOWN")),
        "{e:?}"
    );
    assert!(e.is_retryable());
    cluster.nodes()[0].restart().unwrap();
    cluster.wait_ready().unwrap();
    pulse_conformance::eventually("the cluster serves again", || async {
        backend
            .map_set(&map, "k", Bytes::from("3"), SetCondition::Always)
            .await
            .is_ok()
    })
    .await;
}

/// A node that lost its script cache (`SCRIPT FLUSH`, a restart) runs the scripts again:
/// they are loaded on it when it answers `NOSCRIPT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reloaded_on_the_node_that_lost_them() {
    let Some(cluster) = private_cluster(3, 0) else {
        return;
    };
    let backend = RedisBackend::connect_with(&cluster.url(), quick())
        .await
        .unwrap();
    let ks = Keyspace::new("noscript").unwrap();
    let name = name_on(&cluster, 2, "m", |n| ks.map(n).unwrap().hash);
    let keys = ks.map(&name).unwrap();
    let map = MapTarget::new(keys.hash, keys.channel);
    let port = cluster.nodes()[2].port();
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let out = backend
        .map_set(&map, "k", Bytes::from("v"), SetCondition::Always)
        .await
        .unwrap();
    assert!(out.previous.is_none());
    let held: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(&map.hash)
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(held.as_deref(), Some(&b"v"[..]));
}

/// A blocked read over streams that live on different nodes wakes for an entry on any of
/// them, and while it blocks, every other command goes through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_over_streams_on_different_nodes_block_without_stalling_others() {
    let Some(cluster) = private_cluster(3, 0) else {
        return;
    };
    let backend = Arc::new(
        RedisBackend::connect_with(&cluster.url(), quick())
            .await
            .unwrap(),
    );
    let ks = Keyspace::new("reads").unwrap();
    let streams: Vec<String> = (0..3)
        .map(|node| {
            ks.stream(&name_on(&cluster, node, "s", |n| ks.stream(n).unwrap()))
                .unwrap()
        })
        .collect();
    let cursors: Vec<(String, EntryId)> =
        streams.iter().map(|s| (s.clone(), EntryId::ZERO)).collect();
    let reader = {
        let (backend, cursors) = (backend.clone(), cursors.clone());
        tokio::spawn(async move {
            backend
                .stream_read(&cursors, 10, Some(Duration::from_secs(60)))
                .await
        })
    };
    // Meanwhile the shared connection serves other commands on every node.
    for (i, stream) in streams.iter().enumerate() {
        let info = tokio::time::timeout(Duration::from_secs(10), backend.stream_info(stream))
            .await
            .expect("a command waited behind a blocked read")
            .unwrap();
        assert!(info.is_none(), "stream {i} exists already");
    }
    assert!(!reader.is_finished(), "the read returned without an entry");
    let id = backend
        .stream_add(&streams[2], fields("x"), &AddOptions::default())
        .await
        .unwrap()
        .unwrap();
    let batches = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the read did not wake for an entry on another node")
        .unwrap()
        .unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].stream, streams[2]);
    assert_eq!(batches[0].entries[0].id, id);
    // Entries on several nodes are read together without blocking.
    backend
        .stream_add(&streams[0], fields("y"), &AddOptions::default())
        .await
        .unwrap();
    let all = backend.stream_read(&cursors, 10, None).await.unwrap();
    let mut names: Vec<&str> = all.iter().map(|b| b.stream.as_str()).collect();
    names.sort();
    let mut want = vec![streams[0].as_str(), streams[2].as_str()];
    want.sort();
    assert_eq!(names, want);
}

/// With a replica per master, a notice published by a script reaches a subscriber exactly
/// once, also a subscriber on a replica (which hears the publish both over the cluster bus
/// and in its master's replication stream): where a node's subscriptions fall back to after
/// a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_reach_a_subscriber_on_a_replica_exactly_once() {
    let Some(cluster) = private_cluster(3, 1) else {
        return;
    };
    let ks = Keyspace::new("dups").unwrap();
    let name = name_on(&cluster, 0, "m", |n| ks.map(n).unwrap().hash);
    let replica = cluster.replica_of(0).unwrap();
    let backend = RedisBackend::connect_with(&cluster.url(), quick())
        .await
        .unwrap();
    let keys = ks.map(&name).unwrap();
    let map = MapTarget::new(keys.hash, keys.channel);
    // A plain RESP3 subscriber on the replica.
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    let port = cluster.nodes()[replica].port();
    let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/?protocol=resp3"))
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    conn.subscribe(&map.channel).await.unwrap();
    for i in 0..50 {
        backend
            .map_set(
                &map,
                &format!("k{i}"),
                Bytes::from("v"),
                SetCondition::Always,
            )
            .await
            .unwrap();
    }
    // One more write: a late duplicate of an earlier notice would come before its notice.
    backend
        .map_set(&map, "last", Bytes::from("v"), SetCondition::Always)
        .await
        .unwrap();
    let mut rev = 0;
    while rev < 51 {
        let push = tokio::time::timeout(Duration::from_secs(10), pushes.recv())
            .await
            .expect("a notice")
            .expect("the connection is open");
        if push.kind != redis::PushKind::Message {
            continue;
        }
        let Some(redis::Value::BulkString(payload)) = push.data.get(1) else {
            panic!("a message without a payload: {push:?}");
        };
        let notice = pulse::codec::MapNotice::decode(payload).unwrap();
        rev += 1;
        assert_eq!(notice.rev, rev, "notices out of order or duplicated");
    }
}
