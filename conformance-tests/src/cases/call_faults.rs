//! Replicated maps and event streams under random failed calls: a share of every call
//! fails before it reached the store or after it was applied (its reply lost), as on a
//! real network, while a workload runs. Once calls succeed again, every replica equals the
//! store's content and every add that was acknowledged reached every sink and reader.
//!
//! (The pool's workload under the same faults is `pool_under_call_faults`.) Reads that keep
//! failing are reported to the caller, not only logged.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use pulse::{
    rmap::{Map, MapOptions},
    streaming::{NewEvent, ReadHealth, ReaderOptions, SinkOptions, Start, Stream, StreamOptions},
    Backend, Error,
};

use crate::{
    eventually,
    flaky::{Fault, Op},
    Ctx,
};

/// An error a write under injected faults may return: ambiguous, nothing else.
fn ambiguous<T>(r: pulse::Result<T>) {
    if let Err(e) = r {
        assert!(e.is_connection(), "unexpected {e:?}");
    }
}

/// Three replicas written concurrently (sets, deletes, increments, list edits) while 5% of
/// calls fail and the subscriptions are cut once: afterwards every replica converges to
/// exactly what the store holds.
pub async fn rmap_under_call_faults(cx: Ctx) {
    let flaky = cx.flaky();
    let backend: Arc<dyn Backend> = Arc::new(flaky.clone());
    let options = MapOptions::default()
        .with_keyspace(cx.keyspace())
        .with_check_interval(Duration::from_millis(100))
        .with_resync_delay(Duration::from_millis(10));
    let mut maps = Vec::new();
    for _ in 0..3 {
        maps.push(
            Map::join(backend.clone(), "shared", options.clone())
                .await
                .unwrap(),
        );
    }
    flaky.set_failure_rate(0.05);
    let writers: Vec<_> = maps
        .iter()
        .enumerate()
        .map(|(w, map)| {
            let map = map.clone();
            tokio::spawn(async move {
                for i in 0..200usize {
                    let key = format!("k{}", (i * 7 + w) % 40);
                    match i % 5 {
                        0 | 1 => ambiguous(map.set(&key, format!("{w}:{i}")).await),
                        2 => ambiguous(map.delete(&key).await),
                        3 => ambiguous(map.increment("counter", 1).await),
                        _ => ambiguous(map.append_unique("tags", [format!("t{}", i % 9)]).await),
                    }
                }
            })
        })
        .collect();
    cx.faults.kill_subscriptions().await;
    for w in writers {
        w.await.unwrap();
    }
    flaky.set_failure_rate(0.0);
    assert!(flaky.injected() > 0, "faults were injected");
    let stored = cx
        .stored_map(&cx.keyspace().map("shared").unwrap().hash)
        .await;
    assert!(!stored.is_empty());
    for (i, map) in maps.iter().enumerate() {
        eventually(&format!("replica {i} equals the store"), || async {
            let snap = map.snapshot();
            snap.len() == stored.len() && stored.iter().all(|(k, v)| snap.get(k) == Some(v))
        })
        .await;
    }
    for m in &maps {
        m.close().await.unwrap();
    }
}

/// Events added while 5% of calls fail, consumed by a sink of two instances and by a
/// reader through the same faults (reads, acks, claims, leases): afterwards every add that
/// returned an ID was delivered to the sink and to the reader.
pub async fn streaming_under_call_faults(cx: Ctx) {
    let flaky = cx.flaky();
    let backend: Arc<dyn Backend> = Arc::new(flaky.clone());
    let stream = Stream::new(
        backend,
        "orders",
        StreamOptions::default().with_keyspace(cx.keyspace()),
    )
    .unwrap();
    let sink_options = SinkOptions::default()
        .with_block(Duration::from_millis(100))
        .with_ack_grace(Duration::from_millis(400))
        .with_check_interval(Duration::from_millis(50))
        .with_retry_delay(Duration::from_millis(20))
        .with_start(Start::Oldest);
    let seen_by_sink = Arc::new(Mutex::new(HashSet::<Bytes>::new()));
    let seen_by_reader = Arc::new(Mutex::new(HashSet::<Bytes>::new()));
    let mut tasks = Vec::new();
    let mut sinks = Vec::new();
    for _ in 0..2 {
        let sink = stream
            .new_sink("billing", sink_options.clone())
            .await
            .unwrap();
        let mut rx = sink.subscribe().unwrap();
        let (seen, acker) = (seen_by_sink.clone(), sink.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                seen.lock().unwrap().insert(event.payload.clone());
                // A failed ack leaves the event pending: it is delivered again.
                ambiguous(acker.ack(&event).await);
            }
        }));
        sinks.push(sink);
    }
    let reader = stream
        .new_reader(
            ReaderOptions::default()
                .with_block(Duration::from_millis(100))
                .with_retry_delay(Duration::from_millis(20))
                .with_start(Start::Oldest),
        )
        .await
        .unwrap();
    let mut rx = reader.subscribe().unwrap();
    let seen = seen_by_reader.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            seen.lock().unwrap().insert(event.payload.clone());
        }
    }));
    flaky.set_failure_rate(0.05);
    let mut acknowledged = Vec::new();
    for i in 0..300 {
        let payload = Bytes::from(format!("event-{i}"));
        match stream.add_event(NewEvent::new("e", payload.clone())).await {
            Ok(_) => acknowledged.push(payload),
            Err(e) => assert!(matches!(e, Error::Connection { .. }), "unexpected {e:?}"),
        }
    }
    flaky.set_failure_rate(0.0);
    assert!(flaky.injected() > 0, "faults were injected");
    assert!(acknowledged.len() > 250, "most adds succeed");
    for (what, seen) in [("sink", &seen_by_sink), ("reader", &seen_by_reader)] {
        eventually(
            &format!("every acknowledged add reached the {what}"),
            || async {
                let seen = seen.lock().unwrap();
                acknowledged.iter().all(|p| seen.contains(p))
            },
        )
        .await;
    }
    reader.close().await.unwrap();
    for s in &sinks {
        s.close().await.unwrap();
    }
    for t in tasks {
        t.abort();
    }
}

/// Waits until `health` shows `want` (by variant).
async fn health_becomes(
    what: &str,
    health: &mut tokio::sync::watch::Receiver<ReadHealth>,
    failing: bool,
) {
    let wait = health.wait_for(|h| matches!(h, ReadHealth::Failing { .. }) == failing);
    tokio::time::timeout(crate::patience(), wait)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what} never became {}",
                if failing { "failing" } else { "reading" }
            )
        })
        .expect("health sender alive");
}

/// A reader and a sink whose every read fails say so through `health()` once the failures
/// outlast their patience, and say they read again (and deliver) once reads succeed.
pub async fn readers_and_sinks_report_failing_reads(cx: Ctx) {
    use crate::flaky::{Fault, Op};
    let flaky = cx.flaky();
    let backend: Arc<dyn Backend> = Arc::new(flaky.clone());
    let stream = Stream::new(
        backend,
        "s",
        StreamOptions::default().with_keyspace(cx.keyspace()),
    )
    .unwrap();
    let patience = Duration::from_millis(200);
    let reader = stream
        .new_reader(
            ReaderOptions::default()
                .with_block(Duration::from_millis(50))
                .with_retry_delay(Duration::from_millis(10))
                .with_read_patience(patience),
        )
        .await
        .unwrap();
    let sink = stream
        .new_sink(
            "g",
            SinkOptions::default()
                .with_block(Duration::from_millis(50))
                .with_retry_delay(Duration::from_millis(10))
                .with_read_patience(patience),
        )
        .await
        .unwrap();
    let (mut from_reader, mut from_sink) = (reader.subscribe().unwrap(), sink.subscribe().unwrap());
    let (mut rh, mut sh) = (reader.health(), sink.health());
    assert_eq!(*rh.borrow(), ReadHealth::Reading);
    flaky.fail_next(Fault::on(Op::StreamRead).before().times(u32::MAX));
    flaky.fail_next(Fault::on(Op::GroupRead).before().times(u32::MAX));
    health_becomes("the reader", &mut rh, true).await;
    health_becomes("the sink", &mut sh, true).await;
    assert!(matches!(&*sh.borrow(), ReadHealth::Failing { error } if !error.is_empty()));
    flaky.clear_faults();
    stream.add("after", "x").await.unwrap();
    health_becomes("the reader", &mut rh, false).await;
    health_becomes("the sink", &mut sh, false).await;
    for rx in [&mut from_reader, &mut from_sink] {
        let event = tokio::time::timeout(crate::patience(), rx.recv()).await;
        assert_eq!(event.ok().flatten().map(|e| e.name), Some("after".into()));
    }
    sink.close().await.unwrap();
    reader.close().await.unwrap();
}

/// A map closed while its replica is resyncing (a resync that keeps failing after a lost
/// subscription) closes at once: the resync stops on the shutdown, and so does the
/// replica's task, instead of waiting for a second shutdown that never comes.
pub async fn rmap_close_during_a_resync_returns(cx: Ctx) {
    let flaky = cx.flaky();
    let backend: Arc<dyn Backend> = Arc::new(flaky.clone());
    let options = MapOptions::default()
        .with_keyspace(cx.keyspace())
        .with_resync_delay(Duration::from_millis(200));
    let map = Map::join(backend, "resyncing", options).await.unwrap();
    map.set_and_wait("k", "v").await.unwrap();
    // Every read of the hash fails from now on: the resync after the cut retries.
    for op in [Op::HashScan, Op::HashGetFields, Op::HashGetAll] {
        flaky.fail_next(Fault::on(op).before().times(1_000_000));
    }
    cx.faults.kill_subscriptions().await;
    crate::eventually("a resync attempt failed", || async { flaky.injected() > 0 }).await;
    tokio::time::timeout(Duration::from_secs(5), map.close())
        .await
        .expect("close returns during a resync")
        .unwrap();
    flaky.clear_faults();
}
