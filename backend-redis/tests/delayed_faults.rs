//! Delayed events when things break on Redis: foreign data planted under the delay keys is
//! set aside, never released and never in the way; the server SIGKILLed (AOF, fsync
//! always) while due events are handed to the stream and restarted: afterwards every
//! event is in exactly one place, the stream, once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashSet, sync::Arc, time::Duration};

use pulse::{
    backend::{pack_fields, AddOptions, StreamOps},
    streaming::{NewEvent, ReaderOptions, Start, Stream, StreamOptions},
    Backend, Error,
};
use pulse_conformance::redis_server::private_server;
use pulse_redis::{RedisBackend, RedisOptions};
use tokio::time::Instant;

fn fast() -> RedisOptions {
    RedisOptions::default()
        .with_reconnect_delays(Duration::from_millis(20), Duration::from_millis(200))
        .with_health_check_interval(Duration::from_millis(200))
        .with_command_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(2))
}

fn entry(name: &str) -> pulse::backend::Fields {
    vec![
        ("n".into(), bytes::Bytes::from(name.to_owned())),
        ("p".into(), bytes::Bytes::from("x")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_delayed_entries_are_set_aside_and_kept() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = RedisBackend::connect_with(&server.url(), fast())
        .await
        .unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (s, index, data) = ("s", "s:delayed", "s:delayed:data");
    let now = backend
        .delay_release(s, index, data, 1, &AddOptions::default())
        .await
        .unwrap()
        .now_ms;
    backend
        .delay_add(index, data, "good", now - 5, entry("good"))
        .await
        .unwrap();
    // A truncated packing, a packing with an odd field count, and an index entry whose
    // data is gone: all due before the good one.
    let mut odd = pack_fields(&entry("x"));
    odd.extend_from_slice(&3u32.to_be_bytes());
    odd.extend_from_slice(b"abc");
    for (id, packed) in [("cut", b"\x00\x00\x00\x09ab".to_vec()), ("odd", odd)] {
        let _: () = redis::pipe()
            .cmd("HSET")
            .arg(data)
            .arg(id)
            .arg(packed)
            .cmd("ZADD")
            .arg(index)
            .arg(now - 50)
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("ZADD")
        .arg(index)
        .arg(now - 60)
        .arg("no-data")
        .query_async(&mut conn)
        .await
        .unwrap();
    let out = backend
        .delay_release(s, index, data, 10, &AddOptions::default())
        .await
        .unwrap();
    assert_eq!(out.released.len(), 1, "the good one is released");
    let mut unreadable = out.unreadable.clone();
    unreadable.sort();
    assert_eq!(unreadable, ["cut", "no-data", "odd"]);
    assert_eq!(out.next_due_ms, None, "set aside, not due");
    // Kept, out of the way: the data is still there for an operator to inspect.
    let kept: Vec<String> = redis::cmd("HKEYS")
        .arg(data)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let info = backend.delay_info(index).await.unwrap();
    assert_eq!((info.count, info.next_due_ms), (2, None));
    let again = backend
        .delay_release(s, index, data, 10, &AddOptions::default())
        .await
        .unwrap();
    assert!(again.released.is_empty() && again.unreadable.is_empty());
    // A key of another type where the index belongs: a typed error through the API.
    let stream = Stream::new(Arc::new(backend), "t", StreamOptions::default()).unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{}:delayed", stream.key()))
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let e = stream
        .add_delayed(NewEvent::new("e", "x").deliver_after(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::WrongType { .. }), "{e:?}");
    let e = stream.delayed().await.unwrap_err();
    assert!(matches!(e, Error::WrongType { .. }), "{e:?}");
}

const EVENTS: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_mid_hand_off_leaves_each_delayed_event_in_one_place() {
    let Some(server) = private_server(&["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let backend: Arc<dyn Backend> = Arc::new(
        RedisBackend::connect_with(&server.url(), fast())
            .await
            .unwrap(),
    );
    let options = StreamOptions::default()
        .with_delay_mover(Duration::from_millis(500), Duration::from_millis(200));
    let stream = Stream::new(backend.clone(), "payments", options).unwrap();
    // Due over ~1.5 s, so the hand-off is under way when the server dies.
    for i in 0..EVENTS {
        let delay = Duration::from_millis(200 + (i as u64 * 7 % 1500));
        stream
            .add_delayed(NewEvent::new("e", i.to_string()).deliver_after(delay))
            .await
            .unwrap();
    }
    let reader = stream
        .new_reader(
            ReaderOptions::default()
                .with_start(Start::Oldest)
                .with_block(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    let mut events = reader.subscribe().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = backend
            .stream_info(stream.key())
            .await
            .unwrap()
            .map_or(0, |i| i.length);
        if n > 0 {
            assert!(
                (n as usize) < EVENTS,
                "the hand-off was over before the crash"
            );
            break;
        }
        assert!(Instant::now() < deadline, "nothing was handed off");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().unwrap();
    let mut seen = Vec::new();
    while seen.len() < EVENTS {
        let e = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("every event after the restart")
            .expect("open");
        seen.push(String::from_utf8(e.payload.to_vec()).unwrap());
    }
    let distinct: HashSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), EVENTS, "an event appeared twice");
    let stored = backend
        .stream_info(stream.key())
        .await
        .unwrap()
        .map_or(0, |i| i.length);
    assert_eq!(stored as usize, EVENTS, "in the stream once each");
    assert_eq!(stream.delayed().await.unwrap().count, 0, "none left behind");
    reader.close().await.unwrap();
}
