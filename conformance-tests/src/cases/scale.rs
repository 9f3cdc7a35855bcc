//! Big maps and big values: cursor reads of hashes, multi-field reads, the bound on a list's
//! resulting size, notices that leave big values behind, and replicas that join a map
//! while it is written and still start from one consistent revision.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use pulse::{
    backend::{ListEdit, MapTarget, MapWrite, PubSubEvent, SetCondition},
    codec::{MapChange, MapNotice, NOTICE_VALUE_BUDGET},
    rmap::{Map, MapOptions},
    Error,
};

use crate::{eventually, expect_event, Ctx};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Writes `n` fields `f0..` (value = index) in batches.
async fn fill(cx: &Ctx, map: &MapTarget, n: usize) {
    let keys: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
    for chunk in keys.chunks(500) {
        let writes = chunk
            .iter()
            .map(|k| MapWrite::new(k, Bytes::from(k[1..].to_owned()), SetCondition::Always))
            .collect();
        cx.backend.map_set_many(map, writes).await.unwrap();
    }
}

/// Every field of a full cursor iteration (duplicates merged), and the number of steps.
async fn scan_all(cx: &Ctx, hash: &str, count: usize) -> (HashMap<String, Bytes>, usize) {
    let (mut out, mut cursor, mut steps) = (HashMap::new(), None::<String>, 0);
    loop {
        let chunk = cx
            .backend
            .hash_scan(hash, cursor.as_deref(), count)
            .await
            .unwrap();
        steps += 1;
        out.extend(chunk.fields);
        match chunk.next {
            None => return (out, steps),
            next => cursor = next,
        }
        assert!(steps < 100_000, "the scan never ends");
    }
}

/// A full scan returns exactly the hash's fields; a missing hash is one empty final step;
/// `hash_get_fields` reads several fields in order.
pub async fn hash_scan_visits_every_field(cx: Ctx) {
    let map = cx.map("big");
    let (empty, steps) = scan_all(&cx, &map.hash, 10).await;
    assert!(empty.is_empty());
    assert_eq!(steps, 1, "a missing hash is one final step");
    fill(&cx, &map, 3000).await;
    let (all, steps) = scan_all(&cx, &map.hash, 100).await;
    let mut expected = cx.stored_map(&map.hash).await;
    assert_eq!(expected.len(), 3000);
    for f in ["=epoch", "=rev", "=kind"] {
        assert!(
            all.contains_key(f),
            "the scan returns bookkeeping fields too"
        );
    }
    let mut scanned = all;
    scanned.retain(|k, _| !k.starts_with('='));
    expected.retain(|k, _| !k.starts_with('='));
    assert_eq!(scanned, expected);
    assert!(
        steps > 1,
        "3000 fields with a hint of 100 take several steps"
    );

    let got = cx
        .backend
        .hash_get_fields(&map.hash, &["f7", "nope", "=rev", "f2999"])
        .await
        .unwrap();
    assert_eq!(got[0], Some(b("7")));
    assert_eq!(got[1], None);
    assert_eq!(got[2], Some(b("3000"))); // one revision per write
    assert_eq!(got[3], Some(b("2999")));
    assert!(cx
        .backend
        .hash_get_fields(&map.hash, &[])
        .await
        .unwrap()
        .is_empty());
    let missing = cx.key("missing");
    assert_eq!(
        cx.backend.hash_get_fields(&missing, &["a"]).await.unwrap(),
        vec![None]
    );
}

/// Fields present the whole time are returned even while other fields come and go
/// between steps; a field never present is never returned.
pub async fn hash_scan_under_writes(cx: Ctx) {
    let map = cx.map("busy");
    fill(&cx, &map, 1000).await;
    let (mut cursor, mut seen, mut step) = (None::<String>, HashMap::new(), 0u32);
    loop {
        let chunk = cx
            .backend
            .hash_scan(&map.hash, cursor.as_deref(), 50)
            .await
            .unwrap();
        seen.extend(chunk.fields);
        // Churn between steps: add and remove transient fields.
        step += 1;
        let t = format!("t{step}");
        cx.backend
            .map_set(&map, &t, b("x"), SetCondition::Always)
            .await
            .unwrap();
        cx.backend
            .map_delete(&map, &t, pulse::backend::DeleteCondition::Always)
            .await
            .unwrap();
        match chunk.next {
            None => break,
            next => cursor = next,
        }
    }
    for i in 0..1000 {
        assert_eq!(
            seen.get(&format!("f{i}")),
            Some(&Bytes::from(i.to_string()))
        );
    }
    assert!(!seen.keys().any(|k| k.starts_with('g')));
}

/// A list edit whose result would exceed `max_value` is refused and changes nothing.
pub async fn map_list_result_size_is_bounded(cx: Ctx) {
    let map = cx.map("lists").with_max_value(16);
    let mut sub = cx
        .backend
        .subscribe(std::slice::from_ref(&map.channel))
        .await
        .unwrap();
    let ok = cx
        .backend
        .map_edit_list(&map, "l", ListEdit::Append, vec![b("12345"), b("678")])
        .await
        .unwrap();
    assert!(ok.changed);
    expect_event(&mut sub).await;
    let stored = cx.backend.hash_get(&map.hash, "l").await.unwrap();
    // Each append is small, the result is what is bounded.
    let too_big = cx
        .backend
        .map_edit_list(&map, "l", ListEdit::Append, vec![b("abcdef"), b("g")])
        .await;
    assert!(
        matches!(too_big, Err(Error::PayloadTooLarge { limit: 16, size }) if size > 16),
        "got {too_big:?}"
    );
    assert_eq!(cx.backend.hash_get(&map.hash, "l").await.unwrap(), stored);
    let rev = cx.backend.hash_get(&map.hash, "=rev").await.unwrap();
    assert_eq!(rev, Some(b("1")), "a refused edit bumps nothing");
    // Removing still works (it only shrinks).
    let removed = cx
        .backend
        .map_edit_list(&map, "l", ListEdit::Remove, vec![b("678")])
        .await
        .unwrap();
    assert!(removed.changed);
    match expect_event(&mut sub).await {
        PubSubEvent::Message { payload, .. } => {
            assert_eq!(
                MapNotice::decode(&payload).unwrap().rev,
                2,
                "no notice for the refusal"
            )
        }
        other => panic!("expected a notice, got {other:?}"),
    }
}

/// A value over the notice budget travels as `Changed` (key only); in a batch, values are
/// carried in order while they fit.
pub async fn map_big_values_leave_the_notice(cx: Ctx) {
    let map = cx.map("big-values");
    let mut sub = cx
        .backend
        .subscribe(std::slice::from_ref(&map.channel))
        .await
        .unwrap();
    let frame = |e: PubSubEvent| match e {
        PubSubEvent::Message { payload, .. } => {
            assert!(
                payload.len() < NOTICE_VALUE_BUDGET + 64 * 1024,
                "frame too big"
            );
            MapNotice::decode_all(&payload).unwrap()
        }
        other => panic!("expected a notice, got {other:?}"),
    };
    let fits = Bytes::from(vec![b'a'; NOTICE_VALUE_BUDGET]);
    let over = Bytes::from(vec![b'b'; NOTICE_VALUE_BUDGET + 1]);
    cx.backend
        .map_set(&map, "fits", fits.clone(), SetCondition::Always)
        .await
        .unwrap();
    let n = frame(expect_event(&mut sub).await);
    assert_eq!(
        n[0].change,
        MapChange::Set {
            key: "fits".into(),
            value: fits
        }
    );
    cx.backend
        .map_set(&map, "over", over.clone(), SetCondition::Always)
        .await
        .unwrap();
    let n = frame(expect_event(&mut sub).await);
    assert_eq!(n[0].change, MapChange::Changed { key: "over".into() });
    assert_eq!(
        cx.backend.hash_get(&map.hash, "over").await.unwrap(),
        Some(over)
    );
    // Increments and list edits publish through the same rule.
    let item = Bytes::from(vec![b'c'; NOTICE_VALUE_BUDGET]);
    cx.backend
        .map_edit_list(&map, "list", ListEdit::Append, vec![item])
        .await
        .unwrap();
    let n = frame(expect_event(&mut sub).await);
    assert_eq!(n[0].change, MapChange::Changed { key: "list".into() });
    let third = Bytes::from(vec![b'd'; NOTICE_VALUE_BUDGET / 3 + 1]);
    let writes = ["x", "y", "z", "w"]
        .iter()
        .map(|k| MapWrite::new(k, third.clone(), SetCondition::Always))
        .collect();
    cx.backend.map_set_many(&map, writes).await.unwrap();
    let n = frame(expect_event(&mut sub).await);
    assert_eq!(n.len(), 4);
    assert!(matches!(&n[0].change, MapChange::Set { key, .. } if key == "x"));
    assert!(matches!(&n[1].change, MapChange::Set { key, .. } if key == "y"));
    assert_eq!(n[2].change, MapChange::Changed { key: "z".into() });
    assert_eq!(n[3].change, MapChange::Changed { key: "w".into() });
    assert_eq!((n[0].rev, n[3].rev), (4, 7));
}

/// Replicas get values too big for a notice, and a list cannot grow past the map's value
/// limit however it is appended to.
pub async fn rmap_big_values_replicate(cx: Ctx) {
    let opts = MapOptions::default()
        .with_keyspace(cx.keyspace())
        .with_check_interval(Duration::from_millis(50))
        .with_max_value_size(3 * NOTICE_VALUE_BUDGET);
    let writer = Map::join(cx.backend.clone(), "big", opts.clone())
        .await
        .unwrap();
    let reader = Map::join(cx.backend.clone(), "big", opts).await.unwrap();
    let big = Bytes::from(vec![b'v'; 2 * NOTICE_VALUE_BUDGET]);
    writer.set("k", big.clone()).await.unwrap();
    writer.set("small", "s").await.unwrap();
    eventually("the big value replicates", || {
        let (reader, big) = (reader.clone(), big.clone());
        async move { reader.get("k") == Some(big) && reader.get("small").is_some() }
    })
    .await;
    let item = Bytes::from(vec![b'i'; NOTICE_VALUE_BUDGET]);
    writer.append("l", [item.clone()]).await.unwrap();
    writer.append("l", [item.clone()]).await.unwrap();
    let third = writer.append("l", [item.clone()]).await;
    assert!(
        matches!(third, Err(Error::PayloadTooLarge { .. })),
        "got {third:?}"
    );
    // Both replicas (the writer's own too: a write does not wait for it) hold two items.
    for replica in [&reader, &writer] {
        eventually("the list replicates", || {
            let replica = replica.clone();
            async move { replica.get_list("l").ok().flatten().map(|l| l.len()) == Some(2) }
        })
        .await;
    }
}

/// A map written without pause while replicas join: each join starts from the content of
/// one revision. The writer sets `k0, k1, …` round robin to a running counter, so a
/// consistent view holds `N` consecutive counter values, the newest being its revision's;
/// a read mixed from several revisions would not. Joins go on until ten of them overlapped
/// writes (the writer's counter moved during the join).
pub async fn rmap_join_while_written_is_consistent(cx: Ctx) {
    const N: u64 = 1000;
    let opts = MapOptions::default()
        .with_keyspace(cx.keyspace())
        .with_check_interval(Duration::from_millis(50));
    let writer = Map::join(cx.backend.clone(), "busy", opts.clone())
        .await
        .unwrap();
    // Filled in batches of concurrent sets (one task each), as writers would.
    for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
        let sets: Vec<_> = chunk
            .iter()
            .map(|i| {
                let (writer, i) = (writer.clone(), *i);
                tokio::spawn(async move { writer.set(&format!("k{i}"), i.to_string()).await })
            })
            .collect();
        for set in sets {
            set.await.unwrap().unwrap();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(N));
    let task = {
        let (writer, stop, written) = (writer.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let i = written.load(Ordering::SeqCst);
                writer
                    .set(&format!("k{}", i % N), i.to_string())
                    .await
                    .unwrap();
                written.store(i + 1, Ordering::SeqCst);
                // A write to the memory backend may never wait: let a failing case end.
                tokio::task::yield_now().await;
            }
        })
    };
    let (mut overlapped, mut joins) = (0, 0);
    while overlapped < 10 && joins < 500 {
        joins += 1;
        let before = written.load(Ordering::SeqCst);
        let replica = Map::join(cx.backend.clone(), "busy", opts.clone())
            .await
            .unwrap();
        if written.load(Ordering::SeqCst) > before {
            overlapped += 1;
        }
        let snap = replica.snapshot();
        let values: HashSet<u64> = snap
            .values()
            .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
            .collect();
        assert_eq!(values.len() as u64, N, "one value per key");
        let newest = *values.iter().max().unwrap();
        let oldest = *values.iter().min().unwrap();
        assert_eq!(
            newest - oldest,
            N - 1,
            "values of several revisions mixed at {:?}",
            snap.revision()
        );
        // Revision r holds the counter values up to r - 1.
        assert_eq!(
            snap.revision().rev,
            newest + 1,
            "content and revision agree"
        );
        replica.close().await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    task.await.unwrap();
    assert!(overlapped > 0, "none of {joins} joins ran under writes");
}
