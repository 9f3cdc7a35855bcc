//! Many blocking reads at once. A backend may serve concurrent blocking reads together (the
//! Redis backend merges them into one `XREAD` on one connection); these cases pin what each
//! caller must still see: only its own streams past its own cursors, at most its count, no
//! entry skipped, a newcomer served without waiting for the others' timeouts, and one
//! caller's bad key failing only that caller.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use pulse::{
    backend::{AddOptions, Backend, EntryId},
    Error,
};
use tokio::time::{timeout, Instant};

use super::entry;
use crate::{util::patience, Ctx};

/// Twelve readers with overlapping streams, different cursors and counts, some cancelling
/// reads half-way, read while a writer appends: each sees exactly its streams' entries after
/// its start, in order, never more than its count per stream in one read.
pub async fn concurrent_reads_each_get_their_own(cx: Ctx) {
    let b = cx.backend.clone();
    let streams: Vec<String> = (0..3).map(|i| cx.key(&format!("s{i}"))).collect();
    let mut early = Vec::new();
    for s in &streams {
        let ids = b
            .stream_add_batch(
                s,
                (0..10).map(|i| entry(&i.to_string())).collect(),
                &AddOptions::default(),
            )
            .await
            .unwrap();
        early.push(ids.into_iter().map(Option::unwrap).collect::<Vec<_>>());
    }
    const LATER: usize = 40;
    let mut readers = Vec::new();
    for r in 0..12usize {
        // Reader r reads one, two or three streams, starting after entry r % 10 of each.
        let mine: Vec<(String, EntryId)> = (0..=r % 3)
            .map(|k| {
                let s = (r + k) % 3;
                (streams[s].clone(), early[s][r % 10])
            })
            .collect();
        let count = [1, 3, 7][r % 3];
        let b = b.clone();
        readers.push(tokio::spawn(async move {
            let want = mine.len() * (9 - r % 10 + LATER);
            read_all(b, mine, count, want, r % 4 == 0).await
        }));
    }
    // In batches of four, paced so that readers are blocked when a batch lands: a reader
    // with a count of one or three must still get no more than that.
    for i in 0..LATER / 4 {
        for s in &streams {
            let batch = (0..4).map(|j| entry(&format!("later{i}.{j}"))).collect();
            b.stream_add_batch(s, batch, &AddOptions::default())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut all = BTreeMap::new();
    for s in &streams {
        let ids: Vec<EntryId> = b
            .stream_range(s, EntryId::ZERO, EntryId::MAX, None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        all.insert(s.clone(), ids);
    }
    for (r, reader) in readers.into_iter().enumerate() {
        let (start, seen) = timeout(patience() * 4, reader)
            .await
            .unwrap_or_else(|_| panic!("reader {r} did not see all its entries"))
            .unwrap();
        for (s, from) in start {
            let expected: Vec<EntryId> = all[&s].iter().copied().filter(|id| *id > from).collect();
            assert_eq!(seen[&s], expected, "reader {r} on {s}");
        }
    }
}

/// Reads `streams` until `want` entries arrived, checking each batch against the cursor
/// and `count`; with `cancel`, every other read is abandoned after a millisecond.
async fn read_all(
    b: Arc<dyn Backend>,
    start: Vec<(String, EntryId)>,
    count: usize,
    want: usize,
    cancel: bool,
) -> (Vec<(String, EntryId)>, BTreeMap<String, Vec<EntryId>>) {
    let mut cursors = start.clone();
    let mut seen: BTreeMap<String, Vec<EntryId>> =
        start.iter().map(|(s, _)| (s.clone(), Vec::new())).collect();
    let mut got = 0;
    let mut round = 0u32;
    while got < want {
        round += 1;
        let read = b.stream_read(&cursors, count, Some(Duration::from_secs(5)));
        let batches = if cancel && round.is_multiple_of(2) {
            match timeout(Duration::from_millis(1), read).await {
                Ok(out) => out.unwrap(),
                Err(_) => continue,
            }
        } else {
            read.await.unwrap()
        };
        for batch in batches {
            let Some(cursor) = cursors.iter_mut().find(|(s, _)| *s == batch.stream) else {
                panic!("entries of a stream not asked for: {}", batch.stream);
            };
            assert!(
                batch.entries.len() <= count,
                "{} entries for count {count}",
                batch.entries.len()
            );
            for e in &batch.entries {
                assert!(e.id > cursor.1, "entry {} at or before the cursor", e.id);
                cursor.1 = e.id;
                got += 1;
            }
            seen.entry(batch.stream)
                .or_default()
                .extend(batch.entries.iter().map(|e| e.id));
        }
    }
    (start, seen)
}

/// A read that starts while another is blocked (on another stream, with a long timeout)
/// is served as soon as its stream gets an entry, not when the other read times out.
pub async fn read_joins_a_blocked_read_promptly(cx: Ctx) {
    let b = cx.backend.clone();
    let (s1, s2) = (cx.key("s1"), cx.key("s2"));
    let long = Duration::from_secs(30);
    let blocked = {
        let (b, s1) = (b.clone(), s1.clone());
        tokio::spawn(async move { b.stream_read(&[(s1, EntryId::ZERO)], 10, Some(long)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // let the first read block
    let started = Instant::now();
    let newcomer = {
        let (b, s2) = (b.clone(), s2.clone());
        tokio::spawn(async move { b.stream_read(&[(s2, EntryId::ZERO)], 10, Some(long)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // and the second one join it
    b.stream_add(&s2, entry("for the newcomer"), &AddOptions::default())
        .await
        .unwrap();
    let got = newcomer.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].stream, s2);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "the newcomer waited {waited:?}: it was not taken into the blocked read"
    );
    assert!(
        !blocked.is_finished(),
        "the first read returned without data"
    );
    b.stream_add(&s1, entry("for the first"), &AddOptions::default())
        .await
        .unwrap();
    let got = timeout(Duration::from_secs(10), blocked)
        .await
        .expect("the first read was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(got[0].stream, s1);
}

/// A read of a key that holds another type fails with `WrongType` while other reads stay
/// blocked and are served normally.
pub async fn read_of_a_bad_key_fails_only_that_read(cx: Ctx) {
    let b = cx.backend.clone();
    let (good, bad) = (cx.key("good"), cx.key("bad"));
    // A lease is a key of another type than a stream.
    assert!(b
        .lease_acquire(&bad, "someone", Duration::from_secs(60))
        .await
        .unwrap());
    let waiting = {
        let (b, good) = (b.clone(), good.clone());
        tokio::spawn(async move {
            b.stream_read(&[(good, EntryId::ZERO)], 10, Some(Duration::from_secs(30)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // let the good read block
    let out = timeout(
        Duration::from_secs(10),
        b.stream_read(
            &[(bad.clone(), EntryId::ZERO)],
            10,
            Some(Duration::from_secs(30)),
        ),
    )
    .await
    .expect("the bad read hung");
    assert!(
        matches!(out, Err(Error::WrongType { ref key }) if *key == bad),
        "{out:?}"
    );
    assert!(
        !waiting.is_finished(),
        "the good read ended with the bad one"
    );
    b.stream_add(&good, entry("fine"), &AddOptions::default())
        .await
        .unwrap();
    let got = timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the good read was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(got[0].stream, good);
}
