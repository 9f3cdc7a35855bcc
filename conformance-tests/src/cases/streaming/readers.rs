//! Readers: every reader sees every event from its start position, with filters, several
//! subscribers and streams taken in and out by name; close is prompt.

use super::*;

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
    reader.close().await.unwrap();
}

/// A `traceparent` given with an event comes back with it (field `tp`); one that is not
/// 1 to 256 visible ASCII characters is refused before anything is written.
pub async fn events_keep_a_given_trace_parent(cx: Ctx) {
    let s = stream(&cx, "s");
    let reader = s.new_reader(reader_opts()).await.unwrap();
    let mut rx = reader.subscribe().unwrap();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    s.add_event(NewEvent::new("traced", "x").with_trace_parent(tp))
        .await
        .unwrap();
    s.add("untraced", "y").await.unwrap();
    assert_eq!(next(&mut rx).await.trace_parent.as_deref(), Some(tp));
    assert_eq!(next(&mut rx).await.trace_parent, None);
    for bad in ["has space", "", &"x".repeat(257), "tab\there"] {
        let e = s
            .add_event(NewEvent::new("bad", "z").with_trace_parent(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(e, pulse::Error::InvalidArgument(_)),
            "{bad:?}: {e:?}"
        );
    }
    assert_eq!(s.len().await.unwrap(), 2, "a refused event wrote nothing");
    reader.close().await.unwrap();
}

/// Subject patterns: a reader and a sink each get exactly the events whose dotted topic
/// matches (`*` one segment, `>` one or more, not the bare prefix); the sink acknowledges
/// what it filters out. A topic or a pattern that breaks the subject rule is refused.
pub async fn readers_and_sinks_filter_by_subject(cx: Ctx) {
    let s = stream(&cx, "s");
    let reader = s
        .new_reader(reader_opts().with_filter(Filter::subject("orders.*.created").unwrap()))
        .await
        .unwrap();
    let sink = s
        .new_sink(
            "g",
            sink_opts().with_filter(Filter::subject("orders.>").unwrap()),
        )
        .await
        .unwrap();
    let (mut read, mut sunk) = (reader.subscribe().unwrap(), sink.subscribe().unwrap());
    for topic in [
        "orders",
        "orders.eu.created",
        "orders.eu.paid",
        "billing.eu.created",
        "orders.eu.west.created",
    ] {
        s.add_event(NewEvent::new("e", topic).with_topic(topic))
            .await
            .unwrap();
    }
    s.add_event(NewEvent::new("last", "").with_topic("end"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut read).await.topic.as_deref(),
        Some("orders.eu.created")
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = next(&mut sunk).await;
        sink.ack(&e).await.unwrap();
        got.push(e.topic.unwrap());
    }
    assert_eq!(
        got,
        [
            "orders.eu.created",
            "orders.eu.paid",
            "orders.eu.west.created"
        ]
    );
    // Nothing else comes, and nothing is left pending (filtered events were acknowledged).
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), read.recv())
            .await
            .is_err()
    );
    eventually("filtered events acknowledged", || async {
        let p = cx
            .backend
            .group_pending_summary(s.key(), "g")
            .await
            .unwrap();
        p.count == 0
    })
    .await;
    for bad in ["orders..eu", "orders.>", ".orders", "orders."] {
        let e = s
            .add_event(NewEvent::new("e", "").with_topic(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(e, pulse::Error::InvalidName { what: "topic", .. }),
            "{bad:?}: {e:?}"
        );
    }
    for bad in ["orders.>.eu", "orders.e*", ""] {
        assert!(
            matches!(Filter::subject(bad), Err(pulse::Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    reader.close().await.unwrap();
    sink.close().await.unwrap();
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
        r.close().await.unwrap();
    }
}

/// Headers travel with an event to readers and sinks; an event breaking a header rule is
/// refused with `InvalidArgument` and adds nothing (a batch with one such event neither).
pub async fn events_carry_their_headers(cx: Ctx) {
    let s = stream(&cx, "s");
    let reader = s
        .new_reader(reader_opts().with_start(Start::Oldest))
        .await
        .unwrap();
    let sink = s.new_sink("g", sink_opts()).await.unwrap();
    let (mut rr, mut rs) = (reader.subscribe().unwrap(), sink.subscribe().unwrap());
    let id = s
        .add_event(
            NewEvent::new("e", "x")
                .with_header("content-type", "application/json")
                .with_header("correlation.id", "c-42")
                .with_header("empty", ""),
        )
        .await
        .unwrap();
    for got in [next(&mut rr).await, next(&mut rs).await] {
        assert_eq!(got.id, id);
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert_eq!(got.header("correlation.id"), Some("c-42"));
        assert_eq!(got.header("empty"), Some(""));
        assert_eq!(got.headers.len(), 3);
        if got.sink.is_some() {
            sink.ack(&got).await.unwrap();
        }
    }
    let plain = s.add("plain", "").await.unwrap();
    let got = next(&mut rr).await;
    assert_eq!((got.id, got.headers.len()), (plain, 0));
    let bad = [
        NewEvent::new("e", "").with_header("no spaces", "v"),
        NewEvent::new("e", "").with_header("k", "v".repeat(5000)),
        NewEvent::new("e", "")
            .with_header("k", "1")
            .with_header("k", "2"),
        (0..40).fold(NewEvent::new("e", ""), |e, i| {
            e.with_header(format!("k{i}"), "")
        }),
    ];
    for event in bad {
        let e = s.add_event(event.clone()).await.unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("headers")),
            "{e:?}"
        );
        let e = s
            .add_batch(vec![NewEvent::new("fine", ""), event])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
    assert_eq!(s.len().await.unwrap(), 2, "a refused add wrote nothing");
    reader.close().await.unwrap();
    sink.close().await.unwrap();
}

/// `After` an ID that is no position of the stream — before its first event (the events
/// in between are gone), after its last, on a stream that does not exist — is refused for
/// readers and sinks alike, never read from the oldest; a position inside resumes there.
pub async fn start_after_a_position_the_stream_lacks_is_refused(cx: Ctx) {
    let s = stream(&cx, "s");
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(s.add("e", i.to_string()).await.unwrap());
    }
    s.remove(&ids[..2]).await.unwrap();
    let future = EntryId::new(ids[5].ms + 60_000, 0);
    for (id, says) in [(ids[0], "older than"), (future, "no such position")] {
        let e = s
            .new_reader(reader_opts().with_start(Start::After(id)))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains(says)),
            "{e:?}"
        );
        let e = s
            .new_sink(
                &format!("k{}", id.ms),
                sink_opts().with_start(Start::After(id)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains(says)),
            "{e:?}"
        );
    }
    let gone = stream(&cx, "never");
    let e = gone
        .new_reader(reader_opts().with_start(Start::After(ids[3])))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("does not exist")),
        "{e:?}"
    );
    // Inside the stream (its first event's ID too): resumes after it.
    let reader = s
        .new_reader(reader_opts().with_start(Start::After(ids[3])))
        .await
        .unwrap();
    let mut rx = reader.subscribe().unwrap();
    assert_eq!(next(&mut rx).await.id, ids[4]);
    let sink = s
        .new_sink("resume", sink_opts().with_start(Start::After(ids[2])))
        .await
        .unwrap();
    let mut events = sink.subscribe().unwrap();
    let got = next(&mut events).await;
    assert_eq!(got.id, ids[3]);
    sink.ack(&got).await.unwrap();
    reader.close().await.unwrap();
    sink.close().await.unwrap();
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
        r.close().await.unwrap();
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
    reader.close().await.unwrap();
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
    reader.close().await.unwrap();
    reader.close().await.unwrap();
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
