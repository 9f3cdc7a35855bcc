//! Atomic map operations: conditions, results, revisions, notices, deletes, key rules,
//! TTL, concurrency (increments, lists and resets are in `map_edits`).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use pulse::{
    backend::{
        AddOptions, DeleteCondition, KeyExpiry, ListEdit, MapTarget, MapWrite, PubSubEvent,
        SetCondition, Subscription, Ttl,
    },
    codec::{self, MapChange, MapNotice},
    Error,
};

use super::entry;
use crate::{expect_event, Ctx};

pub(super) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub(super) fn list(items: &[&str]) -> Option<Vec<Bytes>> {
    Some(items.iter().map(|s| b(s)).collect())
}

pub(super) async fn notice(sub: &mut Subscription) -> MapNotice {
    match expect_event(sub).await {
        PubSubEvent::Message { payload, .. } => MapNotice::decode(&payload).expect("notice frame"),
        other => panic!("expected a notice, got {other:?}"),
    }
}

pub(super) async fn subscribe(cx: &Ctx, map: &MapTarget) -> Subscription {
    cx.backend
        .subscribe(std::slice::from_ref(&map.channel))
        .await
        .unwrap()
}

/// `Always` writes and returns the previous value.
pub async fn map_set_returns_previous(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    let first = be
        .map_set(&m, "foo", b("bar"), SetCondition::Always)
        .await
        .unwrap();
    assert_eq!((first.previous, first.written), (None, true));
    let second = be
        .map_set(&m, "foo", b("baz"), SetCondition::Always)
        .await
        .unwrap();
    assert_eq!((second.previous, second.written), (Some(b("bar")), true));
    assert_eq!(be.hash_get(&m.hash, "foo").await.unwrap(), Some(b("baz")));
}

/// `IfAbsent` writes only a missing key.
pub async fn map_set_if_absent(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    let won = be
        .map_set(&m, "k", b("1"), SetCondition::IfAbsent)
        .await
        .unwrap();
    assert!(won.written && won.previous.is_none());
    let lost = be
        .map_set(&m, "k", b("2"), SetCondition::IfAbsent)
        .await
        .unwrap();
    assert_eq!((lost.written, lost.previous), (false, Some(b("1"))));
    assert_eq!(be.hash_get(&m.hash, "k").await.unwrap(), Some(b("1")));
}

/// `IfEqual` writes only on an exact match; an absent key never matches, even `""`.
pub async fn map_set_if_equal(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    let absent = be
        .map_set(&m, "k", b("v"), SetCondition::IfEqual(b("")))
        .await
        .unwrap();
    assert_eq!((absent.written, absent.previous), (false, None));
    assert!(!be.hash_exists(&m.hash, "k").await.unwrap());
    be.map_set(&m, "k", b("baz"), SetCondition::Always)
        .await
        .unwrap();
    let miss = be
        .map_set(&m, "k", b("v"), SetCondition::IfEqual(b("")))
        .await
        .unwrap();
    assert_eq!((miss.written, miss.previous), (false, Some(b("baz"))));
    let hit = be
        .map_set(&m, "k", b("new"), SetCondition::IfEqual(b("baz")))
        .await
        .unwrap();
    assert_eq!((hit.written, hit.previous), (true, Some(b("baz"))));
    assert_eq!(be.hash_get(&m.hash, "k").await.unwrap(), Some(b("new")));
}

/// An empty value is present, distinct from absent, in results and reads.
pub async fn map_empty_value_is_not_absent(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    be.map_set(&m, "k", Bytes::new(), SetCondition::Always)
        .await
        .unwrap();
    let again = be
        .map_set(&m, "k", b("x"), SetCondition::IfAbsent)
        .await
        .unwrap();
    assert_eq!((again.written, again.previous), (false, Some(Bytes::new())));
    let del = be
        .map_delete(&m, "k", DeleteCondition::IfEqual(Bytes::new()))
        .await
        .unwrap();
    assert_eq!((del.deleted, del.previous), (true, Some(Bytes::new())));
}

/// Each change bumps the revision by one within a stable epoch; failed conditions do not.
pub async fn map_revision_and_epoch(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    let r1 = be
        .map_set(&m, "a", b("1"), SetCondition::Always)
        .await
        .unwrap()
        .revision;
    assert_eq!(r1.rev, 1);
    assert_eq!(
        r1.epoch, m.epoch_seed,
        "the creating write's seed becomes the epoch"
    );
    let other_seed = MapTarget {
        epoch_seed: m.epoch_seed ^ 1,
        ..m.clone()
    };
    let r2 = be
        .map_set(&other_seed, "b", b("2"), SetCondition::Always)
        .await
        .unwrap()
        .revision;
    assert_eq!(
        (r2.epoch, r2.rev),
        (r1.epoch, 2),
        "an existing epoch is kept"
    );
    let noop = be
        .map_set(&m, "a", b("x"), SetCondition::IfAbsent)
        .await
        .unwrap()
        .revision;
    assert_eq!(noop, r2);
    let r3 = be
        .map_delete(&m, "a", DeleteCondition::Always)
        .await
        .unwrap()
        .revision;
    assert_eq!(r3.rev, 3);
    let r4 = be.map_increment(&m, "n", 5).await.unwrap().revision;
    let r5 = be
        .map_edit_list(&m, "l", ListEdit::Append, vec![b("x")])
        .await
        .unwrap()
        .revision;
    let r6 = be.map_reset(&m, vec![], false).await.unwrap().revision;
    assert_eq!((r4.rev, r5.rev, r6.rev), (4, 5, 6));
    assert_eq!(be.hash_get(&m.hash, "=rev").await.unwrap(), Some(b("6")));
    let missing = be
        .map_delete(&cx.map("none"), "k", DeleteCondition::Always)
        .await
        .unwrap();
    assert_eq!(missing.revision.epoch, 0, "epoch 0: the map does not exist");
}

/// A batch applies each write as `map_set` would, in order (later writes see earlier ones),
/// and its notices carry consecutive revisions for the writes that happened only. A batch
/// with an invalid key writes nothing.
pub async fn map_set_many_in_order(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    let mut sub = subscribe(&cx, &m).await;
    let w = |key: &str, value: &str, condition: SetCondition| MapWrite {
        key: key.into(),
        value: b(value),
        condition,
    };
    let bad = be
        .map_set_many(
            &m,
            vec![
                w("ok", "1", SetCondition::Always),
                w("", "1", SetCondition::Always),
            ],
        )
        .await;
    assert!(matches!(bad, Err(Error::InvalidKey { .. })), "{bad:?}");
    assert_eq!(be.hash_get(&m.hash, "ok").await.unwrap(), None);
    let out = be
        .map_set_many(
            &m,
            vec![
                w("a", "1", SetCondition::Always),
                w("a", "2", SetCondition::IfEqual(b("1"))),
                w("b", "x", SetCondition::IfAbsent),
                w("b", "y", SetCondition::IfAbsent),
                w("a", "3", SetCondition::IfEqual(b("nope"))),
            ],
        )
        .await
        .unwrap();
    let seen: Vec<_> = out
        .iter()
        .map(|o| (o.written, o.previous.clone(), o.revision.rev))
        .collect();
    assert_eq!(
        seen,
        [
            (true, None, 1),
            (true, Some(b("1")), 2),
            (true, None, 3),
            (false, Some(b("x")), 3),
            (false, Some(b("2")), 3),
        ]
    );
    assert!(out.iter().all(|o| o.revision.epoch == m.epoch_seed));
    assert_eq!(be.hash_get(&m.hash, "a").await.unwrap(), Some(b("2")));
    assert_eq!(be.hash_get(&m.hash, "b").await.unwrap(), Some(b("x")));
    // However the backend frames them (one frame per write or a batch), the notices are the
    // three writes that happened, in order.
    let mut notices = Vec::new();
    while notices.len() < 3 {
        match expect_event(&mut sub).await {
            PubSubEvent::Message { payload, .. } => {
                notices.extend(MapNotice::decode_all(&payload).expect("notice frame"))
            }
            other => panic!("expected a notice, got {other:?}"),
        }
    }
    let changes: Vec<_> = notices.into_iter().map(|n| (n.rev, n.change)).collect();
    assert_eq!(
        changes,
        [
            (
                1,
                MapChange::Set {
                    key: "a".into(),
                    value: b("1")
                }
            ),
            (
                2,
                MapChange::Set {
                    key: "a".into(),
                    value: b("2")
                }
            ),
            (
                3,
                MapChange::Set {
                    key: "b".into(),
                    value: b("x")
                }
            ),
        ]
    );
    assert_eq!(be.map_set_many(&m, vec![]).await.unwrap(), vec![]);
}

/// Notices arrive in commit order, carry consecutive revisions and say what changed.
pub async fn map_notices_in_commit_order(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    let mut sub = subscribe(&cx, &m).await;
    be.map_set(&m, "k", b("v"), SetCondition::Always)
        .await
        .unwrap();
    be.map_increment(&m, "n", 2).await.unwrap();
    be.map_edit_list(&m, "l", ListEdit::Append, vec![b("a"), b("b")])
        .await
        .unwrap();
    be.map_edit_list(&m, "l", ListEdit::Remove, vec![b("a"), b("b")])
        .await
        .unwrap();
    be.map_delete(&m, "k", DeleteCondition::Always)
        .await
        .unwrap();
    be.map_reset(&m, vec![], false).await.unwrap();
    be.map_reset(&m, vec![], true).await.unwrap();
    let expected = [
        MapChange::Set {
            key: "k".into(),
            value: b("v"),
        },
        MapChange::Set {
            key: "n".into(),
            value: b("2"),
        },
        MapChange::Set {
            key: "l".into(),
            value: Bytes::from(codec::encode_list(&[b("a"), b("b")])),
        },
        MapChange::Delete { key: "l".into() },
        MapChange::Delete { key: "k".into() },
        MapChange::Reset,
        MapChange::Destroy,
    ];
    for (i, change) in expected.into_iter().enumerate() {
        let n = notice(&mut sub).await;
        assert_eq!(
            (n.rev, n.epoch, n.change),
            (i as u64 + 1, m.epoch_seed, change)
        );
    }
}

/// Operations that change nothing publish nothing.
pub async fn map_no_notice_without_change(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    be.map_set(&m, "k", b("v"), SetCondition::Always)
        .await
        .unwrap();
    let before = be
        .map_edit_list(&m, "l", ListEdit::Append, vec![b("a")])
        .await
        .unwrap()
        .revision;
    let mut sub = subscribe(&cx, &m).await;
    be.map_set(&m, "k", b("x"), SetCondition::IfAbsent)
        .await
        .unwrap();
    be.map_set(&m, "k", b("x"), SetCondition::IfEqual(b("nope")))
        .await
        .unwrap();
    be.map_delete(&m, "missing", DeleteCondition::Always)
        .await
        .unwrap();
    be.map_delete(&m, "k", DeleteCondition::IfEqual(b("nope")))
        .await
        .unwrap();
    be.map_edit_list(&m, "l", ListEdit::AppendUnique, vec![b("a")])
        .await
        .unwrap();
    be.map_edit_list(&m, "l", ListEdit::Append, vec![])
        .await
        .unwrap();
    be.map_edit_list(&m, "l", ListEdit::Remove, vec![b("zz")])
        .await
        .unwrap();
    be.map_reset(&m, vec![("k".into(), b("nope"))], false)
        .await
        .unwrap();
    be.map_set(&m, "marker", b("1"), SetCondition::Always)
        .await
        .unwrap();
    // A subscription may also receive a notice published just before it was made (on a
    // cluster it travels from the map's node over the cluster bus): skip those.
    let mut n = notice(&mut sub).await;
    while n.rev <= before.rev {
        n = notice(&mut sub).await;
    }
    assert_eq!(
        n.change,
        MapChange::Set {
            key: "marker".into(),
            value: b("1")
        },
        "a no-op published"
    );
    assert_eq!(n.rev, 3);
}

/// Deletes report the previous value; `IfEqual` deletes only on a match.
pub async fn map_delete_conditional(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    let none = be
        .map_delete(&m, "k", DeleteCondition::Always)
        .await
        .unwrap();
    assert_eq!((none.deleted, none.previous), (false, None));
    be.map_set(&m, "k", b("v"), SetCondition::Always)
        .await
        .unwrap();
    let miss = be
        .map_delete(&m, "k", DeleteCondition::IfEqual(b("w")))
        .await
        .unwrap();
    assert_eq!((miss.deleted, miss.previous), (false, Some(b("v"))));
    let hit = be
        .map_delete(&m, "k", DeleteCondition::IfEqual(b("v")))
        .await
        .unwrap();
    assert_eq!((hit.deleted, hit.previous), (true, Some(b("v"))));
    assert!(!be.hash_exists(&m.hash, "k").await.unwrap());
    be.map_set(&m, "k", b("v"), SetCondition::Always)
        .await
        .unwrap();
    let always = be
        .map_delete(&m, "k", DeleteCondition::Always)
        .await
        .unwrap();
    assert_eq!((always.deleted, always.previous), (true, Some(b("v"))));
}

/// Empty keys and keys with `=` are rejected by every operation before any write.
pub async fn map_invalid_keys(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    for key in ["", "=rev", "foo=2"] {
        let bad = |r: Result<(), Error>| matches!(r, Err(Error::InvalidKey { .. }));
        assert!(
            bad(be
                .map_set(&m, key, b("v"), SetCondition::Always)
                .await
                .map(|_| ())),
            "{key:?}"
        );
        assert!(bad(be
            .map_delete(&m, key, DeleteCondition::Always)
            .await
            .map(|_| ())));
        assert!(bad(be.map_increment(&m, key, 1).await.map(|_| ())));
        assert!(bad(be
            .map_edit_list(&m, key, ListEdit::Append, vec![b("x")])
            .await
            .map(|_| ())));
        assert!(bad(be
            .map_reset(&m, vec![(key.into(), b("x"))], false)
            .await
            .map(|_| ())));
    }
    assert!(!be.exists(&m.hash).await.unwrap(), "nothing was written");
}

async fn ttl(cx: &Ctx, key: &str) -> Duration {
    match cx.backend.expiry(key).await.unwrap() {
        KeyExpiry::In(d) => d,
        other => panic!("expected a TTL, got {other:?}"),
    }
}

/// An absolute map TTL is set by the first write and not extended by later ones.
pub async fn map_ttl_absolute_in_operation(cx: Ctx) {
    let m = cx
        .map("m")
        .with_ttl(Some(Ttl::Absolute(Duration::from_secs(10))));
    let be = &cx.backend;
    be.map_set(&m, "a", b("1"), SetCondition::Always)
        .await
        .unwrap();
    let first = ttl(&cx, &m.hash).await;
    assert!(first > Duration::from_secs(9), "{first:?}");
    tokio::time::sleep(Duration::from_millis(50)).await; // let the clock advance
    be.map_set(&m, "b", b("2"), SetCondition::Always)
        .await
        .unwrap();
    be.map_increment(&m, "n", 1).await.unwrap();
    assert!(ttl(&cx, &m.hash).await < first, "absolute TTL extended");
    be.map_reset(&m, vec![], false).await.unwrap();
    assert!(
        ttl(&cx, &m.hash).await > Duration::from_secs(9),
        "reset starts a new window"
    );
}

/// A sliding map TTL is reset by every write, conditional ones included.
pub async fn map_ttl_sliding_in_operation(cx: Ctx) {
    let m = cx
        .map("m")
        .with_ttl(Some(Ttl::Sliding(Duration::from_secs(10))));
    let be = &cx.backend;
    be.map_set(&m, "a", b("1"), SetCondition::Always)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await; // let the clock advance
    let before = ttl(&cx, &m.hash).await;
    be.map_set(&m, "a", b("x"), SetCondition::IfAbsent)
        .await
        .unwrap();
    let after = ttl(&cx, &m.hash).await;
    assert!(after > before, "{before:?} -> {after:?}");
}

/// A hash that vanished is re-created with a new epoch and revision 1.
pub async fn map_new_epoch_after_hash_vanishes(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    be.map_set(&m, "a", b("1"), SetCondition::Always)
        .await
        .unwrap();
    be.map_set(&m, "a", b("2"), SetCondition::Always)
        .await
        .unwrap();
    be.delete(std::slice::from_ref(&m.hash)).await.unwrap();
    let fresh = MapTarget::new(m.hash.clone(), m.channel.clone());
    let r = be
        .map_set(&fresh, "a", b("3"), SetCondition::Always)
        .await
        .unwrap()
        .revision;
    assert_eq!((r.rev, r.epoch), (1, fresh.epoch_seed));
    assert_ne!(r.epoch, m.epoch_seed);
}

/// 50 concurrent test-and-sets from the same value: exactly one wins.
pub async fn map_concurrent_test_and_set_one_winner(cx: Ctx) {
    let m = Arc::new(cx.map("m"));
    cx.backend
        .map_set(&m, "k", b("start"), SetCondition::Always)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (be, m) = (cx.backend.clone(), m.clone());
            tokio::spawn(async move {
                be.map_set(
                    &m,
                    "k",
                    b(&format!("w{i}")),
                    SetCondition::IfEqual(b("start")),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await.unwrap().written {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = cx.backend.hash_get(&m.hash, "k").await.unwrap();
    assert_eq!(stored, Some(b(&format!("w{}", winners[0]))));
}

/// 100 concurrent increments lose nothing and get distinct revisions.
pub async fn map_concurrent_increments(cx: Ctx) {
    let m = Arc::new(cx.map("m"));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (be, m) = (cx.backend.clone(), m.clone());
            tokio::spawn(async move { be.map_increment(&m, "n", 1).await.unwrap() })
        })
        .collect();
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap().revision.rev);
    }
    revs.sort();
    assert_eq!(revs, (1..=100).collect::<Vec<_>>());
    assert_eq!(
        cx.backend.hash_get(&m.hash, "n").await.unwrap(),
        Some(b("100"))
    );
}

/// Map operations on a key of another type fail with `WrongType`.
pub async fn map_wrong_type(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    be.stream_add(&m.hash, entry("x"), &AddOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        be.map_set(&m, "k", b("v"), SetCondition::Always).await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        be.map_delete(&m, "k", DeleteCondition::Always).await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        be.map_reset(&m, vec![], false).await,
        Err(Error::WrongType { .. })
    ));
    assert!(
        be.stream_info(&m.hash).await.unwrap().is_some(),
        "the stream is untouched"
    );
}
