//! Sinks (consumer groups): sharing between instances, acknowledgement, redelivery after
//! the grace period, hand-over on close and crash, filters, several streams, lost streams.

use super::*;

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

/// An instance that held the reclaim lease and closes releases it: another instance takes
/// over its pending events at once, not when the lease would have lapsed (an idle
/// reclaimer holds it for `ack_grace / 2`, 15 s here).
pub async fn sink_close_releases_the_reclaim_lease(cx: Ctx) {
    let s = stream(&cx, "s");
    let opts = || sink_opts().with_ack_grace(Duration::from_secs(30));
    let a = s.new_sink("g", opts()).await.unwrap();
    let mut ra = a.subscribe().unwrap();
    let lease = format!("{}:sink:g:reclaimer", s.key());
    eventually("the only instance reclaims", || async {
        cx.backend.exists(&lease).await.unwrap()
    })
    .await;
    let b = s.new_sink("g", opts()).await.unwrap();
    s.add("e", "").await.unwrap();
    let got = next(&mut ra).await;
    let mut rb = b.subscribe().unwrap();
    a.close().await.unwrap();
    let handed = tokio::time::timeout(Duration::from_secs(5), rb.recv())
        .await
        .expect("handed over well before the lease would lapse")
        .expect("an event");
    assert_eq!(handed.id, got.id);
    b.ack(&handed).await.unwrap();
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

/// Every sink delivery says how many times the event was delivered: 1, then one more per
/// redelivery past the grace period (120 events, so the counts are read in pages), and one
/// more when another instance takes over a crashed one's events.
pub async fn sink_events_carry_their_delivery_count(cx: Ctx) {
    let s = stream(&cx, "s");
    let a = s.new_sink("g", sink_opts()).await.unwrap();
    let mut ra = a.subscribe().unwrap();
    s.add_batch(
        (0..120)
            .map(|i| NewEvent::new("e", i.to_string()))
            .collect(),
    )
    .await
    .unwrap();
    for round in 1..=3u64 {
        let mut seen = HashSet::new();
        while seen.len() < 120 {
            let e = next(&mut ra).await;
            assert_eq!(e.deliveries, round, "event {} in round {round}", e.id);
            seen.insert(e.id);
        }
    }
    let mut rest = Vec::new();
    while rest.len() < 120 {
        let e = next(&mut ra).await;
        assert_eq!(e.deliveries, 4);
        rest.push(e);
    }
    a.ack_many(&rest[1..]).await.unwrap();
    // One left, delivered 4 times: the instance dies, another takes it over.
    a.simulate_crash().await;
    let b = s.new_sink("g", sink_opts()).await.unwrap();
    let mut rb = b.subscribe().unwrap();
    let e = next(&mut rb).await;
    assert_eq!((e.id, e.deliveries), (rest[0].id, 5));
    b.ack(&e).await.unwrap();
    // Reader events are always first deliveries.
    let reader = s.new_reader(reader_opts()).await.unwrap();
    let mut rr = reader.subscribe().unwrap();
    assert_eq!(next(&mut rr).await.deliveries, 1);
    reader.close().await.unwrap();
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
    r1.close().await.unwrap();
    r2.close().await.unwrap();
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

/// `Stream::state` shows length, both ends and each sink with its pending count, cursor,
/// lag and consumers; acknowledging lowers pending.
pub async fn stream_state_shows_sinks_and_lag(cx: Ctx) {
    let s = stream(&cx, "s");
    let empty = s.state().await.unwrap();
    assert_eq!(
        (empty.length, empty.first_id, empty.sinks.len()),
        (0, None, 0)
    );
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(s.add("e", format!("{i}")).await.unwrap());
    }
    let sink = s.new_sink("billing", sink_opts()).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    let first = next(&mut rx).await;
    for _ in 0..2 {
        next(&mut rx).await;
    }
    let state = s.state().await.unwrap();
    assert_eq!(
        (
            state.name.as_str(),
            state.length,
            state.first_id,
            state.last_id
        ),
        ("s", 3, Some(ids[0]), ids[2])
    );
    assert_eq!(state.sinks.len(), 1);
    let billing = &state.sinks[0];
    assert_eq!(
        (
            billing.name.as_str(),
            billing.pending,
            billing.last_delivered,
            billing.lag
        ),
        ("billing", 3, ids[2], Some(0))
    );
    assert_eq!(billing.consumers.len(), 1);
    assert_eq!(billing.consumers[0].pending, 3);
    sink.ack(&first).await.unwrap();
    eventually("the ack shows", || async {
        s.state().await.unwrap().sinks[0].pending == 2
    })
    .await;
    sink.close().await.unwrap();
}

/// `pending` lists what the sink has not acknowledged, on every stream it consumes, with
/// the instance holding each event, its idle time and delivery count; `limit` bounds it.
/// (A long ack grace: redelivery is not the point, and a loaded machine can take longer
/// than the usual 300 ms between delivery and `pending`.)
pub async fn sink_pending_lists_unacknowledged_events(cx: Ctx) {
    let (s, t) = (stream(&cx, "s"), stream(&cx, "t"));
    let options = sink_opts().with_ack_grace(Duration::from_secs(60));
    let sink = s.new_sink("g", options).await.unwrap();
    sink.add_stream(&t, None).await.unwrap();
    let mut rx = sink.subscribe().unwrap();
    let ids = [s.add("a", "").await.unwrap(), s.add("b", "").await.unwrap()];
    let other = t.add("c", "").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut rx).await);
    }
    let first = got
        .iter()
        .find(|e| e.id == ids[0] && e.stream == s.name())
        .unwrap();
    sink.ack(first).await.unwrap();
    let pending = sink.pending(100).await.unwrap();
    let mut listed: Vec<(String, EntryId)> =
        pending.iter().map(|p| (p.stream.clone(), p.id)).collect();
    listed.sort();
    let mut want = vec![(s.name().to_owned(), ids[1]), (t.name().to_owned(), other)];
    want.sort();
    assert_eq!(listed, want);
    for p in &pending {
        assert_eq!(p.consumer, sink.consumer());
        assert_eq!(p.deliveries, 1);
        assert!(p.idle < Duration::from_secs(60), "{p:?}");
    }
    assert_eq!(sink.pending(1).await.unwrap().len(), 1);
    sink.ack_many(&got).await.unwrap();
    assert!(sink.pending(100).await.unwrap().is_empty());
    sink.close().await.unwrap();
    assert!(matches!(sink.pending(10).await, Err(Error::Closed { .. })));
}

/// A group read in flight when the sink's streams change is not given up: what it took is
/// pending under this consumer, so dropping its reply would hide those events until the
/// ack grace (here a minute) redelivers them. Its events arrive once, on time, and the new
/// stream is read beside it.
pub async fn sink_keeps_a_read_in_flight_when_its_streams_change(cx: Ctx) {
    let flaky = cx.flaky();
    let backend: std::sync::Arc<dyn pulse::Backend> = std::sync::Arc::new(flaky.clone());
    let on = |name: &str| {
        let options = StreamOptions::default().with_keyspace(cx.keyspace());
        Stream::new(backend.clone(), name, options).unwrap()
    };
    let (s, t) = (on("s"), on("t"));
    let grace = Duration::from_secs(60);
    let sink = s
        .new_sink("g", sink_opts().with_ack_grace(grace))
        .await
        .unwrap();
    let first = s.add("a", "").await.unwrap();
    // The sink's first read takes `a`; its reply comes back two seconds later.
    let slow = crate::flaky::Fault::on(crate::flaky::Op::GroupRead)
        .key_containing(s.key())
        .reply_after(Duration::from_secs(2));
    flaky.fail_next(slow);
    let mut rx = sink.subscribe().unwrap();
    eventually("the first read is sent", || async {
        flaky.pending_faults() == 0
    })
    .await;
    sink.add_stream(&t, None).await.unwrap();
    let other = t.add("c", "").await.unwrap();
    let mut got = vec![next(&mut rx).await, next(&mut rx).await];
    got.sort_by_key(|e| e.name.clone());
    let seen: Vec<(&str, EntryId, u64)> = got
        .iter()
        .map(|e| (e.name.as_str(), e.id, e.deliveries))
        .collect();
    assert_eq!(seen, [("a", first, 1), ("c", other, 1)]);
    sink.ack_many(&got).await.unwrap();
    quiet(&mut rx, Duration::from_millis(300)).await;
    sink.close().await.unwrap();
}
