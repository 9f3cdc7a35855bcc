//! Delayed delivery: events held until due, then appended in due order by the movers
//! that readers and sinks run; cancel, bad input, lost replies and lost notices.

use std::time::SystemTime;

use super::*;
use crate::flaky::{Fault, Op};
use pulse::streaming::{Due, MAX_DELAY};

/// A stream whose movers hold short leases; their idle check runs every `check`.
fn delayed_stream(
    cx: &Ctx,
    backend: std::sync::Arc<dyn pulse::Backend>,
    name: &str,
    check: Duration,
) -> Stream {
    Stream::new(
        backend,
        name,
        StreamOptions::default()
            .with_keyspace(cx.keyspace())
            .with_delay_mover(Duration::from_millis(600), check),
    )
    .unwrap()
}

/// An idle check that never comes within a case: only notices wake the movers.
const NEVER: Duration = Duration::from_secs(3600);

/// Delayed events stay invisible until due, then reach readers and sinks in due order,
/// never before their due time; the stream says what it holds meanwhile.
pub async fn delayed_events_appear_when_due_in_due_order(cx: Ctx) {
    let s = delayed_stream(&cx, cx.backend.clone(), "s", NEVER);
    let reader = s.new_reader(reader_opts()).await.unwrap();
    let mut from_reader = reader.subscribe().unwrap();
    let sink = s.new_sink("g", sink_opts()).await.unwrap();
    let mut from_sink = sink.subscribe().unwrap();
    let mut due = Vec::new();
    for (name, ms) in [("late", 900), ("early", 300), ("middle", 600)] {
        let at = s
            .add_delayed(NewEvent::new(name, "x").deliver_after(Duration::from_millis(ms)))
            .await
            .unwrap();
        due.push((name, at.due));
    }
    let now = s.add("now", "y").await.unwrap();
    let held = s.delayed().await.unwrap();
    assert_eq!(held.count, 3);
    assert_eq!(held.next_due, Some(due[1].1));
    assert_eq!(
        s.len().await.unwrap(),
        1,
        "only the undelayed event is visible"
    );
    assert_eq!(next(&mut from_reader).await.id, now);
    let e = next(&mut from_sink).await;
    assert_eq!(e.id, now);
    sink.ack(&e).await.unwrap();
    for want in ["early", "middle", "late"] {
        let e = next(&mut from_reader).await;
        let seen = SystemTime::now();
        let (_, at) = due.iter().find(|(n, _)| *n == want).unwrap();
        assert_eq!(e.name, want);
        assert!(seen >= *at, "{want} was visible before it was due");
        let e = next(&mut from_sink).await;
        assert_eq!(e.name, want);
        sink.ack(&e).await.unwrap();
    }
    assert_eq!(s.delayed().await.unwrap().count, 0);
    assert_eq!(s.len().await.unwrap(), 4);
    // A time already past is due at once; headers and topics travel with the event.
    s.add_delayed(
        NewEvent::new("past", "z")
            .with_topic("a.b")
            .with_header("kind", "late")
            .deliver_at(SystemTime::now() - Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let e = next(&mut from_reader).await;
    assert_eq!(
        (e.name.as_str(), e.topic.as_deref(), e.header("kind")),
        ("past", Some("a.b"), Some("late"))
    );
    quiet(&mut from_reader, Duration::from_millis(300)).await;
    reader.close().await.unwrap();
    sink.close().await.unwrap();
}

/// A delayed event can be cancelled until due; bad input is refused and writes nothing.
pub async fn delayed_events_refuse_bad_input_and_can_be_cancelled(cx: Ctx) {
    let s = delayed_stream(&cx, cx.backend.clone(), "s", NEVER);
    let later = s
        .add_delayed(NewEvent::new("later", "x").deliver_after(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(later.due > SystemTime::now() + Duration::from_secs(3500));
    assert!(s.cancel_delayed(&later.id).await.unwrap());
    assert!(
        !s.cancel_delayed(&later.id).await.unwrap(),
        "cancelled once"
    );
    assert!(!s.cancel_delayed("never-added").await.unwrap());
    let delayed = || NewEvent::new("e", "x").deliver_after(Duration::from_secs(1));
    for (what, result) in [
        ("add_event", s.add_event(delayed()).await.map(|_| ())),
        (
            "add_batch",
            s.add_batch(vec![NewEvent::new("a", "b"), delayed()])
                .await
                .map(|_| ()),
        ),
        (
            "no due time",
            s.add_delayed(NewEvent::new("e", "x")).await.map(|_| ()),
        ),
        (
            "dedup key",
            s.add_delayed(delayed().with_dedup_key("k"))
                .await
                .map(|_| ()),
        ),
        (
            "too far",
            s.add_delayed(NewEvent::new("e", "x").deliver_after(MAX_DELAY * 2))
                .await
                .map(|_| ()),
        ),
        (
            "before 1970",
            s.add_delayed(NewEvent {
                due: Some(Due::At(SystemTime::UNIX_EPOCH - Duration::from_secs(1))),
                ..NewEvent::new("e", "x")
            })
            .await
            .map(|_| ()),
        ),
        (
            "empty name",
            s.add_delayed(NewEvent::new("", "x").deliver_after(Duration::from_secs(1)))
                .await
                .map(|_| ()),
        ),
    ] {
        let e = result.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{what}: {e:?}");
    }
    assert_eq!(s.delayed().await.unwrap().count, 0, "nothing held");
    assert_eq!(s.len().await.unwrap(), 0, "nothing added");
    // Destroy forgets the delayed events with the stream.
    s.add_delayed(delayed()).await.unwrap();
    s.destroy().await.unwrap();
    assert_eq!(s.delayed().await.unwrap().count, 0);
}

/// Several movers (one per backend handle, as in several processes) and lost replies of
/// releases: every delayed event appears once, in due order.
pub async fn delayed_events_move_once_across_movers_and_lost_replies(cx: Ctx) {
    const N: u64 = 200;
    let producer = delayed_stream(&cx, cx.backend.clone(), "s", NEVER);
    let reader = producer.new_reader(reader_opts()).await.unwrap();
    let mut rx = reader.subscribe().unwrap();
    let mut sinks = Vec::new();
    for _ in 0..2 {
        let flaky = cx.flaky();
        flaky.fail_next(Fault::on(Op::DelayRelease).times(3));
        flaky.fail_next(Fault::on(Op::DelayRelease).before().times(2));
        let other = delayed_stream(&cx, std::sync::Arc::new(flaky), "s", NEVER);
        sinks.push(other.new_sink("g", sink_opts()).await.unwrap());
    }
    // Due times spread over ~600 ms in a shuffled order, all distinct.
    let mut due = std::collections::HashMap::new();
    for i in 0..N {
        let ms = 100 + (i * 37 % N) * 3;
        let at = producer
            .add_delayed(NewEvent::new("e", i.to_string()).deliver_after(Duration::from_millis(ms)))
            .await
            .unwrap();
        due.insert(i.to_string(), at.due);
    }
    let mut seen = Vec::new();
    while seen.len() < N as usize {
        let e = next(&mut rx).await;
        seen.push(String::from_utf8(e.payload.to_vec()).unwrap());
    }
    quiet(&mut rx, Duration::from_millis(500)).await; // no duplicate follows
    let distinct: HashSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), N as usize, "an event appeared twice");
    let order: Vec<SystemTime> = seen.iter().map(|p| due[p]).collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "released out of due order"
    );
    assert_eq!(producer.delayed().await.unwrap().count, 0);
    for sink in sinks {
        sink.close().await.unwrap();
    }
    reader.close().await.unwrap();
}

/// A notice lost with the producer's connection: the idle movers' check still finds the
/// event and delivers it.
pub async fn delayed_events_survive_a_lost_notice(cx: Ctx) {
    let consumer = delayed_stream(&cx, cx.backend.clone(), "s", Duration::from_millis(200));
    let reader = consumer.new_reader(reader_opts()).await.unwrap();
    let mut rx = reader.subscribe().unwrap();
    let flaky = cx.flaky();
    flaky.fail_next(Fault::on(Op::Publish).before());
    let producer = delayed_stream(&cx, std::sync::Arc::new(flaky.clone()), "s", NEVER);
    // One delivery first, so the reader's mover has gone idle before the lost notice.
    consumer
        .add_delayed(NewEvent::new("first", "x").deliver_after(Duration::from_millis(10)))
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await.name, "first");
    producer
        .add_delayed(NewEvent::new("e", "x").deliver_after(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(flaky.injected(), 1, "the notice was lost");
    assert_eq!(next(&mut rx).await.name, "e");
    reader.close().await.unwrap();
}
