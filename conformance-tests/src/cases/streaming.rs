//! Event streaming (`pulse::streaming`) on the backend under test: the spec's behaviours
//! (streaming.md §6, adapted where a weakness is fixed) plus sharing, crashes and lost
//! streams.

use std::{collections::HashSet, time::Duration};

use bytes::Bytes;
use pulse::{
    backend::{AddOptions, EntryId, KeyExpiry, Ttl},
    streaming::{
        Event, EventReceiver, Filter, NewEvent, ReaderOptions, SinkOptions, Start, Stream,
        StreamOptions,
    },
    Error,
};

use crate::{eventually, Ctx};

fn stream(cx: &Ctx, name: &str) -> Stream {
    Stream::new(
        cx.backend.clone(),
        name,
        StreamOptions::default().with_keyspace(cx.keyspace()),
    )
    .unwrap()
}

fn reader_opts() -> ReaderOptions {
    ReaderOptions::default()
        .with_block(Duration::from_millis(100))
        .with_start(Start::Oldest)
}

fn sink_opts() -> SinkOptions {
    SinkOptions::default()
        .with_block(Duration::from_millis(100))
        .with_ack_grace(Duration::from_millis(300))
        .with_check_interval(Duration::from_millis(20))
        .with_retry_delay(Duration::from_millis(20))
        .with_start(Start::Oldest)
}

async fn next(rx: &mut EventReceiver) -> Event {
    tokio::time::timeout(crate::patience(), rx.recv())
        .await
        .expect("no event in time")
        .expect("subscription ended")
}

/// Asserts nothing arrives within `d`.
async fn quiet(rx: &mut EventReceiver, d: Duration) {
    if let Ok(Some(e)) = tokio::time::timeout(d, rx.recv()).await {
        panic!("unexpected event {e:?}");
    }
}

/// Add stores `n`, `p` and `t`; remove and destroy work; destroy of nothing is fine.
pub async fn streaming_add_remove_destroy(cx: Ctx) {
    let s = stream(&cx, "s");
    s.destroy().await.unwrap();
    assert!(!cx.backend.exists(s.key()).await.unwrap());
    let first = s.add("foo", "bar").await.unwrap();
    s.add_event(NewEvent::new("baz", Bytes::from_static(b"\x00\xff")).with_topic("t1"))
        .await
        .unwrap();
    let entries = cx
        .backend
        .stream_range(s.key(), EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert_eq!(entries[0].field("n"), Some(&Bytes::from("foo")));
    assert_eq!(entries[0].field("p"), Some(&Bytes::from("bar")));
    assert_eq!(entries[1].field("t"), Some(&Bytes::from("t1")));
    assert_eq!(s.len().await.unwrap(), 2);
    assert_eq!(s.remove(&[first]).await.unwrap(), 1);
    assert_eq!(s.len().await.unwrap(), 1);
    s.destroy().await.unwrap();
    assert!(!cx.backend.exists(s.key()).await.unwrap());
    assert!(matches!(
        s.add("", "x").await,
        Err(Error::InvalidArgument(_))
    ));
    let small = Stream::new(
        cx.backend.clone(),
        "small",
        StreamOptions::default()
            .with_keyspace(cx.keyspace())
            .with_max_payload(2),
    )
    .unwrap();
    assert!(matches!(
        small.add("n", "123").await,
        Err(Error::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        Stream::new(cx.backend.clone(), "bad name", StreamOptions::default()),
        Err(Error::InvalidName { .. })
    ));
    assert_eq!(
        s.add_if_exists(NewEvent::new("n", "p")).await.unwrap(),
        None
    );
    assert!(!cx.backend.exists(s.key()).await.unwrap());
}

/// Stream TTLs ride with the add: absolute is kept, sliding is extended; trimming is opt-in.
pub async fn streaming_ttl_and_trim(cx: Ctx) {
    let opts = || StreamOptions::default().with_keyspace(cx.keyspace());
    let abs = Stream::new(
        cx.backend.clone(),
        "abs",
        opts().with_ttl(Ttl::Absolute(Duration::from_secs(10))),
    )
    .unwrap();
    let slide = Stream::new(
        cx.backend.clone(),
        "slide",
        opts().with_ttl(Ttl::Sliding(Duration::from_secs(10))),
    )
    .unwrap();
    let ttl = |key: String| {
        let b = cx.backend.clone();
        async move {
            match b.expiry(&key).await.unwrap() {
                KeyExpiry::In(d) => d,
                other => panic!("{other:?}"),
            }
        }
    };
    abs.add("a", "1").await.unwrap();
    slide.add("a", "1").await.unwrap();
    let (a1, s1) = (
        ttl(abs.key().to_owned()).await,
        ttl(slide.key().to_owned()).await,
    );
    tokio::time::sleep(Duration::from_millis(50)).await; // let the clock advance
    abs.add("a", "2").await.unwrap();
    slide.add("a", "2").await.unwrap();
    assert!(ttl(abs.key().to_owned()).await < a1);
    assert!(ttl(slide.key().to_owned()).await > s1 - Duration::from_millis(49));
    let plain = stream(&cx, "plain");
    plain
        .add_batch(
            (0..300)
                .map(|i| NewEvent::new("e", i.to_string()))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(plain.len().await.unwrap(), 300, "no trimming by default");
    let trimmed = Stream::new(cx.backend.clone(), "trimmed", opts().with_max_len(10)).unwrap();
    trimmed
        .add_batch(
            (0..1000)
                .map(|i| NewEvent::new("e", i.to_string()))
                .collect(),
        )
        .await
        .unwrap();
    assert!(trimmed.len().await.unwrap() < 1000);
}

/// A reader from the oldest event gets events with their name, topic and payload.
pub async fn reader_receives_events(cx: Ctx) {
    let s = stream(&cx, "s");
    let reader = s.new_reader(reader_opts()).await.unwrap();
    let mut rx = reader.subscribe().unwrap();
    let id = s
        .add_event(NewEvent::new("created", "payload").with_topic("orders"))
        .await
        .unwrap();
    let e = next(&mut rx).await;
    assert_eq!(
        (
            e.id,
            e.name.as_str(),
            e.topic.as_deref(),
            &e.payload[..],
            e.sink.as_deref()
        ),
        (id, "created", Some("orders"), &b"payload"[..], None)
    );
    assert_eq!(e.stream, "s");
    let typed = s.add_typed("typed", &(7u8, "x".to_owned())).await.unwrap();
    let e = next(&mut rx).await;
    assert_eq!(
        (e.id, e.decode::<(u8, String)>().unwrap()),
        (typed, (7, "x".to_owned()))
    );
    reader.close().await;
}

/// `Newest` is resolved when the reader is created: events added before the first read
/// are delivered (W3); `At` is inclusive (W6); `After` is exclusive.
pub async fn reader_start_positions(cx: Ctx) {
    let s = stream(&cx, "s");
    let first = s.add("e1", "").await.unwrap();
    let second = s.add("e2", "").await.unwrap();
    let newest = s
        .new_reader(reader_opts().with_start(Start::Newest))
        .await
        .unwrap();
    s.add("e3", "").await.unwrap(); // before anyone subscribed or read
    let mut rx = newest.subscribe().unwrap();
    assert_eq!(next(&mut rx).await.name, "e3");
    let after = s
        .new_reader(reader_opts().with_start(Start::After(first)))
        .await
        .unwrap();
    let mut rx = after.subscribe().unwrap();
    assert_eq!(
        (next(&mut rx).await.id, next(&mut rx).await.name),
        (second, "e3".to_owned())
    );
    let at = std::time::UNIX_EPOCH + Duration::from_millis(second.ms);
    let inclusive = s
        .new_reader(reader_opts().with_start(Start::At(at)))
        .await
        .unwrap();
    let mut rx = inclusive.subscribe().unwrap();
    let got = next(&mut rx).await;
    assert!(
        got.id <= second && got.id.ms == second.ms,
        "At must include the event at that time: {got:?}"
    );
    for r in [newest, after, inclusive] {
        r.close().await;
    }
}

/// Several subscribers each get every event; filters select by topic, pattern or predicate.
pub async fn reader_subscribers_and_filters(cx: Ctx) {
    let s = stream(&cx, "s");
    let all = s.new_reader(reader_opts()).await.unwrap();
    let (mut a, mut b) = (all.subscribe().unwrap(), all.subscribe().unwrap());
    let exact = s
        .new_reader(reader_opts().with_filter(Filter::Topic("eu".into())))
        .await
        .unwrap();
    let pattern = s
        .new_reader(reader_opts().with_filter(Filter::pattern("^u").unwrap()))
        .await
        .unwrap();
    let custom = s
        .new_reader(reader_opts().with_filter(Filter::custom(|e| e.name == "keep")))
        .await
        .unwrap();
    let (mut ex, mut pa, mut cu) = (
        exact.subscribe().unwrap(),
        pattern.subscribe().unwrap(),
        custom.subscribe().unwrap(),
    );
    for (name, topic) in [("x", "eu"), ("keep", "us"), ("y", "uk"), ("z", "asia")] {
        s.add_event(NewEvent::new(name, "").with_topic(topic))
            .await
            .unwrap();
    }
    for rx in [&mut a, &mut b] {
        let names: Vec<String> = [
            next(rx).await,
            next(rx).await,
            next(rx).await,
            next(rx).await,
        ]
        .into_iter()
        .map(|e| e.name)
        .collect();
        assert_eq!(names, ["x", "keep", "y", "z"]);
    }
    assert_eq!(next(&mut ex).await.name, "x");
    assert_eq!(
        (next(&mut pa).await.name, next(&mut pa).await.name),
        ("keep".into(), "y".into())
    );
    assert_eq!(next(&mut cu).await.name, "keep");
    quiet(&mut ex, Duration::from_millis(100)).await;
    assert!(
        matches!(Filter::pattern("("), Err(Error::InvalidArgument(m)) if m.starts_with("topic pattern must be a valid regex: "))
    );
    for r in [all, exact, pattern, custom] {
        r.close().await;
    }
}

/// Streams are added by name, idempotently, and removed by name, at run time.
pub async fn reader_add_and_remove_streams(cx: Ctx) {
    let (s1, s2) = (stream(&cx, "s1"), stream(&cx, "s2"));
    let reader = s1
        .new_reader(reader_opts().with_block(Duration::from_secs(30)))
        .await
        .unwrap();
    let mut rx = reader.subscribe().unwrap();
    reader.add_stream(&s2, None).await.unwrap();
    reader.add_stream(&s2.clone(), None).await.unwrap();
    assert_eq!(reader.streams(), ["s1", "s2"]);
    s2.add("from2", "").await.unwrap();
    let e = next(&mut rx).await;
    assert_eq!((e.stream.as_str(), e.name.as_str()), ("s2", "from2"));
    quiet(&mut rx, Duration::from_millis(100)).await; // no duplicate from the second add
    reader.remove_stream("s2");
    s2.add("ignored", "").await.unwrap();
    s1.add("from1", "").await.unwrap();
    assert_eq!(next(&mut rx).await.name, "from1");
    quiet(&mut rx, Duration::from_millis(100)).await;
    reader.close().await;
}

/// Close interrupts a long blocking read at once, ends subscriptions, keeps the stream.
pub async fn reader_close_is_prompt(cx: Ctx) {
    let s = stream(&cx, "s");
    s.add("e", "").await.unwrap();
    let reader = s
        .new_reader(reader_opts().with_block(Duration::from_secs(60)))
        .await
        .unwrap();
    let mut rx = reader.subscribe().unwrap();
    next(&mut rx).await;
    tokio::time::sleep(Duration::from_millis(50)).await; // let it block
    let started = tokio::time::Instant::now();
    reader.close().await;
    reader.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "close waited for the blocking read"
    );
    assert!(reader.is_closed());
    assert_eq!(rx.recv().await, None);
    assert!(matches!(reader.subscribe(), Err(Error::Closed { .. })));
    assert!(matches!(
        reader.add_stream(&s, None).await,
        Err(Error::Closed { .. })
    ));
    reader.remove_stream("s");
    assert!(
        cx.backend.exists(s.key()).await.unwrap(),
        "the stream is untouched"
    );
}

/// Entries that are not events (foreign writers) are skipped by readers, acknowledged by
/// sinks; valid events around them are delivered.
pub async fn streaming_skips_malformed_entries(cx: Ctx) {
    let s = stream(&cx, "s");
    let reader = s.new_reader(reader_opts()).await.unwrap();
    let sink = s.new_sink("g", sink_opts()).await.unwrap();
    let (mut rr, mut sr) = (reader.subscribe().unwrap(), sink.subscribe().unwrap());
    cx.backend
        .stream_add(
            s.key(),
            vec![("foreign".into(), Bytes::from("x"))],
            &AddOptions::default(),
        )
        .await
        .unwrap();
    cx.backend
        .stream_add(
            s.key(),
            vec![
                ("n".into(), Bytes::from_static(b"\xff")),
                ("p".into(), Bytes::new()),
            ],
            &AddOptions::default(),
        )
        .await
        .unwrap();
    s.add("good", "").await.unwrap();
    assert_eq!(next(&mut rr).await.name, "good");
    let e = next(&mut sr).await;
    assert_eq!(e.name, "good");
    sink.ack(&e).await.unwrap();
    eventually("malformed entries acknowledged", || async {
        cx.backend
            .group_pending_summary(s.key(), "g")
            .await
            .unwrap()
            .count
            == 0
    })
    .await;
    reader.close().await;
    sink.close().await.unwrap();
}

/// A sink delivers, acks, honours start positions and reports an existing group.
pub async fn sink_reads_and_acks(cx: Ctx) {
    let s = stream(&cx, "s");
    let first = s.add("e1", "").await.unwrap();
    s.add("e2", "").await.unwrap();
    let sink = s
        .new_sink("after", sink_opts().with_start(Start::After(first)))
        .await
        .unwrap();
    assert_eq!(sink.joined_existing_group("s"), Some(false));
    let mut rx = sink.subscribe().unwrap();
    let e = next(&mut rx).await;
    assert_eq!((e.name.as_str(), e.sink.as_deref()), ("e2", Some("after")));
    assert_eq!(
        cx.backend
            .group_pending_summary(s.key(), "after")
            .await
            .unwrap()
            .count,
        1
    );
    sink.ack(&e).await.unwrap();
    assert_eq!(
        cx.backend
            .group_pending_summary(s.key(), "after")
            .await
            .unwrap()
            .count,
        0
    );
    let again = s
        .new_sink("after", sink_opts().with_start(Start::Oldest))
        .await
        .unwrap();
    assert_eq!(
        again.joined_existing_group("s"),
        Some(true),
        "existing group reported"
    );
    let oldest = s
        .new_sink(
            "oldest",
            sink_opts().with_start(Start::After(EntryId::ZERO)),
        )
        .await
        .unwrap();
    let mut rx2 = oldest.subscribe().unwrap();
    assert_eq!(
        (next(&mut rx2).await.name, next(&mut rx2).await.name),
        ("e1".into(), "e2".into())
    );
    for k in [sink, again, oldest] {
        k.close().await.unwrap();
    }
}

/// Two instances: each event goes to exactly one; once acked it is not delivered again.
pub async fn sink_instances_share_events(cx: Ctx) {
    let s = stream(&cx, "s");
    let (a, b) = (
        s.new_sink("g", sink_opts()).await.unwrap(),
        s.new_sink("g", sink_opts()).await.unwrap(),
    );
    let (mut ra, mut rb) = (a.subscribe().unwrap(), b.subscribe().unwrap());
    s.add("only-once", "").await.unwrap();
    let (e, owner) = tokio::select! {
        e = ra.recv() => (e.unwrap(), &a),
        e = rb.recv() => (e.unwrap(), &b),
    };
    owner.ack(&e).await.unwrap();
    quiet(&mut ra, Duration::from_millis(700)).await; // > 2 x grace
    quiet(&mut rb, Duration::from_millis(10)).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// An unacknowledged event comes back to the same instance after the grace period; once
/// acknowledged it stops coming back.
pub async fn sink_redelivers_unacked_events(cx: Ctx) {
    let s = stream(&cx, "s");
    let sink = s.new_sink("g", sink_opts()).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    let id = s.add("e", "").await.unwrap();
    let first = next(&mut rx).await;
    let started = tokio::time::Instant::now();
    let again = next(&mut rx).await;
    assert_eq!(again.id, id);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "redelivered before the grace period"
    );
    sink.ack(&first).await.unwrap();
    quiet(&mut rx, Duration::from_millis(700)).await;
    sink.close().await.unwrap();
}

/// An instance that closes without acking hands its events to the other instance, and
/// its consumer is removed.
pub async fn sink_close_hands_over_pending_events(cx: Ctx) {
    let s = stream(&cx, "s");
    let a = s
        .new_sink("g", sink_opts().with_ack_grace(Duration::from_secs(30)))
        .await
        .unwrap();
    let mut ra = a.subscribe().unwrap();
    let b = s
        .new_sink("g", sink_opts().with_ack_grace(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(
        cx.backend
            .group_consumers(s.key(), "g")
            .await
            .unwrap()
            .len(),
        2
    );
    s.add("e", "").await.unwrap();
    let got = next(&mut ra).await;
    let mut rb = b.subscribe().unwrap();
    a.close().await.unwrap();
    let handed = next(&mut rb).await; // long before the 30 s grace: a is known gone
    assert_eq!(handed.id, got.id);
    b.ack(&handed).await.unwrap();
    eventually("one consumer left", || async {
        cx.backend
            .group_consumers(s.key(), "g")
            .await
            .unwrap()
            .len()
            == 1
    })
    .await;
    b.close().await.unwrap();
}

/// A crashed instance (no close, liveness lapses) has its unacked events redelivered to
/// another instance; the dead consumer is deleted only once it holds nothing.
pub async fn sink_crash_redelivers_to_another(cx: Ctx) {
    let s = stream(&cx, "s");
    let a = s
        .new_sink("g", sink_opts().with_max_polled(5))
        .await
        .unwrap();
    let mut ra = a.subscribe().unwrap();
    s.add_batch((0..5).map(|i| NewEvent::new("e", i.to_string())).collect())
        .await
        .unwrap();
    let mut taken = HashSet::new();
    for _ in 0..5 {
        taken.insert(next(&mut ra).await.id);
    }
    a.simulate_crash().await;
    let b = s.new_sink("g", sink_opts()).await.unwrap();
    let mut rb = b.subscribe().unwrap();
    let mut redelivered = HashSet::new();
    while redelivered.len() < 5 {
        let e = next(&mut rb).await;
        b.ack(&e).await.unwrap();
        redelivered.insert(e.id);
    }
    assert_eq!(redelivered, taken);
    eventually("dead consumer deleted", || async {
        let cs = cx.backend.group_consumers(s.key(), "g").await.unwrap();
        cs.len() == 1 && cs[0].name == b.consumer()
    })
    .await;
    b.close().await.unwrap();
}

/// A sink filter acknowledges what it filters out: nothing stays pending (W1).
pub async fn sink_filter_acks_filtered_events(cx: Ctx) {
    let s = stream(&cx, "s");
    let sink = s
        .new_sink("g", sink_opts().with_filter(Filter::Topic("keep".into())))
        .await
        .unwrap();
    let mut rx = sink.subscribe().unwrap();
    for (i, t) in ["drop", "keep", "drop", "other"].iter().enumerate() {
        s.add_event(NewEvent::new(format!("e{i}"), "").with_topic(*t))
            .await
            .unwrap();
    }
    let e = next(&mut rx).await;
    assert_eq!(e.name, "e1");
    sink.ack(&e).await.unwrap();
    eventually("nothing pending", || async {
        cx.backend
            .group_pending_summary(s.key(), "g")
            .await
            .unwrap()
            .count
            == 0
    })
    .await;
    quiet(&mut rx, Duration::from_millis(700)).await;
    sink.close().await.unwrap();
}

/// Three instances share 10,000 events: each delivered exactly once when all ack.
pub async fn sink_three_instances_share_10k_events(cx: Ctx) {
    let s = stream(&cx, "s");
    let mut sinks = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..3 {
        let k = s
            .new_sink(
                "g",
                sink_opts()
                    .with_ack_grace(Duration::from_secs(30))
                    .with_max_polled(200),
            )
            .await
            .unwrap();
        rxs.push(k.subscribe().unwrap());
        sinks.push(k);
    }
    for chunk in 0..10 {
        s.add_batch(
            (0..1000)
                .map(|i| NewEvent::new("e", format!("{}", chunk * 1000 + i)))
                .collect(),
        )
        .await
        .unwrap();
    }
    let (tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for (k, mut rx) in sinks.iter().cloned().zip(rxs) {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                k.ack(&e).await.unwrap();
                if tx.send(e.payload).is_err() {
                    return;
                }
            }
        });
    }
    let mut seen = HashSet::new();
    while seen.len() < 10_000 {
        let p = tokio::time::timeout(Duration::from_secs(30), done.recv())
            .await
            .expect("stalled")
            .unwrap();
        assert!(seen.insert(p.clone()), "delivered twice: {p:?}");
    }
    eventually("all acked", || async {
        cx.backend
            .group_pending_summary(s.key(), "g")
            .await
            .unwrap()
            .count
            == 0
    })
    .await;
    for k in sinks {
        k.close().await.unwrap();
    }
}

/// Two sinks and two readers each see every event.
pub async fn sinks_and_readers_each_see_all(cx: Ctx) {
    let s = stream(&cx, "s");
    let (k1, k2) = (
        s.new_sink("one", sink_opts()).await.unwrap(),
        s.new_sink("two", sink_opts()).await.unwrap(),
    );
    let (r1, r2) = (
        s.new_reader(reader_opts()).await.unwrap(),
        s.new_reader(reader_opts()).await.unwrap(),
    );
    let mut rxs = vec![
        k1.subscribe().unwrap(),
        k2.subscribe().unwrap(),
        r1.subscribe().unwrap(),
        r2.subscribe().unwrap(),
    ];
    s.add_batch((0..20).map(|i| NewEvent::new("e", i.to_string())).collect())
        .await
        .unwrap();
    for rx in &mut rxs {
        let mut got = Vec::new();
        for _ in 0..20 {
            got.push(next(rx).await.payload);
        }
        assert_eq!(
            got,
            (0..20)
                .map(|i| Bytes::from(i.to_string()))
                .collect::<Vec<_>>()
        );
    }
    k1.close().await.unwrap();
    k2.close().await.unwrap();
    r1.close().await;
    r2.close().await;
}

/// A sink consumes several streams; streams come and go by name.
pub async fn sink_add_and_remove_streams(cx: Ctx) {
    let (s1, s2) = (stream(&cx, "s1"), stream(&cx, "s2"));
    let sink = s1.new_sink("g", sink_opts()).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    s1.add("one", "").await.unwrap();
    let one = next(&mut rx).await;
    assert_eq!(one.name, "one");
    sink.ack(&one).await.unwrap();
    sink.add_stream(&s2, Some(Start::After(EntryId::ZERO)))
        .await
        .unwrap();
    sink.add_stream(&s2, None).await.unwrap();
    assert_eq!(sink.streams(), ["s1", "s2"]);
    s2.add("two", "").await.unwrap();
    let e = next(&mut rx).await;
    assert_eq!((e.stream.as_str(), e.name.as_str()), ("s2", "two"));
    sink.ack(&e).await.unwrap();
    sink.remove_stream("s1").await.unwrap();
    s1.add("ignored", "").await.unwrap();
    s2.add("two-again", "").await.unwrap();
    let again = next(&mut rx).await;
    assert_eq!(again.name, "two-again");
    sink.ack(&again).await.unwrap();
    sink.close().await.unwrap();
}

/// A stream deleted under a live sink: the sink re-creates its group and keeps consuming
/// new events, without spinning (W2).
pub async fn sink_recovers_from_a_deleted_stream(cx: Ctx) {
    let s = stream(&cx, "s");
    let sink = s.new_sink("g", sink_opts()).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    s.add("before", "").await.unwrap();
    let e = next(&mut rx).await;
    sink.ack(&e).await.unwrap();
    s.destroy().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the sink notices the loss
    let deadline = tokio::time::Instant::now() + crate::patience();
    loop {
        s.add("after", "").await.unwrap();
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            assert_eq!(e.name, "after");
            sink.ack(&e).await.unwrap();
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sink never recovered"
        );
    }
    sink.close().await.unwrap();
}

/// Closing a sink is prompt, idempotent, keeps the stream; acks still work after close.
pub async fn sink_close(cx: Ctx) {
    let s = stream(&cx, "s");
    let sink = s
        .new_sink("g", sink_opts().with_block(Duration::from_secs(60)))
        .await
        .unwrap();
    let mut rx = sink.subscribe().unwrap();
    s.add("e", "").await.unwrap();
    let e = next(&mut rx).await;
    tokio::time::sleep(Duration::from_millis(50)).await; // let it block
    let started = tokio::time::Instant::now();
    sink.close().await.unwrap();
    sink.close().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(sink.is_closed());
    assert_eq!(rx.recv().await, None);
    sink.ack(&e).await.unwrap();
    assert_eq!(
        cx.backend
            .group_pending_summary(s.key(), "g")
            .await
            .unwrap()
            .count,
        0
    );
    assert!(matches!(sink.subscribe(), Err(Error::Closed { .. })));
    assert!(cx.backend.exists(s.key()).await.unwrap());
    assert!(matches!(
        s.new_sink("bad name", sink_opts()).await,
        Err(Error::InvalidName { .. })
    ));
}

/// With `no_ack`, nothing becomes pending and nothing is redelivered.
pub async fn sink_no_ack(cx: Ctx) {
    let s = stream(&cx, "s");
    let sink = s
        .new_sink("g", sink_opts().with_no_ack(true))
        .await
        .unwrap();
    let mut rx = sink.subscribe().unwrap();
    s.add("e", "").await.unwrap();
    next(&mut rx).await;
    assert_eq!(
        cx.backend
            .group_pending_summary(s.key(), "g")
            .await
            .unwrap()
            .count,
        0
    );
    quiet(&mut rx, Duration::from_millis(500)).await;
    sink.close().await.unwrap();
}

/// A lone sink whose subscriber is slow keeps its liveness: its events are redelivered
/// only after the grace period, never as if it were dead.
pub async fn sink_slow_subscriber_stays_alive(cx: Ctx) {
    let s = stream(&cx, "s");
    let a = s
        .new_sink(
            "g",
            sink_opts()
                .with_buffer(1)
                .with_ack_grace(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let mut ra = a.subscribe().unwrap();
    let b = s
        .new_sink("g", sink_opts().with_ack_grace(Duration::from_secs(30)))
        .await
        .unwrap();
    let mut rb = b.subscribe().unwrap();
    s.add_batch((0..20).map(|i| NewEvent::new("e", i.to_string())).collect())
        .await
        .unwrap();
    // Nobody reads `ra` for a while: a's delivery is stuck, its liveness must not be.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(cx
        .backend
        .exists(&format!("{}:sink:g:alive:{}", s.key(), a.consumer()))
        .await
        .unwrap());
    let mut total = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), ra.recv()).await {
        a.ack(&e).await.unwrap();
        total += 1;
    }
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), rb.recv()).await {
        b.ack(&e).await.unwrap();
        total += 1;
    }
    assert_eq!(total, 20, "each event exactly once");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Stream handles need no I/O and cannot be given an invalid name; event creation time is
/// the ID's milliseconds.
pub async fn streaming_event_metadata(cx: Ctx) {
    let s = stream(&cx, "s");
    let id = s.add("e", "").await.unwrap();
    let reader = s.new_reader(reader_opts()).await.unwrap();
    let mut rx = reader.subscribe().unwrap();
    let e = next(&mut rx).await;
    assert_eq!(
        e.created_at(),
        std::time::UNIX_EPOCH + Duration::from_millis(id.ms)
    );
    reader.close().await;
}
