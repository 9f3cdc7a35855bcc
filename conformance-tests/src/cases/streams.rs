//! Appends, ranges, info and removal.

use std::time::Duration;

use bytes::Bytes;
use pulse::{
    backend::{AddOptions, EntryId, KeyExpiry, SetCondition, Ttl},
    Error,
};

use super::{entry, name_of};
use crate::Ctx;

/// Appended entries come back in order with their fields, within inclusive ranges.
pub async fn stream_add_and_range(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let fields = vec![
        ("n".to_owned(), Bytes::from("ev")),
        ("p".to_owned(), Bytes::from_static(b"\x00\x01\xff")),
        ("t".to_owned(), Bytes::from("topic")),
    ];
    let a = b
        .stream_add(&s, fields.clone(), &AddOptions::default())
        .await
        .unwrap()
        .unwrap();
    let c = b
        .stream_add(&s, entry("second"), &AddOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(c > a, "IDs must increase");
    let all = b
        .stream_range(&s, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, a);
    assert_eq!(*all[0].fields, *fields);
    assert_eq!(b.stream_range(&s, c, c, None).await.unwrap()[0].id, c);
    assert_eq!(
        b.stream_range(&s, EntryId::ZERO, EntryId::MAX, Some(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(b
        .stream_range(&cx.key("none"), EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap()
        .is_empty());
}

/// Without `create`, a missing stream is not created and nothing is written.
pub async fn stream_add_without_create(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let opts = AddOptions::default().with_create(false);
    assert_eq!(b.stream_add(&s, entry("a"), &opts).await.unwrap(), None);
    assert!(!b.exists(&s).await.unwrap());
    b.stream_add(&s, entry("a"), &AddOptions::default())
        .await
        .unwrap();
    assert!(b.stream_add(&s, entry("b"), &opts).await.unwrap().is_some());
    assert_eq!(b.stream_info(&s).await.unwrap().unwrap().length, 2);
}

/// `max_len` trims approximately: far fewer than appended, never fewer than the bound.
pub async fn stream_add_trims(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let opts = AddOptions::default().with_max_len(10);
    let batch: Vec<_> = (0..1000).map(|i| entry(&i.to_string())).collect();
    b.stream_add_batch(&s, batch, &opts).await.unwrap();
    let len = b.stream_info(&s).await.unwrap().unwrap().length;
    assert!(
        (10..=300).contains(&len),
        "length {len} after trimming to ~10"
    );
    let newest = b
        .stream_range(&s, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert_eq!(
        name_of(newest.last().unwrap()),
        "999",
        "trimming drops the oldest"
    );
}

/// An absolute TTL given with the append is set once and not extended.
pub async fn stream_add_ttl_absolute(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let opts = AddOptions::default().with_ttl(Ttl::Absolute(Duration::from_secs(10)));
    b.stream_add(&s, entry("a"), &opts).await.unwrap();
    let KeyExpiry::In(first) = b.expiry(&s).await.unwrap() else {
        panic!("no TTL")
    };
    tokio::time::sleep(Duration::from_millis(50)).await; // let the clock advance
    b.stream_add(&s, entry("b"), &opts).await.unwrap();
    let KeyExpiry::In(second) = b.expiry(&s).await.unwrap() else {
        panic!("no TTL")
    };
    assert!(
        second < first,
        "absolute TTL was extended: {first:?} -> {second:?}"
    );
}

/// A sliding TTL given with the append is reset by each append.
pub async fn stream_add_ttl_sliding(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let opts = AddOptions::default().with_ttl(Ttl::Sliding(Duration::from_secs(10)));
    b.stream_add(&s, entry("a"), &opts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await; // let the clock advance
    let KeyExpiry::In(before) = b.expiry(&s).await.unwrap() else {
        panic!("no TTL")
    };
    b.stream_add(&s, entry("b"), &opts).await.unwrap();
    let KeyExpiry::In(after) = b.expiry(&s).await.unwrap() else {
        panic!("no TTL")
    };
    assert!(
        after > before,
        "sliding TTL not extended: {before:?} -> {after:?}"
    );
}

/// A batch appends every entry in order and returns one ID each.
pub async fn stream_add_batch(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let ids = b
        .stream_add_batch(
            &s,
            (0..50).map(|i| entry(&i.to_string())).collect(),
            &AddOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 50);
    let ids: Vec<EntryId> = ids.into_iter().map(Option::unwrap).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let all = b
        .stream_range(&s, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    let names: Vec<String> = all.iter().map(name_of).collect();
    assert_eq!(names, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    let missing = b
        .stream_add_batch(
            &cx.key("none"),
            vec![entry("x")],
            &AddOptions::default().with_create(false),
        )
        .await
        .unwrap();
    assert_eq!(missing, vec![None]);
}

/// `stream_info` reports length, the first entry and the last generated ID (which survives
/// deletion).
pub async fn stream_info_tracks_last_id(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    assert_eq!(b.stream_info(&s).await.unwrap(), None);
    b.stream_add(&s, entry("a"), &AddOptions::default())
        .await
        .unwrap();
    let last = b
        .stream_add(&s, entry("b"), &AddOptions::default())
        .await
        .unwrap()
        .unwrap();
    let info = b.stream_info(&s).await.unwrap().unwrap();
    assert_eq!((info.length, info.last_id), (2, last));
    let first = info.first_id.expect("a first entry");
    assert!(first < last);
    b.stream_remove(&s, &[last]).await.unwrap();
    let info = b.stream_info(&s).await.unwrap().unwrap();
    assert_eq!(
        (info.length, info.first_id, info.last_id),
        (1, Some(first), last)
    );
    b.stream_remove(&s, &[first]).await.unwrap();
    let info = b.stream_info(&s).await.unwrap().unwrap();
    assert_eq!((info.length, info.first_id, info.last_id), (0, None, last));
}

/// `stream_remove` deletes the listed entries only.
pub async fn stream_remove(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let a = b
        .stream_add(&s, entry("a"), &AddOptions::default())
        .await
        .unwrap()
        .unwrap();
    b.stream_add(&s, entry("b"), &AddOptions::default())
        .await
        .unwrap();
    assert_eq!(
        b.stream_remove(&s, &[a, EntryId::new(1, 1)]).await.unwrap(),
        1
    );
    let left = b
        .stream_range(&s, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert_eq!(left.iter().map(name_of).collect::<Vec<_>>(), ["b"]);
    assert_eq!(b.stream_remove(&cx.key("none"), &[a]).await.unwrap(), 0);
}

/// Stream operations on a key of another type fail with `WrongType`.
pub async fn stream_wrong_type(cx: Ctx) {
    let b = &cx.backend;
    let map = cx.map("h");
    b.map_set(&map, "k", Bytes::from("v"), SetCondition::Always)
        .await
        .unwrap();
    let h = &map.hash;
    assert!(matches!(
        b.stream_add(h, entry("a"), &AddOptions::default()).await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        b.stream_info(h).await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        b.stream_range(h, EntryId::ZERO, EntryId::MAX, None).await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        b.stream_read(&[(h.clone(), EntryId::ZERO)], 1, None).await,
        Err(Error::WrongType { .. })
    ));
}

/// An entry without fields is an `InvalidArgument` and writes nothing.
pub async fn stream_add_rejects_empty_entry(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    assert!(matches!(
        b.stream_add(&s, vec![], &AddOptions::default()).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        b.stream_add_batch(&s, vec![entry("a"), vec![]], &AddOptions::default())
            .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(!b.exists(&s).await.unwrap());
}

/// Entry IDs carry the store's wall-clock milliseconds (event times and `Start::At` rely
/// on it): near the current time, and advancing with it.
pub async fn stream_ids_carry_wall_clock_time(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let opts = AddOptions::default();
    let first = b.stream_add(&s, entry("a"), &opts).await.unwrap().unwrap();
    // The store's clock may differ from this host's a little, never by minutes.
    let skew = 5 * 60 * 1000;
    assert!(
        first.ms.abs_diff(now_ms()) < skew,
        "entry ID {first:?} is not a wall-clock time near {}",
        now_ms()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = b.stream_add(&s, entry("b"), &opts).await.unwrap().unwrap();
    assert!(
        second.ms >= first.ms + 50,
        "IDs do not follow the clock: {first:?} then {second:?} 100 ms later"
    );
}

/// `stream_add_once` adds once per dedup key within the window — also under concurrent
/// adds — and stores nothing when it adds nothing.
pub async fn stream_add_once_dedups_within_its_window(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let dedup = |k: &str| format!("{s}:dedup:{k}");
    let window = Duration::from_secs(60);
    let o = AddOptions::default();
    let first = b
        .stream_add_once(&s, &dedup("a"), window, entry("1"), &o)
        .await
        .unwrap();
    assert!(first.added);
    let again = b
        .stream_add_once(&s, &dedup("a"), window, entry("2"), &o)
        .await
        .unwrap();
    assert_eq!((again.id, again.added), (first.id, false));
    let other = b
        .stream_add_once(&s, &dedup("b"), window, entry("3"), &o)
        .await
        .unwrap();
    assert!(other.added && other.id > first.id);
    let all = b
        .stream_range(&s, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert_eq!(all.iter().map(name_of).collect::<Vec<_>>(), ["1", "3"]);
    // Not created: nothing added, nothing stored.
    let missing = cx.key("missing");
    let none = b
        .stream_add_once(
            &missing,
            &format!("{missing}:dedup:x"),
            window,
            entry("x"),
            &AddOptions::default().with_create(false),
        )
        .await
        .unwrap();
    assert_eq!((none.id, none.added), (None, false));
    let now = b
        .stream_add_once(
            &missing,
            &format!("{missing}:dedup:x"),
            window,
            entry("x"),
            &o,
        )
        .await
        .unwrap();
    assert!(now.added);
    // Concurrent adds with one key: one adds, all get its ID.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (b, s, d) = (b.clone(), s.clone(), dedup("race"));
        racers.spawn(async move {
            b.stream_add_once(
                &s,
                &d,
                window,
                entry(&format!("r{i}")),
                &AddOptions::default(),
            )
            .await
            .unwrap()
        });
    }
    let outcomes = racers.join_all().await;
    assert_eq!(outcomes.iter().filter(|o| o.added).count(), 1);
    assert!(outcomes.iter().all(|o| o.id == outcomes[0].id));
    // After the window the key adds again.
    let short = Duration::from_millis(100);
    let one = b
        .stream_add_once(&s, &dedup("short"), short, entry("s1"), &o)
        .await
        .unwrap();
    assert!(one.added);
    crate::eventually("the dedup window passes", || async {
        b.stream_add_once(&s, &dedup("short"), short, entry("s2"), &o)
            .await
            .unwrap()
            .added
    })
    .await;
}

/// Delayed events stay out of the stream until due by the backend's clock, then are
/// appended in due order (ties in ID order), at most `limit` per release, each once.
pub async fn delayed_events_are_released_when_due_in_due_order(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let (index, data) = (format!("{s}:delayed"), format!("{s}:delayed:data"));
    let o = AddOptions::default();
    let empty = b.delay_release(&s, &index, &data, 10, &o).await.unwrap();
    assert_eq!((empty.released.len(), empty.next_due_ms), (0, None));
    let now = empty.now_ms;
    let future = now + 600_000;
    // Each add returns the earliest due time held before it.
    assert_eq!(
        b.delay_add(&index, &data, "z", future, entry("future"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.delay_add(&index, &data, "b", now - 10, entry("late-b"))
            .await
            .unwrap(),
        Some(future)
    );
    assert_eq!(
        b.delay_add(&index, &data, "a", now - 10, entry("late-a"))
            .await
            .unwrap(),
        Some(now - 10)
    );
    assert_eq!(
        b.delay_add(&index, &data, "c", now - 20, entry("first"))
            .await
            .unwrap(),
        Some(now - 10)
    );
    assert!(
        b.stream_info(&s).await.unwrap().is_none(),
        "nothing visible before it is due"
    );
    let info = b.delay_info(&index).await.unwrap();
    assert_eq!((info.count, info.next_due_ms), (4, Some(now - 20)));
    let one = b.delay_release(&s, &index, &data, 2, &o).await.unwrap();
    assert_eq!((one.released.len(), one.next_due_ms), (2, Some(now - 10)));
    assert!(one.now_ms >= now);
    let two = b.delay_release(&s, &index, &data, 10, &o).await.unwrap();
    assert_eq!((two.released.len(), two.next_due_ms), (1, Some(future)));
    let stored = b
        .stream_range(&s, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(name_of).collect::<Vec<_>>(),
        ["first", "late-a", "late-b"]
    );
    let ids: Vec<EntryId> = one.released.iter().chain(&two.released).copied().collect();
    assert_eq!(ids, stored.iter().map(|e| e.id).collect::<Vec<_>>());
    let none = b.delay_release(&s, &index, &data, 10, &o).await.unwrap();
    assert_eq!((none.released.len(), none.next_due_ms), (0, Some(future)));
    assert!(none.unreadable.is_empty());
    let info = b.delay_info(&index).await.unwrap();
    assert_eq!((info.count, info.next_due_ms), (1, Some(future)));
    let missing = b.delay_info(&cx.key("none")).await.unwrap();
    assert_eq!((missing.count, missing.next_due_ms), (0, None));
    // Bad input.
    let e = b
        .delay_add(&index, &data, "x", now, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let e = b.delay_release(&s, &index, &data, 0, &o).await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let map = format!("{s}:map");
    b.map_set(
        &pulse::backend::MapTarget::new(map.clone(), format!("{map}:n")),
        "k",
        Bytes::from("v"),
        SetCondition::Always,
    )
    .await
    .unwrap();
    b.delay_add(&index, &data, "d", now - 5, entry("due"))
        .await
        .unwrap();
    let e = b
        .delay_release(&map, &index, &data, 10, &o)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::WrongType { .. }), "{e:?}");
    let kept = b.delay_release(&s, &index, &data, 10, &o).await.unwrap();
    assert_eq!(kept.released.len(), 1, "a refused release moved nothing");
    let e = b.delay_info(&map).await.unwrap_err();
    assert!(matches!(e, Error::WrongType { .. }), "{e:?}");
}

/// A delayed event can be cancelled until it is released, once; adding an ID again
/// replaces its due time and fields rather than holding it twice.
pub async fn delayed_events_can_be_cancelled(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let (index, data) = (format!("{s}:delayed"), format!("{s}:delayed:data"));
    let o = AddOptions::default();
    let first = b
        .delay_release(&s, &index, &data, 1, &o)
        .await
        .unwrap()
        .now_ms;
    b.delay_add(&index, &data, "a", first + 600_000, entry("a"))
        .await
        .unwrap();
    b.delay_add(&index, &data, "b", first + 600_000, entry("b"))
        .await
        .unwrap();
    // Re-adding "b" due now replaces it: one "b", released with its new fields.
    b.delay_add(&index, &data, "b", first - 1, entry("b2"))
        .await
        .unwrap();
    assert_eq!(b.delay_info(&index).await.unwrap().count, 2);
    assert!(b.delay_cancel(&index, &data, "a").await.unwrap());
    assert!(!b.delay_cancel(&index, &data, "a").await.unwrap(), "once");
    assert!(!b.delay_cancel(&index, &data, "never").await.unwrap());
    let out = b.delay_release(&s, &index, &data, 10, &o).await.unwrap();
    assert_eq!((out.released.len(), out.next_due_ms), (1, None));
    assert!(
        !b.delay_cancel(&index, &data, "b").await.unwrap(),
        "a released event is no longer held"
    );
    let stored = b
        .stream_range(&s, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert_eq!(stored.iter().map(name_of).collect::<Vec<_>>(), ["b2"]);
    let info = b.delay_info(&index).await.unwrap();
    assert_eq!((info.count, info.next_due_ms), (0, None));
}

/// An append with an explicit ID (restoring a dump) keeps it when it is above the stream's
/// last ID, and is refused (`InvalidArgument`, nothing appended) otherwise, and in a batch.
pub async fn stream_add_with_an_explicit_id(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let at = |ms, seq| AddOptions::default().with_id(EntryId::new(ms, seq));
    let zero = b.stream_add(&s, entry("0"), &at(0, 0)).await;
    assert!(matches!(zero, Err(Error::InvalidArgument(_))), "{zero:?}");
    assert_eq!(
        b.stream_add(&s, entry("a"), &at(5, 0)).await.unwrap(),
        Some(EntryId::new(5, 0))
    );
    assert_eq!(
        b.stream_add(&s, entry("b"), &at(5, 7)).await.unwrap(),
        Some(EntryId::new(5, 7))
    );
    for (ms, seq) in [(5, 7), (5, 6), (4, 99)] {
        let r = b.stream_add(&s, entry("x"), &at(ms, seq)).await;
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "{ms}-{seq}: {r:?}"
        );
    }
    let batch = b
        .stream_add_batch(&s, vec![entry("c"), entry("d")], &at(9, 0))
        .await;
    assert!(matches!(batch, Err(Error::InvalidArgument(_))), "{batch:?}");
    // With a TTL (one atomic step with its expiry), and without creating.
    let ttl = at(6, 0).with_ttl(Ttl::Sliding(Duration::from_secs(60)));
    assert_eq!(
        b.stream_add(&s, entry("c"), &ttl).await.unwrap(),
        Some(EntryId::new(6, 0))
    );
    let missing = cx.key("missing");
    assert_eq!(
        b.stream_add(&missing, entry("x"), &at(1, 0).with_create(false))
            .await
            .unwrap(),
        None
    );
    // A new one after them gets a later ID; everything refused left nothing.
    let next = b
        .stream_add(&s, entry("d"), &AddOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(next > EntryId::new(6, 0));
    let all = b
        .stream_range(&s, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    let ids: Vec<EntryId> = all.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [
            EntryId::new(5, 0),
            EntryId::new(5, 7),
            EntryId::new(6, 0),
            next
        ]
    );
    assert!(matches!(b.expiry(&s).await.unwrap(), KeyExpiry::In(_)));
}
