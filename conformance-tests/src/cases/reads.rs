//! Plain (non-group) reads, blocking and not.

use std::time::Duration;

use pulse::{
    backend::{AddOptions, EntryId},
    Error,
};

use super::{entry, name_of};
use crate::Ctx;

/// A read returns entries strictly after the cursor, at most `count`.
pub async fn read_after_cursor(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let ids: Vec<EntryId> = b
        .stream_add_batch(
            &s,
            (0..5).map(|i| entry(&i.to_string())).collect(),
            &AddOptions::default(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let got = b
        .stream_read(&[(s.clone(), ids[1])], 2, None)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].stream, s);
    assert_eq!(
        got[0].entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[2..4]
    );
    assert!(b
        .stream_read(&[(s.clone(), ids[4])], 10, None)
        .await
        .unwrap()
        .is_empty());
    assert!(b
        .stream_read(&[(cx.key("none"), EntryId::ZERO)], 10, None)
        .await
        .unwrap()
        .is_empty());
}

/// A blocked read returns as soon as an entry is appended, long before its timeout.
pub async fn read_blocks_until_data(cx: Ctx) {
    let b = cx.backend.clone();
    let s = cx.key("s");
    let reader = {
        let (b, s) = (b.clone(), s.clone());
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let got = b
                .stream_read(&[(s, EntryId::ZERO)], 10, Some(Duration::from_secs(30)))
                .await
                .unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // let the reader block first
    b.stream_add(&s, entry("wake"), &AddOptions::default())
        .await
        .unwrap();
    let (got, waited) = reader.await.unwrap();
    assert_eq!(name_of(&got[0].entries[0]), "wake");
    assert!(
        waited < Duration::from_secs(20),
        "reader was not woken by the append ({waited:?})"
    );
}

/// A blocked read with no data returns empty after its timeout.
pub async fn read_times_out_empty(cx: Ctx) {
    let b = &cx.backend;
    let got = b
        .stream_read(
            &[(cx.key("s"), EntryId::ZERO)],
            10,
            Some(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    assert!(got.is_empty());
}

/// One read covers several streams, each with its own cursor.
pub async fn read_many_streams(cx: Ctx) {
    let b = &cx.backend;
    let (s1, s2, s3) = (cx.key("s1"), cx.key("s2"), cx.key("s3"));
    let a1 = b
        .stream_add(&s1, entry("a1"), &AddOptions::default())
        .await
        .unwrap()
        .unwrap();
    b.stream_add(&s1, entry("b1"), &AddOptions::default())
        .await
        .unwrap();
    b.stream_add(&s2, entry("a2"), &AddOptions::default())
        .await
        .unwrap();
    let got = b
        .stream_read(
            &[
                (s1.clone(), a1),
                (s2.clone(), EntryId::ZERO),
                (s3, EntryId::ZERO),
            ],
            10,
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    let mut seen: Vec<(String, Vec<String>)> = got
        .iter()
        .map(|bt| (bt.stream.clone(), bt.entries.iter().map(name_of).collect()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![(s1, vec!["b1".to_owned()]), (s2, vec!["a2".to_owned()])]
    );
}

/// Dropping a blocked read ends it promptly and leaves the backend fully usable.
pub async fn read_cancel_is_prompt(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let cursor = [(s.clone(), EntryId::ZERO)];
    for _ in 0..3 {
        let read = b.stream_read(&cursor, 10, Some(Duration::from_secs(30)));
        assert!(tokio::time::timeout(Duration::from_millis(50), read)
            .await
            .is_err());
    }
    let started = tokio::time::Instant::now();
    let id = b
        .stream_add(&s, entry("after"), &AddOptions::default())
        .await
        .unwrap()
        .unwrap();
    let got = b
        .stream_read(
            &[(s.clone(), EntryId::ZERO)],
            10,
            Some(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert_eq!(got[0].entries[0].id, id);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "backend stalled after cancelled reads"
    );
}

/// Reads reject empty stream lists and zero counts.
pub async fn read_invalid_arguments(cx: Ctx) {
    let b = &cx.backend;
    assert!(matches!(
        b.stream_read(&[], 1, None).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        b.stream_read(&[(cx.key("s"), EntryId::ZERO)], 0, None)
            .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        b.group_read("g", "c", &[], 1, None, false).await,
        Err(Error::InvalidArgument(_))
    ));
}
