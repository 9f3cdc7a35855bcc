//! Consumer groups: positions, shared delivery, ack, pending, claiming, consumers.

use std::{collections::BTreeSet, time::Duration};

use pulse::{
    backend::{AddOptions, EntryId, GroupStart, StreamEntry},
    Error,
};

use super::{entry, name_of};
use crate::Ctx;

async fn add_n(cx: &Ctx, s: &str, n: usize) -> Vec<EntryId> {
    cx.backend
        .stream_add_batch(
            s,
            (0..n).map(|i| entry(&i.to_string())).collect(),
            &AddOptions::default(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

async fn read(cx: &Ctx, s: &str, consumer: &str, count: usize) -> Vec<StreamEntry> {
    let got = cx
        .backend
        .group_read("g", consumer, &[s.to_owned()], count, None, false)
        .await
        .unwrap();
    got.into_iter().flat_map(|b| b.entries).collect()
}

/// `Newest` starts after the current last entry, `After(id)` after `id`.
pub async fn group_create_positions(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let ids = add_n(&cx, &s, 3).await;
    assert!(b
        .group_create(&s, "newest", GroupStart::Newest, false)
        .await
        .unwrap());
    assert!(b
        .group_create(&s, "oldest", GroupStart::After(EntryId::ZERO), false)
        .await
        .unwrap());
    assert!(b
        .group_create(&s, "mid", GroupStart::After(ids[0]), false)
        .await
        .unwrap());
    b.stream_add(&s, entry("new"), &AddOptions::default())
        .await
        .unwrap();
    for (g, want) in [
        ("newest", &["new"][..]),
        ("oldest", &["0", "1", "2", "new"]),
        ("mid", &["1", "2", "new"]),
    ] {
        let got = b
            .group_read(g, "c", std::slice::from_ref(&s), 10, None, false)
            .await
            .unwrap();
        let names: Vec<String> = got
            .into_iter()
            .flat_map(|b| b.entries)
            .map(|e| name_of(&e))
            .collect();
        assert_eq!(names, want, "group {g}");
    }
}

/// Creating an existing group returns false and keeps its position.
pub async fn group_create_existing(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    add_n(&cx, &s, 2).await;
    assert!(b
        .group_create(&s, "g", GroupStart::Newest, false)
        .await
        .unwrap());
    assert!(!b
        .group_create(&s, "g", GroupStart::After(EntryId::ZERO), false)
        .await
        .unwrap());
    assert!(
        read(&cx, &s, "c", 10).await.is_empty(),
        "position must not move back"
    );
}

/// A missing stream is `NoGroup` unless `create_stream`, which creates it empty.
pub async fn group_create_missing_stream(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    assert!(matches!(
        b.group_create(&s, "g", GroupStart::Newest, false).await,
        Err(Error::NoGroup { .. })
    ));
    assert!(!b.exists(&s).await.unwrap());
    assert!(b
        .group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap());
    let info = b.stream_info(&s).await.unwrap().unwrap();
    assert_eq!(info.length, 0);
    b.stream_add(&s, entry("first"), &AddOptions::default())
        .await
        .unwrap();
    assert_eq!(
        read(&cx, &s, "c", 10)
            .await
            .iter()
            .map(name_of)
            .collect::<Vec<_>>(),
        ["first"]
    );
}

/// Consumers of one group split the entries: each delivered once.
pub async fn group_read_shares_entries(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap();
    let ids = add_n(&cx, &s, 10).await;
    let first = read(&cx, &s, "c1", 4).await;
    let second = read(&cx, &s, "c2", 100).await;
    assert_eq!(first.len(), 4);
    assert_eq!(second.len(), 6);
    let all: BTreeSet<EntryId> = first.iter().chain(&second).map(|e| e.id).collect();
    assert_eq!(all, ids.into_iter().collect());
    assert!(read(&cx, &s, "c1", 10).await.is_empty());
}

/// A blocked group read wakes on a new entry.
pub async fn group_read_blocks(cx: Ctx) {
    let b = cx.backend.clone();
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap();
    let reader = {
        let (b, s) = (b.clone(), s.clone());
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let got = b
                .group_read("g", "c", &[s], 10, Some(Duration::from_secs(30)), false)
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
        "group reader not woken ({waited:?})"
    );
}

/// Group reads on a missing group or stream fail with `NoGroup`.
pub async fn group_read_no_group(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let r = b
        .group_read("g", "c", std::slice::from_ref(&s), 1, None, false)
        .await;
    assert!(matches!(r, Err(Error::NoGroup { .. })), "{r:?}");
    add_n(&cx, &s, 1).await;
    let r = b
        .group_read(
            "g",
            "c",
            std::slice::from_ref(&s),
            1,
            Some(Duration::from_millis(50)),
            false,
        )
        .await;
    assert!(matches!(r, Err(Error::NoGroup { .. })), "{r:?}");
}

/// Deleting the stream under a blocked group read ends it with `NoGroup`.
pub async fn group_read_unblocked_by_stream_delete(cx: Ctx) {
    let b = cx.backend.clone();
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap();
    let reader = {
        let (b, s) = (b.clone(), s.clone());
        tokio::spawn(async move {
            b.group_read("g", "c", &[s], 10, Some(Duration::from_secs(30)), false)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // let the reader block first
    b.delete(std::slice::from_ref(&s)).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("reader still blocked")
        .unwrap();
    assert!(matches!(r, Err(Error::NoGroup { .. })), "{r:?}");
}

/// With `no_ack`, delivered entries never become pending.
pub async fn group_read_no_ack(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap();
    add_n(&cx, &s, 3).await;
    let got = b
        .group_read("g", "c", std::slice::from_ref(&s), 10, None, true)
        .await
        .unwrap();
    assert_eq!(got[0].entries.len(), 3);
    assert_eq!(b.group_pending_summary(&s, "g").await.unwrap().count, 0);
}

/// Acks remove entries from the pending list; unknown IDs and missing groups count zero.
pub async fn group_ack(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap();
    let ids = add_n(&cx, &s, 3).await;
    read(&cx, &s, "c", 10).await;
    assert_eq!(b.group_pending_summary(&s, "g").await.unwrap().count, 3);
    assert_eq!(b.group_ack(&s, "g", &ids[..2]).await.unwrap(), 2);
    assert_eq!(
        b.group_ack(&s, "g", &ids[..2]).await.unwrap(),
        0,
        "acked twice"
    );
    assert_eq!(
        b.group_ack(&s, "g", &[EntryId::new(1, 1)]).await.unwrap(),
        0
    );
    assert_eq!(b.group_ack(&s, "other", &ids).await.unwrap(), 0);
    assert_eq!(b.group_ack(&cx.key("none"), "g", &ids).await.unwrap(), 0);
    let left = b
        .group_pending(&s, "g", None, EntryId::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(left.iter().map(|p| p.id).collect::<Vec<_>>(), [ids[2]]);
}

/// Unacked entries become claimable by another consumer once idle long enough.
pub async fn group_claim_idle(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap();
    let ids = add_n(&cx, &s, 2).await;
    read(&cx, &s, "dead", 10).await;
    let early = b
        .group_claim_idle(&s, "g", "alive", Duration::from_secs(30), EntryId::ZERO, 10)
        .await
        .unwrap();
    assert!(early.entries.is_empty(), "claimed before idle");
    let deadline = tokio::time::Instant::now() + crate::patience();
    let claimed = loop {
        let c = b
            .group_claim_idle(
                &s,
                "g",
                "alive",
                Duration::from_millis(50),
                EntryId::ZERO,
                10,
            )
            .await
            .unwrap();
        assert!(c.deleted.is_empty());
        if !c.entries.is_empty() {
            break c.entries;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "entries idle for 50 ms were never claimed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    let pending = b
        .group_pending(&s, "g", None, EntryId::ZERO, 10)
        .await
        .unwrap();
    assert!(
        pending
            .iter()
            .all(|p| p.consumer == "alive" && p.deliveries == 2),
        "{pending:?}"
    );
    let paged = b
        .group_claim_idle(&s, "g", "third", Duration::ZERO, EntryId::ZERO, 1)
        .await
        .unwrap();
    assert_eq!(paged.entries.len(), 1);
    assert_eq!(
        paged.next, ids[1],
        "cursor continues at the next pending entry"
    );
}

/// Claiming reports pending entries whose stream entry was deleted, and drops them.
pub async fn group_claim_reports_deleted(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap();
    let ids = add_n(&cx, &s, 2).await;
    read(&cx, &s, "c", 10).await;
    b.stream_remove(&s, &[ids[0]]).await.unwrap();
    let c = b
        .group_claim_idle(&s, "g", "d", Duration::ZERO, EntryId::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(c.deleted, [ids[0]]);
    assert_eq!(c.entries.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[1]]);
    assert_eq!(c.next, EntryId::ZERO);
    assert_eq!(b.group_pending_summary(&s, "g").await.unwrap().count, 1);
}

/// Claiming specific IDs transfers only those that are pending and idle enough.
pub async fn group_claim_specific(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap();
    let ids = add_n(&cx, &s, 3).await;
    read(&cx, &s, "c1", 2).await;
    assert!(b
        .group_claim(&s, "g", "c2", Duration::from_secs(30), &ids[..1])
        .await
        .unwrap()
        .is_empty());
    let got = b
        .group_claim(&s, "g", "c2", Duration::ZERO, &[ids[0], ids[2]])
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[0]],
        "ids[2] was never delivered"
    );
    let mine = b
        .group_pending(&s, "g", Some("c2"), EntryId::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(mine.iter().map(|p| p.id).collect::<Vec<_>>(), [ids[0]]);
}

/// The pending summary and list report counts, bounds and owners.
pub async fn group_pending(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap();
    assert_eq!(b.group_pending_summary(&s, "g").await.unwrap().count, 0);
    let ids = add_n(&cx, &s, 5).await;
    read(&cx, &s, "a", 2).await;
    read(&cx, &s, "b", 3).await;
    let sum = b.group_pending_summary(&s, "g").await.unwrap();
    assert_eq!(sum.count, 5);
    assert_eq!((sum.min, sum.max), (Some(ids[0]), Some(ids[4])));
    assert_eq!(sum.consumers, [("a".to_owned(), 2), ("b".to_owned(), 3)]);
    let b_only = b
        .group_pending(&s, "g", Some("b"), EntryId::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(b_only.iter().map(|p| p.id).collect::<Vec<_>>(), ids[2..]);
    let from = b.group_pending(&s, "g", None, ids[3], 10).await.unwrap();
    assert_eq!(from.len(), 2);
    assert!(from.iter().all(|p| p.deliveries == 1));
    assert_eq!(
        b.group_pending(&s, "g", None, EntryId::ZERO, 1)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Consumers can be created, listed with their pending counts, and deleted.
pub async fn group_consumers_lifecycle(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::Newest, true)
        .await
        .unwrap();
    assert!(b.group_create_consumer(&s, "g", "idle").await.unwrap());
    assert!(!b.group_create_consumer(&s, "g", "idle").await.unwrap());
    add_n(&cx, &s, 2).await;
    read(&cx, &s, "busy", 10).await;
    let cs = b.group_consumers(&s, "g").await.unwrap();
    let view: Vec<(String, u64)> = cs.iter().map(|c| (c.name.clone(), c.pending)).collect();
    assert_eq!(view, [("busy".to_owned(), 2), ("idle".to_owned(), 0)]);
    assert_eq!(b.group_delete_consumer(&s, "g", "busy").await.unwrap(), 2);
    assert_eq!(b.group_delete_consumer(&s, "g", "ghost").await.unwrap(), 0);
    assert_eq!(
        b.group_pending_summary(&s, "g").await.unwrap().count,
        0,
        "its pending entries go too"
    );
    let names: Vec<String> = b
        .group_consumers(&s, "g")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["idle"]);
}

/// `group_list` gives every group of a stream with its consumers, pending count, cursor and
/// lag; a missing stream has none; another type is `WrongType`.
pub async fn group_list_reports_each_group(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    assert!(b.group_list(&s).await.unwrap().is_empty());
    let ids = add_n(&cx, &s, 5).await;
    b.group_create(&s, "g", GroupStart::After(EntryId::ZERO), false)
        .await
        .unwrap();
    b.group_create(&s, "b", GroupStart::Newest, false)
        .await
        .unwrap();
    read(&cx, &s, "c1", 2).await;
    let groups = b.group_list(&s).await.unwrap();
    let view: Vec<_> = groups
        .iter()
        .map(|g| {
            (
                g.name.as_str(),
                g.consumers,
                g.pending,
                g.last_delivered,
                g.lag,
            )
        })
        .collect();
    assert_eq!(
        view,
        [("b", 0, 0, ids[4], Some(0)), ("g", 1, 2, ids[1], Some(3)),]
    );
    let hash = cx.key("h");
    assert!(b
        .lease_acquire(&hash, "x", std::time::Duration::from_secs(60))
        .await
        .unwrap());
    assert!(matches!(
        b.group_list(&hash).await,
        Err(pulse::Error::WrongType { .. })
    ));
}

/// Destroying a group removes its cursor and pending list.
pub async fn group_destroy(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    b.group_create(&s, "g", GroupStart::After(EntryId::ZERO), true)
        .await
        .unwrap();
    add_n(&cx, &s, 2).await;
    read(&cx, &s, "c", 10).await;
    assert!(b.group_destroy(&s, "g").await.unwrap());
    assert!(!b.group_destroy(&s, "g").await.unwrap());
    assert!(matches!(
        b.group_pending_summary(&s, "g").await,
        Err(Error::NoGroup { .. })
    ));
    b.group_create(&s, "g", GroupStart::After(EntryId::ZERO), false)
        .await
        .unwrap();
    assert_eq!(
        read(&cx, &s, "c", 10).await.len(),
        2,
        "a re-created group starts afresh"
    );
}

/// Group inspection on a missing stream or group is `NoGroup`, destroy is `false`.
pub async fn group_ops_on_missing_stream(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("none");
    let is_no_group = |r: Result<(), Error>| matches!(r, Err(Error::NoGroup { .. }));
    assert!(is_no_group(
        b.group_pending_summary(&s, "g").await.map(|_| ())
    ));
    assert!(is_no_group(
        b.group_pending(&s, "g", None, EntryId::ZERO, 10)
            .await
            .map(|_| ())
    ));
    assert!(is_no_group(b.group_consumers(&s, "g").await.map(|_| ())));
    assert!(is_no_group(
        b.group_create_consumer(&s, "g", "c").await.map(|_| ())
    ));
    assert!(is_no_group(
        b.group_delete_consumer(&s, "g", "c").await.map(|_| ())
    ));
    assert!(is_no_group(
        b.group_claim_idle(&s, "g", "c", Duration::ZERO, EntryId::ZERO, 10)
            .await
            .map(|_| ())
    ));
    assert!(is_no_group(
        b.group_claim(&s, "g", "c", Duration::ZERO, &[EntryId::new(1, 0)])
            .await
            .map(|_| ())
    ));
    assert!(!b.group_destroy(&s, "g").await.unwrap());
    let exists = cx.key("exists");
    add_n(&cx, &exists, 1).await;
    assert!(is_no_group(
        b.group_consumers(&exists, "g").await.map(|_| ())
    ));
    assert!(is_no_group(
        b.group_create_consumer(&exists, "g", "c").await.map(|_| ())
    ));
    assert!(!b.group_destroy(&exists, "g").await.unwrap());
}

/// `group_set_idle` hands pending entries over with a chosen idle time and their counts
/// kept; `group_dead_letter` moves a pending entry to another stream and acknowledges it
/// in one step, once: a second move, or a move of what is not pending, writes nothing.
pub async fn group_set_idle_and_dead_letter(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let dead = format!("{s}:dead");
    b.group_create(&s, "g", GroupStart::After(EntryId::ZERO), true)
        .await
        .unwrap();
    let ids = add_n(&cx, &s, 3).await;
    assert_eq!(read(&cx, &s, "c1", 10).await.len(), 3);
    let idle = Duration::from_secs(30);
    let set = b
        .group_set_idle(&s, "g", "c2", &[ids[0], EntryId::new(1, 1)], idle)
        .await
        .unwrap();
    assert_eq!(set, vec![ids[0]], "only pending entries are changed");
    let pending = b.group_pending(&s, "g", None, ids[0], 1).await.unwrap();
    assert_eq!(
        (pending[0].consumer.as_str(), pending[0].deliveries),
        ("c2", 1)
    );
    assert!(pending[0].idle >= idle, "{:?}", pending[0]);
    let moved = b
        .group_dead_letter(&s, "g", ids[0], &dead, entry("dead"))
        .await
        .unwrap()
        .expect("moved");
    let letters = b
        .stream_range(&dead, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].id, name_of(&letters[0])),
        (moved, "dead".to_owned())
    );
    let pending: Vec<EntryId> = b
        .group_pending(&s, "g", None, EntryId::ZERO, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        pending,
        vec![ids[1], ids[2]],
        "the dead letter is acknowledged"
    );
    assert_eq!(
        b.stream_info(&s).await.unwrap().unwrap().length,
        3,
        "kept for other groups"
    );
    b.group_ack(&s, "g", &[ids[1]]).await.unwrap();
    for id in [ids[0], ids[1]] {
        let again = b
            .group_dead_letter(&s, "g", id, &dead, entry("dead"))
            .await
            .unwrap();
        assert_eq!(again, None, "{id} is not pending: nothing written");
    }
    assert_eq!(b.stream_info(&dead).await.unwrap().unwrap().length, 1);
    let e = b
        .group_dead_letter(&s, "nope", ids[2], &dead, entry("dead"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoGroup { .. }), "{e:?}");
    let e = b
        .group_set_idle(&s, "nope", "c", &[ids[2]], idle)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoGroup { .. }), "{e:?}");
}

/// `stream_move` moves an entry to another stream as a new entry, once; a target of the
/// wrong type is refused and changes nothing.
pub async fn stream_move_is_atomic_and_once(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    let to = format!("{s}:to");
    let ids = add_n(&cx, &s, 2).await;
    let moved = b
        .stream_move(&s, ids[0], &to, entry("moved"))
        .await
        .unwrap()
        .expect("moved");
    let there = b
        .stream_range(&to, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert_eq!(
        (there.len(), there[0].id, name_of(&there[0])),
        (1, moved, "moved".to_owned())
    );
    let left: Vec<EntryId> = b
        .stream_range(&s, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, vec![ids[1]]);
    assert_eq!(
        b.stream_move(&s, ids[0], &to, entry("x")).await.unwrap(),
        None
    );
    let missing = format!("{s}:missing");
    assert_eq!(
        b.stream_move(&missing, ids[1], &to, entry("x"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.stream_info(&to).await.unwrap().unwrap().length,
        1,
        "nothing more written"
    );
    // A target holding something else: refused, the entry stays.
    let map = format!("{s}:map");
    b.map_set(
        &pulse::backend::MapTarget::new(map.clone(), format!("{map}:n")),
        "k",
        bytes::Bytes::from("v"),
        pulse::backend::SetCondition::Always,
    )
    .await
    .unwrap();
    let e = b
        .stream_move(&s, ids[1], &map, entry("x"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::WrongType { .. }), "{e:?}");
    assert_eq!(b.stream_info(&s).await.unwrap().unwrap().length, 1);
}
