//! Event streaming (`pulse::streaming`) on the backend under test: the spec's behaviours
//! (streaming.md §6, adapted where a weakness is fixed) plus sharing, crashes and lost
//! streams. This module holds the shared helpers and the stream-level cases (add, remove,
//! TTL, trimming, foreign entries, metadata); `readers` and `sinks` hold the rest.

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

mod delayed;
mod policy;
mod readers;
mod sinks;
pub use delayed::*;
pub use policy::*;
pub use readers::*;
pub use sinks::*;

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
    reader.close().await.unwrap();
    sink.close().await.unwrap();
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
    reader.close().await.unwrap();
}

/// A dedup key makes an add idempotent within the stream's window: the second add returns
/// the first one's ID and adds nothing (in a batch too); bad keys are refused.
pub async fn streams_add_idempotently_with_a_dedup_key(cx: Ctx) {
    let s = stream(&cx, "s");
    let order = |n: &str| NewEvent::new("order", n.to_owned()).with_dedup_key(format!("order-{n}"));
    let (first, added) = s.add_unique(order("1")).await.unwrap();
    assert!(added);
    assert_eq!(s.add_unique(order("1")).await.unwrap(), (first, false));
    assert_eq!(s.add_event(order("1")).await.unwrap(), first);
    let ids = s
        .add_batch(vec![order("1"), order("2"), NewEvent::new("plain", "")])
        .await
        .unwrap();
    assert_eq!(ids[0], first);
    assert!(ids[1] > first && ids[2] > ids[1]);
    assert_eq!(s.len().await.unwrap(), 3);
    for bad in [String::new(), "x".repeat(513), "a\nb".to_owned()] {
        let e = s
            .add_event(NewEvent::new("e", "").with_dedup_key(bad))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("dedup key")),
            "{e:?}"
        );
    }
    let no_window = Stream::new(
        cx.backend.clone(),
        "s",
        StreamOptions::default()
            .with_keyspace(cx.keyspace())
            .with_dedup_window(Duration::ZERO),
    )
    .unwrap();
    let e = no_window.add_event(order("3")).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("window")),
        "{e:?}"
    );
    assert_eq!(s.len().await.unwrap(), 3, "refused adds wrote nothing");
    // A short window lets the key add again once it passed.
    let short = Stream::new(
        cx.backend.clone(),
        "short",
        StreamOptions::default()
            .with_keyspace(cx.keyspace())
            .with_dedup_window(Duration::from_millis(100)),
    )
    .unwrap();
    let one = short.add_event(order("9")).await.unwrap();
    eventually("the window passes", || async {
        short.add_event(order("9")).await.unwrap() != one
    })
    .await;
}
