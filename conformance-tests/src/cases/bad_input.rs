//! Bad input, table-driven over the public entry points: invalid names, keys and oversized
//! payloads are typed errors that write nothing; foreign data planted under our keys is
//! skipped, never a panic, and valid work around it goes on.

use std::time::Duration;

use bytes::Bytes;
use pulse::{
    backend::{MapTarget, SetCondition},
    keys::Keyspace,
    pool::{Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{NewEvent, SinkOptions, Stream, StreamOptions},
    Error,
};

use crate::{eventually, util::Noop, Ctx};

fn names() -> Vec<String> {
    [
        "",
        "a b",
        "a*",
        "a?",
        "a[",
        "a]",
        "a{b}",
        "tab\t",
        "nul\0",
        "new\nline",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([&"x".repeat(513)].map(String::clone))
    .collect()
}

fn keys() -> Vec<String> {
    ["", "a=b", "=rev"]
        .iter()
        .map(|s| s.to_string())
        .chain(["k".repeat(64 * 1024 + 1)])
        .collect()
}

fn invalid_name<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::InvalidName { .. }))
}

fn invalid_key<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::InvalidKey { .. }))
}

fn too_large<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::PayloadTooLarge { .. }))
}

/// Every entry point rejects invalid names, keys and payloads with a typed error.
pub async fn bad_input_is_typed_and_writes_nothing(cx: Ctx) {
    let b = cx.backend.clone();
    let ks = cx.keyspace();
    let stream = Stream::new(
        b.clone(),
        "s",
        StreamOptions::default()
            .with_keyspace(ks.clone())
            .with_max_payload(8),
    )
    .unwrap();
    let node = Node::join(
        b.clone(),
        "pool",
        NodeOptions::default()
            .with_keyspace(ks.clone())
            .with_max_payload(8),
    )
    .await
    .unwrap();
    let map = Map::join(
        b.clone(),
        "m",
        MapOptions::default()
            .with_keyspace(ks.clone())
            .with_max_value_size(8),
    )
    .await
    .unwrap();
    for name in names() {
        assert!(invalid_name(Keyspace::new(name.clone())), "prefix {name:?}");
        assert!(
            invalid_name(
                Map::join(
                    b.clone(),
                    &name,
                    MapOptions::default().with_keyspace(ks.clone())
                )
                .await
            ),
            "map {name:?}"
        );
        assert!(
            invalid_name(Stream::new(b.clone(), &name, StreamOptions::default())),
            "stream {name:?}"
        );
        assert!(
            invalid_name(stream.new_sink(&name, SinkOptions::default()).await),
            "sink {name:?}"
        );
        assert!(
            invalid_name(
                Node::join(
                    b.clone(),
                    &name,
                    NodeOptions::default().with_keyspace(ks.clone())
                )
                .await
            ),
            "pool {name:?}"
        );
        assert!(
            invalid_name(node.new_ticker(&name, Duration::from_millis(10)).await),
            "ticker {name:?}"
        );
        assert!(
            invalid_name(
                stream
                    .add_event(NewEvent::new("e", "").with_topic(name.clone()))
                    .await
            ),
            "topic {name:?}"
        );
    }
    for key in keys() {
        assert!(
            invalid_key(map.set(&key, "v").await),
            "map key {:?}",
            &key[..key.len().min(8)]
        );
        assert!(invalid_key(map.delete(&key).await));
        assert!(invalid_key(map.increment(&key, 1).await));
        assert!(invalid_key(map.append(&key, ["x"]).await));
        assert!(invalid_key(map.test_and_set(&key, "a", "b").await));
        assert!(invalid_key(node.dispatch_job(&key, "p").await));
        assert!(invalid_key(node.stop_job(&key).await));
        assert!(invalid_key(node.notify_worker(&key, "p").await));
    }
    assert!(too_large(map.set("k", "123456789").await));
    assert!(too_large(map.append("k", ["12345", "6789"]).await));
    assert!(too_large(stream.add("e", "123456789").await));
    assert!(too_large(node.dispatch_job("k", "123456789").await));
    assert!(too_large(node.notify_worker("k", "123456789").await));
    assert!(matches!(
        stream.add("", "x").await,
        Err(Error::InvalidArgument(_))
    ));
    // An event name is at most 512 bytes (a 17 MiB one was accepted).
    assert!(matches!(
        stream.add(&"n".repeat(513), "x").await,
        Err(Error::InvalidArgument(_))
    ));
    // Nothing reached the backend.
    for key in [
        ks.map("m").unwrap().hash,
        stream.key().to_owned(),
        ks.pool_map("pool", "jobs").unwrap().hash,
    ] {
        assert!(!b.exists(&key).await.unwrap(), "{key} was written");
    }
    node.close().await.unwrap();
}

/// Garbage planted in the pool's maps (a job record that is not one, an owner that is
/// not a worker) is skipped or taken over; valid jobs run; nothing panics.
pub async fn pool_survives_foreign_data(cx: Ctx) {
    let ks = cx.keyspace();
    let target = |part: &str| {
        let k = ks.pool_map("pool", part).unwrap();
        MapTarget::new(k.hash, k.channel)
    };
    let b = &cx.backend;
    b.map_set(
        &target("jobs"),
        "junk",
        Bytes::from_static(b"\xff\x00not a record"),
        SetCondition::Always,
    )
    .await
    .unwrap();
    b.map_set(
        &target("owners"),
        "adopted",
        Bytes::from_static(b"no-such-worker#7"),
        SetCondition::Always,
    )
    .await
    .unwrap();
    b.map_set(
        &target("workers"),
        "ghost",
        Bytes::from_static(b"\x01garbage"),
        SetCondition::Always,
    )
    .await
    .unwrap();
    let node = Node::join(
        b.clone(),
        "pool",
        NodeOptions::default()
            .with_keyspace(ks.clone())
            .with_worker_ttl(Duration::from_millis(600)),
    )
    .await
    .unwrap();
    let w = node.add_worker(Noop).await.unwrap();
    node.dispatch_job("good", "x").await.unwrap();
    node.dispatch_job("adopted", "y").await.unwrap(); // its stale owner is taken over
    eventually("valid jobs run", || async {
        w.jobs() == ["adopted", "good"]
    })
    .await;
    assert_eq!(node.job_payload("junk"), None, "a garbage record is no job");
    assert!(
        node.pool_workers().iter().all(|pw| pw.id != "ghost"),
        "a garbage worker record is ignored"
    );
    node.close().await.unwrap();
}
