//! The redelivery policy of sinks: `max_deliveries` and dead letters (list, inspect,
//! requeue, purge), `nack` with and without a delay, `fail` with a reason, the back-off,
//! and the options' checks.

use super::*;

/// An event never acknowledged is delivered `max_deliveries` times, then moves to the
/// dead letters with where it came from; a requeue puts it back once, as a new event.
pub async fn sink_dead_letters_an_event_past_max_deliveries(cx: Ctx) {
    let s = stream(&cx, "s");
    let sink = s
        .new_sink("g", sink_opts().with_max_deliveries(2))
        .await
        .unwrap();
    let mut rx = sink.subscribe().unwrap();
    let poison = s
        .add_event(NewEvent::new("poison", "x").with_header("kind", "bad"))
        .await
        .unwrap();
    let good = s.add("good", "y").await.unwrap();
    let mut poison_deliveries = Vec::new();
    while poison_deliveries.len() < 2 {
        let e = next(&mut rx).await;
        if e.id == good {
            sink.ack(&e).await.unwrap();
        } else {
            poison_deliveries.push(e.deliveries);
        }
    }
    assert_eq!(poison_deliveries, [1, 2]);
    let dead = s.dead_letters("g").unwrap();
    eventually("the event is dead-lettered", || async {
        !dead.list(10).await.unwrap().is_empty()
    })
    .await;
    let letters = dead.list(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (letter.event.id, letter.event.stream.as_str()),
        (poison, s.name())
    );
    assert_eq!((letter.sink.as_str(), letter.deliveries), ("g", 2));
    assert_eq!(
        (letter.event.name.as_str(), &letter.event.payload[..]),
        ("poison", &b"x"[..])
    );
    assert_eq!(letter.event.header("kind"), Some("bad"));
    assert_eq!(
        letter.event.headers.len(),
        1,
        "origin headers are not the event's"
    );
    assert_eq!(letter.error, None);
    assert_eq!(dead.get(letter.id).await.unwrap().as_ref(), Some(letter));
    quiet(&mut rx, Duration::from_millis(700)).await; // no third delivery
    assert!(
        sink.pending(10).await.unwrap().is_empty(),
        "acknowledged when moved"
    );
    // The dead-letter stream is an ordinary stream.
    let reader = dead.stream().new_reader(reader_opts()).await.unwrap();
    let mut dr = reader.subscribe().unwrap();
    assert_eq!(next(&mut dr).await.id, letter.id);
    reader.close().await.unwrap();
    // Requeue: back into the stream as a new event, once.
    let again = dead.requeue(letter.id).await.unwrap();
    assert!(again > good);
    let e = next(&mut rx).await;
    assert_eq!((e.id, e.deliveries, e.name.as_str()), (again, 1, "poison"));
    assert_eq!(e.header("kind"), Some("bad"));
    sink.ack(&e).await.unwrap();
    let twice = dead.requeue(letter.id).await.unwrap_err();
    assert!(matches!(twice, Error::InvalidArgument(_)), "{twice:?}");
    assert!(dead.list(10).await.unwrap().is_empty());
    sink.close().await.unwrap();
}

/// `nack` with a delay: not redelivered before it; `fail`: the reason travels to the
/// dead letter, and the last allowed delivery failing moves it at once; purge deletes.
pub async fn sink_nack_and_fail(cx: Ctx) {
    let s = stream(&cx, "s");
    let sink = s
        .new_sink("g", sink_opts().with_max_deliveries(3))
        .await
        .unwrap();
    let mut rx = sink.subscribe().unwrap();
    let id = s.add("e", "").await.unwrap();
    let e = next(&mut rx).await;
    let delay = Duration::from_millis(1500);
    sink.nack(&e, Some(delay)).await.unwrap();
    // Longer than the ack grace (300 ms) plus a reclaim pass: only the delay holds it.
    quiet(&mut rx, Duration::from_millis(900)).await;
    let e = next(&mut rx).await;
    assert_eq!((e.id, e.deliveries), (id, 2));
    sink.fail(&e, "first failure").await.unwrap();
    let e = next(&mut rx).await;
    assert_eq!((e.id, e.deliveries), (id, 3));
    sink.fail(&e, "it is broken: ✗").await.unwrap();
    let dead = s.dead_letters("g").unwrap();
    let letters = dead.list(10).await.unwrap();
    assert_eq!(letters.len(), 1, "moved by the failing call itself");
    assert_eq!(letters[0].deliveries, 3);
    assert_eq!(letters[0].error.as_deref(), Some("it is broken: ✗"));
    quiet(&mut rx, Duration::from_millis(700)).await;
    // A reason given on an earlier delivery is kept when the reclaim pass moves it.
    let other = s.add("e2", "").await.unwrap();
    for round in 1..=3 {
        let e = next(&mut rx).await;
        assert_eq!((e.id, e.deliveries), (other, round));
        if round == 1 {
            sink.fail(&e, "kept").await.unwrap();
        }
    }
    eventually("the second event is dead-lettered", || async {
        dead.list(10).await.unwrap().len() == 2
    })
    .await;
    let letters = dead.list(10).await.unwrap();
    assert_eq!(letters[1].error.as_deref(), Some("kept"));
    assert_eq!(dead.purge(&[letters[0].id]).await.unwrap(), 1);
    assert_eq!(dead.list(10).await.unwrap().len(), 1);
    dead.purge_all().await.unwrap();
    assert!(dead.list(10).await.unwrap().is_empty());
    let stand_in = e_of(&sink, &s, other);
    let far = sink
        .nack(&stand_in, Some(Duration::from_secs(8 * 86_400)))
        .await;
    assert!(matches!(far, Err(Error::InvalidArgument(_))), "{far:?}");
    sink.close().await.unwrap();
}

/// A stand-in event of `sink` for `id` (to exercise argument checks).
fn e_of(sink: &pulse::streaming::Sink, s: &Stream, id: EntryId) -> Event {
    Event {
        id,
        stream: s.name().to_owned(),
        sink: Some(sink.name().to_owned()),
        name: "e".into(),
        topic: None,
        payload: Bytes::new(),
        deliveries: 1,
        trace_parent: None,
        headers: Default::default(),
    }
}

/// With a back-off, each redelivery of an unacknowledged event waits longer: never less
/// than the ack grace plus its back-off.
pub async fn sink_redelivery_backs_off(cx: Ctx) {
    let s = stream(&cx, "s");
    let sink = s
        .new_sink(
            "g",
            sink_opts().with_redelivery_backoff(
                Duration::from_millis(400),
                2.0,
                Duration::from_secs(2),
            ),
        )
        .await
        .unwrap();
    let mut rx = sink.subscribe().unwrap();
    s.add("e", "").await.unwrap();
    let mut at = Vec::new();
    for n in 1..=3u64 {
        let e = next(&mut rx).await;
        assert_eq!(e.deliveries, n);
        at.push(tokio::time::Instant::now());
    }
    // ack grace 300 ms + 400 ms, then + 800 ms (lower bounds, with room for clock steps).
    let gaps = [at[1] - at[0], at[2] - at[1]];
    assert!(gaps[0] >= Duration::from_millis(650), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(1050), "{gaps:?}");
    sink.close().await.unwrap();
}

/// Absurd policy values are refused when the sink is created.
pub async fn sink_policy_options_are_checked(cx: Ctx) {
    let s = stream(&cx, "s");
    let ms = Duration::from_millis;
    for options in [
        sink_opts().with_max_deliveries(0),
        sink_opts().with_max_deliveries(2_000_000),
        sink_opts().with_redelivery_backoff(ms(100), 0.5, ms(200)),
        sink_opts().with_redelivery_backoff(ms(100), f64::NAN, ms(200)),
        sink_opts().with_redelivery_backoff(ms(300), 2.0, ms(200)),
        sink_opts().with_redelivery_backoff(ms(300), 2.0, Duration::from_secs(30 * 86_400)),
    ] {
        let e = s.new_sink("g", options.clone()).await.unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("sink options")),
            "{options:?}: {e:?}"
        );
    }
}
