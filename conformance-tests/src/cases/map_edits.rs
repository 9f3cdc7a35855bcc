//! Atomic map edits beyond a plain set: increments, list edits, resets and test-and-reset.

use bytes::Bytes;
use pulse::{
    backend::{ListEdit, MapTarget, SetCondition},
    codec::{self, MapChange},
    Error,
};

use super::maps::{b, list, notice, subscribe};
use crate::Ctx;

/// Increments add to a decimal value (absent = 0) and store decimal text.
pub async fn map_increment(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    for (delta, want) in [(1, 1), (41, 42), (-1, 41), (-41, 0), (-5, -5)] {
        assert_eq!(be.map_increment(&m, "n", delta).await.unwrap().value, want);
    }
    assert_eq!(be.hash_get(&m.hash, "n").await.unwrap(), Some(b("-5")));
}

/// Increments of a non-integer or past `i64` fail with `InvalidValue`, value unchanged.
pub async fn map_increment_invalid(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    be.map_set(&m, "s", b("abc"), SetCondition::Always)
        .await
        .unwrap();
    be.map_set(&m, "big", b(&i64::MAX.to_string()), SetCondition::Always)
        .await
        .unwrap();
    let rev = be.hash_get(&m.hash, "=rev").await.unwrap();
    assert!(matches!(
        be.map_increment(&m, "s", 1).await,
        Err(Error::InvalidValue { .. })
    ));
    assert!(matches!(
        be.map_increment(&m, "big", 1).await,
        Err(Error::InvalidValue { .. })
    ));
    assert_eq!(be.hash_get(&m.hash, "s").await.unwrap(), Some(b("abc")));
    assert_eq!(
        be.hash_get(&m.hash, "big").await.unwrap(),
        Some(b(&i64::MAX.to_string()))
    );
    assert_eq!(
        be.hash_get(&m.hash, "=rev").await.unwrap(),
        rev,
        "failed increments bump nothing"
    );
}

/// Append keeps duplicates; append-unique adds only new items, once each.
pub async fn map_list_append_and_unique(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    let a = be
        .map_edit_list(&m, "l", ListEdit::Append, vec![b("bar")])
        .await
        .unwrap();
    assert_eq!((a.list, a.changed), (list(&["bar"]), true));
    let a = be
        .map_edit_list(&m, "l", ListEdit::Append, vec![b("baz"), b("bar")])
        .await
        .unwrap();
    assert_eq!(a.list, list(&["bar", "baz", "bar"]));
    let u = be
        .map_edit_list(
            &m,
            "u",
            ListEdit::AppendUnique,
            vec![b("a"), b("b"), b("c")],
        )
        .await
        .unwrap();
    assert_eq!(u.list, list(&["a", "b", "c"]));
    let u = be
        .map_edit_list(
            &m,
            "u",
            ListEdit::AppendUnique,
            vec![b("d"), b("e"), b("a"), b("d")],
        )
        .await
        .unwrap();
    assert_eq!(
        (u.list, u.changed),
        (list(&["a", "b", "c", "d", "e"]), true)
    );
    let u = be
        .map_edit_list(&m, "u", ListEdit::AppendUnique, vec![b("a")])
        .await
        .unwrap();
    assert_eq!(
        (u.list, u.changed),
        (list(&["a", "b", "c", "d", "e"]), false)
    );
    let empty = be
        .map_edit_list(&m, "none", ListEdit::Append, vec![])
        .await
        .unwrap();
    assert_eq!((empty.list, empty.changed), (None, false));
    let odd = vec![Bytes::new(), Bytes::from_static(b"\x00\xff,\"[]")];
    let o = be
        .map_edit_list(&m, "odd", ListEdit::Append, odd.clone())
        .await
        .unwrap();
    assert_eq!(o.list, Some(odd.clone()));
    let stored = be.hash_get(&m.hash, "odd").await.unwrap().unwrap();
    assert_eq!(
        codec::decode_list(&stored).unwrap(),
        odd,
        "stored in the documented list format"
    );
}

/// Remove drops every occurrence, deletes an emptied key, and reports whether it removed.
pub async fn map_list_remove(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    let absent = be
        .map_edit_list(&m, "l", ListEdit::Remove, vec![b("x")])
        .await
        .unwrap();
    assert_eq!((absent.list, absent.changed), (None, false));
    be.map_edit_list(
        &m,
        "l",
        ListEdit::Append,
        vec![b("bar"), b("baz"), b("bar")],
    )
    .await
    .unwrap();
    let r = be
        .map_edit_list(&m, "l", ListEdit::Remove, vec![b("bar")])
        .await
        .unwrap();
    assert_eq!((r.list, r.changed), (list(&["baz"]), true));
    let r = be
        .map_edit_list(&m, "l", ListEdit::Remove, vec![b("nope")])
        .await
        .unwrap();
    assert_eq!((r.list, r.changed), (list(&["baz"]), false));
    let r = be
        .map_edit_list(&m, "l", ListEdit::Remove, vec![b("baz")])
        .await
        .unwrap();
    assert_eq!((r.list, r.changed), (None, true));
    assert!(!be.hash_exists(&m.hash, "l").await.unwrap());
}

/// List edits of a value that is not a list fail with `InvalidValue`, value unchanged.
pub async fn map_list_invalid_value(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    be.map_set(&m, "l", b("not a list"), SetCondition::Always)
        .await
        .unwrap();
    for edit in [ListEdit::Append, ListEdit::AppendUnique, ListEdit::Remove] {
        let r = be.map_edit_list(&m, "l", edit, vec![b("x")]).await;
        assert!(
            matches!(r, Err(Error::InvalidValue { .. })),
            "{edit:?}: {r:?}"
        );
    }
    assert_eq!(
        be.hash_get(&m.hash, "l").await.unwrap(),
        Some(b("not a list"))
    );
}

/// Reset leaves a tombstone with the bookkeeping fields and revisions continue; destroy
/// deletes the hash and a later write starts a new generation.
pub async fn map_reset_leaves_tombstone(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    let mut sub = subscribe(&cx, &m).await;
    be.map_set(&m, "a", b("1"), SetCondition::Always)
        .await
        .unwrap();
    be.map_set(&m, "b", b("2"), SetCondition::Always)
        .await
        .unwrap();
    let r = be.map_reset(&m, vec![], false).await.unwrap();
    assert_eq!(
        (r.reset, r.revision.rev, r.revision.epoch),
        (true, 3, m.epoch_seed)
    );
    let mut fields = be.hash_get_all(&m.hash).await.unwrap();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("=epoch".into(), b(&m.epoch_seed.to_string())),
            ("=kind".into(), b("reset")),
            ("=rev".into(), b("3"))
        ]
    );
    let again = be
        .map_set(&m, "c", b("3"), SetCondition::Always)
        .await
        .unwrap();
    assert_eq!(
        (again.revision.rev, again.revision.epoch),
        (4, m.epoch_seed),
        "revisions continue"
    );
    let d = be.map_reset(&m, vec![], true).await.unwrap();
    assert_eq!((d.reset, d.revision.rev), (true, 5));
    assert!(
        !be.exists(&m.hash).await.unwrap(),
        "destroy leaves nothing behind"
    );
    for _ in 0..4 {
        notice(&mut sub).await;
    }
    let destroyed = notice(&mut sub).await;
    assert_eq!((destroyed.change, destroyed.rev), (MapChange::Destroy, 5));
    let next = MapTarget {
        epoch_seed: m.epoch_seed ^ 7,
        ..m.clone()
    };
    let fresh = be
        .map_set(&next, "d", b("4"), SetCondition::Always)
        .await
        .unwrap()
        .revision;
    assert_eq!(
        (fresh.rev, fresh.epoch),
        (1, next.epoch_seed),
        "a new generation"
    );
    assert!(
        be.map_reset(&cx.map("never"), vec![], true)
            .await
            .unwrap()
            .reset
    );
    assert!(!be.exists(&cx.map("never").hash).await.unwrap());
}

/// Test-and-reset clears only when every test holds; no tests means unconditional.
pub async fn map_test_and_reset(cx: Ctx) {
    let m = cx.map("m");
    let be = &cx.backend;
    be.map_set(&m, "a", b("1"), SetCondition::Always)
        .await
        .unwrap();
    be.map_set(&m, "b", b("2"), SetCondition::Always)
        .await
        .unwrap();
    let miss = be
        .map_reset(&m, vec![("a".into(), b("1")), ("b".into(), b("x"))], false)
        .await
        .unwrap();
    assert!(!miss.reset);
    let absent = be
        .map_reset(&m, vec![("zz".into(), b(""))], false)
        .await
        .unwrap();
    assert!(!absent.reset, "an absent key never matches");
    assert_eq!(be.hash_get(&m.hash, "a").await.unwrap(), Some(b("1")));
    let hit = be
        .map_reset(&m, vec![("a".into(), b("1")), ("b".into(), b("2"))], false)
        .await
        .unwrap();
    assert!(hit.reset);
    assert!(!be.hash_exists(&m.hash, "a").await.unwrap());
    be.map_set(&m, "c", b("3"), SetCondition::Always)
        .await
        .unwrap();
    assert!(be.map_reset(&m, vec![], false).await.unwrap().reset);
}
