//! Dead letters across a Redis crash: the server is SIGKILLed (AOF, fsync always) while a
//! sink moves poison events to its dead letters, and restarted. Afterwards every event is
//! in exactly one place — a dead letter, or still pending and moved later — and none is a
//! dead letter twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashSet, sync::Arc, time::Duration};

use pulse::{
    streaming::{NewEvent, SinkOptions, Start, Stream, StreamOptions},
    Backend,
};
use pulse_conformance::redis_server::private_server;
use pulse_redis::{RedisBackend, RedisOptions};
use tokio::time::Instant;

const EVENTS: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_mid_move_leaves_each_event_in_one_place() {
    let Some(server) = private_server(&["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let options = RedisOptions::default()
        .with_reconnect_delays(Duration::from_millis(20), Duration::from_millis(200))
        .with_command_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(2));
    let backend: Arc<dyn Backend> = Arc::new(
        RedisBackend::connect_with(&server.url(), options)
            .await
            .unwrap(),
    );
    let stream = Stream::new(backend.clone(), "payments", StreamOptions::default()).unwrap();
    for chunk in 0..EVENTS / 500 {
        let batch = (0..500)
            .map(|i| NewEvent::new("poison", format!("{}", chunk * 500 + i)))
            .collect();
        stream.add_batch(batch).await.unwrap();
    }
    let sink = stream
        .new_sink(
            "charger",
            SinkOptions::default()
                .with_start(Start::Oldest)
                .with_max_deliveries(1)
                .with_ack_grace(Duration::from_millis(200))
                .with_check_interval(Duration::from_millis(20)),
        )
        .await
        .unwrap();
    let mut events = sink.subscribe().unwrap();
    let mut ids = HashSet::new();
    while ids.len() < EVENTS {
        let e = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("an event")
            .expect("open");
        ids.insert(e.id);
    }
    // Each was delivered once and never acknowledged: the reclaimer moves them one by one
    // once the grace is over. Crash the server while it is at it.
    let dead = stream.dead_letters("charger").unwrap();
    let letters_key = dead.stream().key().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let moved_before = loop {
        let n = backend
            .stream_info(&letters_key)
            .await
            .unwrap()
            .map_or(0, |i| i.length);
        if n > 0 {
            break n;
        }
        assert!(Instant::now() < deadline, "no event was dead-lettered");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    server.stop();
    assert!(
        (moved_before as usize) < EVENTS,
        "the moves were over before the crash: nothing tested"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().unwrap();
    // Afterwards the moves complete: every event a dead letter, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let letters = dead.list(EVENTS * 2).await;
        let pending = sink.pending(EVENTS * 2).await;
        if let (Ok(letters), Ok(pending)) = (letters, pending) {
            let distinct: HashSet<_> = letters.iter().map(|l| l.event.id).collect();
            assert_eq!(
                distinct.len(),
                letters.len(),
                "an event was dead-lettered twice"
            );
            let both: Vec<_> = pending
                .iter()
                .filter(|p| distinct.contains(&p.id))
                .collect();
            assert!(
                both.is_empty(),
                "pending and dead-lettered at once: {both:?}"
            );
            if pending.is_empty() && distinct.len() == EVENTS {
                assert_eq!(distinct, ids);
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the moves did not complete after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.close().await.unwrap();
}
