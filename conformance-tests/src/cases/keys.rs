//! Key-level operations and hash reads.

use std::time::Duration;

use bytes::Bytes;
use pulse::{
    backend::{AddOptions, KeyExpiry, SetCondition, Ttl},
    Error,
};

use super::entry;
use crate::{eventually, Ctx};

async fn ttl_of(cx: &Ctx, key: &str) -> Duration {
    match cx.backend.expiry(key).await.unwrap() {
        KeyExpiry::In(d) => d,
        other => panic!("expected an expiry on {key}, got {other:?}"),
    }
}

/// `exists` and `delete` on keys of any type.
pub async fn key_exists_and_delete(cx: Ctx) {
    let b = &cx.backend;
    let (s, h, none) = (cx.key("s"), cx.key("h"), cx.key("none"));
    assert!(!b.exists(&s).await.unwrap());
    b.stream_add(&s, entry("a"), &AddOptions::default())
        .await
        .unwrap();
    b.map_set(&cx.map("h"), "k", Bytes::from("v"), SetCondition::Always)
        .await
        .unwrap();
    assert!(b.exists(&s).await.unwrap() && b.exists(&h).await.unwrap());
    assert_eq!(b.expiry(&s).await.unwrap(), KeyExpiry::Persistent);
    assert_eq!(b.expiry(&none).await.unwrap(), KeyExpiry::Missing);
    assert_eq!(b.delete(&[s.clone(), h.clone(), none]).await.unwrap(), 2);
    assert!(!b.exists(&s).await.unwrap() && !b.exists(&h).await.unwrap());
}

/// An absolute TTL is set once and not extended by later calls.
pub async fn expire_absolute_keeps_first_deadline(cx: Ctx) {
    let b = &cx.backend;
    let key = cx.key("s");
    assert!(
        !b.expire(&key, Ttl::Absolute(Duration::from_secs(10)))
            .await
            .unwrap(),
        "missing key"
    );
    b.stream_add(&key, entry("a"), &AddOptions::default())
        .await
        .unwrap();
    assert!(b
        .expire(&key, Ttl::Absolute(Duration::from_secs(10)))
        .await
        .unwrap());
    let first = ttl_of(&cx, &key).await;
    assert!(
        first > Duration::from_secs(9) && first <= Duration::from_secs(10),
        "{first:?}"
    );
    assert!(!b
        .expire(&key, Ttl::Absolute(Duration::from_secs(100)))
        .await
        .unwrap());
    assert!(ttl_of(&cx, &key).await <= first);
}

/// A sliding TTL is reset by every call.
pub async fn expire_sliding_extends(cx: Ctx) {
    let b = &cx.backend;
    let key = cx.key("s");
    b.stream_add(&key, entry("a"), &AddOptions::default())
        .await
        .unwrap();
    assert!(b
        .expire(&key, Ttl::Sliding(Duration::from_secs(10)))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await; // let the clock advance
    let before = ttl_of(&cx, &key).await;
    assert!(b
        .expire(&key, Ttl::Sliding(Duration::from_secs(10)))
        .await
        .unwrap());
    let after = ttl_of(&cx, &key).await;
    assert!(
        after > before,
        "sliding TTL not extended: {before:?} -> {after:?}"
    );
}

/// Expired keys disappear for every operation.
pub async fn expired_keys_vanish(cx: Ctx) {
    let b = &cx.backend;
    let map = cx
        .map("m")
        .with_ttl(Some(Ttl::Sliding(Duration::from_millis(50))));
    b.map_set(&map, "k", Bytes::from("v"), SetCondition::Always)
        .await
        .unwrap();
    let s = cx.key("s");
    b.stream_add(
        &s,
        entry("a"),
        &AddOptions::default().with_ttl(Ttl::Absolute(Duration::from_millis(50))),
    )
    .await
    .unwrap();
    eventually("map and stream expired", || async {
        !b.exists(&map.hash).await.unwrap() && !b.exists(&s).await.unwrap()
    })
    .await;
    assert_eq!(b.hash_get(&map.hash, "k").await.unwrap(), None);
    assert_eq!(b.stream_info(&s).await.unwrap(), None);
}

/// Hash reads see what map operations wrote, bookkeeping fields included.
pub async fn hash_reads(cx: Ctx) {
    let b = &cx.backend;
    let map = cx.map("m");
    assert_eq!(b.hash_get(&map.hash, "a").await.unwrap(), None);
    assert!(b.hash_get_all(&map.hash).await.unwrap().is_empty());
    assert_eq!(b.hash_len(&map.hash).await.unwrap(), 0);
    b.map_set(
        &map,
        "a",
        Bytes::from_static(b"\x00\xff"),
        SetCondition::Always,
    )
    .await
    .unwrap();
    b.map_set(&map, "b", Bytes::new(), SetCondition::Always)
        .await
        .unwrap();
    assert_eq!(
        b.hash_get(&map.hash, "a").await.unwrap(),
        Some(Bytes::from_static(b"\x00\xff"))
    );
    assert_eq!(
        b.hash_get(&map.hash, "b").await.unwrap(),
        Some(Bytes::new())
    );
    assert!(b.hash_exists(&map.hash, "b").await.unwrap());
    assert!(!b.hash_exists(&map.hash, "c").await.unwrap());
    let mut all: Vec<String> = b
        .hash_get_all(&map.hash)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    all.sort();
    assert_eq!(all, ["=epoch", "=kind", "=rev", "a", "b"]);
    assert_eq!(b.hash_len(&map.hash).await.unwrap(), 5);
    assert_eq!(
        b.hash_get(&map.hash, "=rev").await.unwrap(),
        Some(Bytes::from("2"))
    );
}

/// Hash reads of a key of another type fail with `WrongType`.
pub async fn hash_wrong_type(cx: Ctx) {
    let b = &cx.backend;
    let s = cx.key("s");
    b.stream_add(&s, entry("a"), &AddOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        b.hash_get(&s, "f").await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        b.hash_get_all(&s).await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        b.hash_exists(&s, "f").await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(b.hash_len(&s).await, Err(Error::WrongType { .. })));
    assert!(matches!(
        b.hash_get_fields(&s, &["f", "g"]).await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        b.hash_scan(&s, None, 10).await,
        Err(Error::WrongType { .. })
    ));
}

/// `keys_matching` lists live keys of any type that begin with the prefix and end with
/// the suffix — both taken literally, glob characters included — sorted, deduplicated and
/// cut at the limit; keys in other hash tags (other cluster slots) are all found.
pub async fn keys_matching_lists_sorted_and_limited(cx: Ctx) {
    let b = &cx.backend;
    let ns = cx.key("");
    let ns = ns.trim_end_matches("{}");
    let names = ["d", "a", "c", "b*", "[ab]"];
    for name in names {
        b.stream_add(&cx.key(name), entry("x"), &AddOptions::default())
            .await
            .unwrap();
        let other = format!("{}:other", cx.key(name));
        b.stream_add(&other, entry("x"), &AddOptions::default())
            .await
            .unwrap();
    }
    b.map_set(&cx.map("h"), "k", Bytes::from("v"), SetCondition::Always)
        .await
        .unwrap();
    let gone = cx.key("gone");
    b.stream_add(&gone, entry("x"), &AddOptions::default())
        .await
        .unwrap();
    b.expire(&gone, Ttl::Sliding(Duration::from_millis(50)))
        .await
        .unwrap();
    let mut tagged: Vec<String> = names.iter().map(|n| cx.key(n)).collect();
    tagged.push(cx.map("h").hash.clone());
    tagged.sort();
    let mut all = tagged.clone();
    all.extend(names.iter().map(|n| format!("{}:other", cx.key(n))));
    all.sort();
    eventually("the expired key is not listed", || async {
        b.keys_matching(ns, "}", 100).await.unwrap() == tagged
    })
    .await;
    assert_eq!(b.keys_matching(ns, "", 100).await.unwrap(), all);
    assert_eq!(
        b.keys_matching(ns, "}", 2).await.unwrap(),
        tagged[..2].to_vec()
    );
    assert!(b.keys_matching(ns, "", 0).await.unwrap().is_empty());
    let others = b.keys_matching(ns, ":other", 100).await.unwrap();
    assert_eq!(others.len(), names.len(), "{others:?}");
    // Glob characters are literals: `{b*` matches `{b*}…` only, `{?` nothing, and `{[ab]`
    // (which as a pattern would match `{a}`) only `{[ab]}…`.
    let starred = format!("{ns}{{b*");
    assert_eq!(
        b.keys_matching(&starred, "}", 100).await.unwrap(),
        vec![cx.key("b*")]
    );
    let question = format!("{ns}{{?");
    assert!(b
        .keys_matching(&question, "", 100)
        .await
        .unwrap()
        .is_empty());
    let bracket = format!("{ns}{{[ab]");
    assert_eq!(
        b.keys_matching(&bracket, "}", 100).await.unwrap(),
        vec![cx.key("[ab]")]
    );
    assert_eq!(
        b.keys_matching(ns, "*}", 100).await.unwrap(),
        vec![cx.key("b*")]
    );
    // Prefix and suffix do not overlap.
    let whole = cx.key("a");
    assert!(b
        .keys_matching(&whole, &whole, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        b.keys_matching(&whole, "", 100).await.unwrap(),
        vec![whole.clone(), format!("{whole}:other")]
    );
    b.delete(&all).await.unwrap();
    assert!(b.keys_matching(ns, "", 100).await.unwrap().is_empty());
}
