//! S13, delayed events on the Redis backend: the rate of delayed adds until `events` are
//! pending (100,000 in a full run), against the backend's own `delay_add` script called
//! raw, pipelined the same way (the add is that one script; what is measured is Pulse's
//! cost around it); then, with all of them still pending, the due-to-visible
//! latency of probes due 20 ms after their add, seen by a reader (its mover hands them
//! over), against the 50 ms target for the p50.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use pulse::{
    keys::Keyspace,
    streaming::{NewEvent, ReaderOptions, Stream, StreamOptions},
    Backend,
};

use crate::{
    raw,
    stats::{fmt_dur, fmt_rate, rate, Row, Samples, Target},
    Size,
};

/// The backend's own script for a delayed add, called raw as the baseline.
const DELAY_ADD: &str = include_str!("../../backend-redis/lua/delay_add.lua");

fn stream(b: &Arc<dyn Backend>) -> Stream {
    let tag = format!("s13-{:x}", pulse::backend::new_epoch());
    let ks = Keyspace::new(&tag).expect("keyspace");
    Stream::new(b.clone(), "s", StreamOptions::default().with_keyspace(ks)).expect("stream")
}

/// Adds per second of the raw script, `n` of them, pipelined (its keys deleted after).
async fn raw_delay_adds(url: &str, n: usize) -> f64 {
    let (raw_n, raw_d) = raw::pipelined_many(url, n, |p, i| {
        p.cmd("EVAL")
            .arg(DELAY_ADD)
            .arg(2)
            .arg("{raw-s13}:due")
            .arg("{raw-s13}:data")
            .arg(i)
            .arg(4_000_000_000_000u64)
            .arg("\0\0\0\x01n\0\0\0\x01e\0\0\0\x01p\0\0\0\x07payload");
    })
    .await;
    raw::delete(url, &["{raw-s13}:data", "{raw-s13}:due"]).await;
    rate(raw_n, raw_d)
}

/// The rows of S13.
pub(crate) async fn rows(url: &str, redis: &Arc<dyn Backend>, size: Size) -> Vec<Row> {
    let n = size.events;
    let raw_before = raw_delay_adds(url, n).await;
    let s = stream(redis);
    let later = SystemTime::now() + Duration::from_secs(3600);
    let start = Instant::now();
    let adder = s.clone();
    let added = crate::scenarios::eight_by_hundred(n / 8 / 100, move |_, _, _| {
        let s = adder.clone();
        async move {
            let event = NewEvent::new("e", "payload").deliver_at(later);
            s.add_delayed(event).await.expect("add");
        }
    })
    .await;
    let add_rate = rate(added, start.elapsed());
    // The baseline before and after, averaged: one side alone swings 2x on this machine.
    let raw_rate = (raw_before + raw_delay_adds(url, n).await) / 2.0;
    assert_eq!(
        s.delayed().await.expect("delayed").count as usize,
        added,
        "every delayed add is held"
    );
    let reader = s
        .new_reader(ReaderOptions::default())
        .await
        .expect("reader");
    let mut rx = reader.subscribe().expect("subscribe");
    let mut late = Samples::default();
    for i in 0..size.samples.min(200) {
        let probe = s
            .add_delayed(
                NewEvent::new("probe", i.to_string()).deliver_after(Duration::from_millis(20)),
            )
            .await
            .expect("probe");
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a probe within 10 s")
            .expect("open");
        let seen = SystemTime::now();
        assert_eq!(&e.payload[..], i.to_string().as_bytes(), "probes in order");
        late.0
            .push(seen.duration_since(probe.due).unwrap_or(Duration::ZERO));
    }
    reader.close().await.expect("close");
    s.destroy().await.expect("destroy");
    let target = Duration::from_millis(50);
    let p50 = late.pct(0.5);
    vec![
        Row {
            scenario: format!("S13 delayed add, 8 producers x 100 in flight, to {added} pending"),
            backend: "redis",
            figure: fmt_rate(add_rate),
            baseline: format!("its script pipelined {}", fmt_rate(raw_rate)),
            ratio: Some(add_rate / raw_rate),
            target: Target::AtLeast(0.8),
            latency: None,
        },
        Row {
            scenario: format!("S13 delayed due-to-visible, {added} pending"),
            backend: "redis",
            figure: format!("p50 {}", fmt_dur(p50)),
            baseline: format!("target p50 {}", fmt_dur(target)),
            ratio: Some(p50.as_secs_f64() / target.as_secs_f64()),
            target: Target::AtMost(1.0),
            latency: Some((p50, late.pct(0.9), late.pct(0.99))),
        },
    ]
}
