//! Blocking stream reads merged onto one connection ([`RedisOptions::share_blocking_reads`]),
//! each test on its own private `redis-server`: fifty readers hold one blocking connection
//! (and fifty without sharing), the shared connection is replaced after a restart
//! without the caller seeing an error, and the pool of dedicated connections shrinks back
//! after a burst.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use pulse::{
    backend::{AddOptions, EntryId, StreamOps},
    streaming::{ReaderOptions, Stream, StreamOptions},
    Backend,
};
use pulse_conformance::{
    eventually,
    redis_server::{private_server, RedisServer},
};
use pulse_redis::{RedisBackend, RedisOptions};

/// `(connected clients, clients blocked in XREAD)`, not counting the asking connection.
async fn clients(server: &RedisServer) -> (usize, usize) {
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let lines: Vec<&str> = list.lines().filter(|l| !l.contains("cmd=client")).collect();
    let blocked = lines
        .iter()
        .filter(|l| l.contains("cmd=xread ") && l.contains("flags=b"))
        .count();
    (lines.len(), blocked)
}

async fn fifty_readers(share: bool) -> (usize, usize) {
    let server = private_server(&[]).expect("redis-server");
    let options = RedisOptions::default().with_share_blocking_reads(share);
    let backend = RedisBackend::connect_with(&server.url(), options)
        .await
        .unwrap();
    let b: Arc<dyn Backend> = Arc::new(backend);
    let mut readers = Vec::new();
    for i in 0..50 {
        let stream = Stream::new(b.clone(), &format!("s{i}"), StreamOptions::default()).unwrap();
        let reader = stream.new_reader(ReaderOptions::default()).await.unwrap();
        let rx = reader.subscribe().unwrap();
        readers.push((stream, reader, rx));
    }
    let want_blocked = if share { 1 } else { 50 };
    eventually("the readers are blocked", || async {
        clients(&server).await.1 == want_blocked
    })
    .await;
    let counts = clients(&server).await;
    // Every reader is still served: the merged read answers each with its own event.
    for (i, (stream, _, _)) in readers.iter().enumerate() {
        stream.add("e", format!("for {i}")).await.unwrap();
    }
    for (i, (_, _, rx)) in readers.iter_mut().enumerate() {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("delivered")
            .unwrap();
        assert_eq!(event.payload, Bytes::from(format!("for {i}")));
    }
    for (_, reader, _) in readers {
        reader.close().await.unwrap();
    }
    counts
}

/// Fifty idle readers of one backend hold one blocking connection between them (before:
/// one each, 101 connections for 50 readers and 50 sinks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_readers_hold_one_blocking_connection() {
    if private_server(&[]).is_none() {
        return;
    }
    let (shared, blocked) = fifty_readers(true).await;
    assert_eq!(blocked, 1);
    // The command and pub/sub connections, the shared blocking one, and the pooled ones
    // that the readers' first (non-blocking) reads ran on concurrently — one or two,
    // closed after 30 s idle.
    assert!(shared <= 6, "{shared} connections for 50 shared readers");
    let (own, blocked) = fifty_readers(false).await;
    assert_eq!(blocked, 50);
    assert!(own >= 51, "{own} connections for 50 unshared readers");
}

/// The shared read's connection, kept across a server restart, is dead: the next shared
/// read replaces it and the caller sees no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_read_after_a_restart_replaces_its_dead_connection() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = RedisBackend::connect_with(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    let cursor = [("t".to_owned(), EntryId::ZERO)];
    let short = Some(Duration::from_millis(100));
    assert!(backend
        .stream_read(&cursor, 10, short)
        .await
        .unwrap()
        .is_empty());
    server.restart().unwrap();
    let opts = AddOptions::default();
    eventually("the server is back", || async {
        backend.stream_info("t").await.is_ok()
    })
    .await;
    let got = backend.stream_read(&cursor, 10, short).await;
    assert!(got.expect("a fresh connection").is_empty());
    let reader = {
        let backend = backend.clone();
        tokio::spawn(async move {
            let cursor = [("t".to_owned(), EntryId::ZERO)];
            backend
                .stream_read(&cursor, 10, Some(Duration::from_secs(30)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // let the read block
    let id = backend
        .stream_add("t", vec![("n".into(), Bytes::from("x"))], &opts)
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(Some(got[0].entries[0].id), id);
}

/// Twenty concurrent unshared reads open twenty dedicated connections; once they have been
/// idle for `blocking_idle_timeout`, the pool's next use closes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_reads_does_not_pin_its_connections() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let options = RedisOptions::default()
        .with_share_blocking_reads(false)
        .with_blocking_idle_timeout(Duration::from_millis(300));
    let backend = RedisBackend::connect_with(&server.url(), options)
        .await
        .unwrap();
    let burst = (0..20).map(|i| {
        let backend = backend.clone();
        tokio::spawn(async move {
            let cursor = [(format!("s{i}"), EntryId::ZERO)];
            backend
                .stream_read(&cursor, 10, Some(Duration::from_millis(200)))
                .await
        })
    });
    for read in burst.collect::<Vec<_>>() {
        assert!(read.await.unwrap().unwrap().is_empty());
    }
    assert!(
        clients(&server).await.0 >= 21,
        "the burst had its own connections"
    );
    let cursor = [("s0".to_owned(), EntryId::ZERO)];
    eventually("idle connections are closed", || async {
        let short = Some(Duration::from_millis(1));
        backend.stream_read(&cursor, 10, short).await.unwrap();
        clients(&server).await.0 <= 3
    })
    .await;
}
