//! Replicated maps (`pulse::rmap`) on the backend under test: the spec's behaviours
//! (rmap.md §7, adapted where a weakness is fixed) plus convergence under faults.

use std::time::Duration;

use bytes::Bytes;
use pulse::{
    backend::{MapTarget, SetCondition, Ttl},
    rmap::{EventKind, Map, MapEvent, MapOptions, MapSubscriber},
    Error,
};

use crate::{eventually, Ctx};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn opts(cx: &Ctx) -> MapOptions {
    MapOptions::default()
        .with_keyspace(cx.keyspace())
        .with_check_interval(Duration::from_millis(50))
        .with_resync_delay(Duration::from_millis(10))
}

async fn join(cx: &Ctx, name: &str) -> Map {
    Map::join(cx.backend.clone(), name, opts(cx)).await.unwrap()
}

/// The map's keys, bypassing the replica (to cause lost notices on purpose).
fn silent_target(cx: &Ctx, name: &str) -> MapTarget {
    let keys = cx.keyspace().map(name).unwrap();
    MapTarget::new(keys.hash, format!("{}:nobody-listens", keys.channel))
}

async fn next(sub: &mut MapSubscriber) -> MapEvent {
    tokio::time::timeout(crate::patience(), sub.recv())
        .await
        .expect("no map event in time")
        .expect("subscriber ended")
}

async fn converged(what: &str, maps: &[&Map], cx: &Ctx, name: &str) {
    let hash = cx.keyspace().map(name).unwrap().hash;
    eventually(what, || async {
        let mut remote: Vec<(String, Bytes)> = cx
            .backend
            .hash_get_all(&hash)
            .await
            .unwrap()
            .into_iter()
            .filter(|(k, _)| !k.starts_with('='))
            .collect();
        remote.sort();
        maps.iter().all(|m| {
            let mut local: Vec<(String, Bytes)> = m
                .snapshot()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            local.sort();
            local == remote
        })
    })
    .await;
}

/// A set is visible through every local read, on this replica and others.
pub async fn rmap_set_then_visible(cx: Ctx) {
    let (m, other) = (join(&cx, "m").await, join(&cx, "m").await);
    assert_eq!(m.set("foo", "bar").await.unwrap(), None);
    for map in [&m, &other] {
        eventually("set visible", || async { map.get("foo") == Some(b("bar")) }).await;
        assert_eq!(map.keys(), ["foo"]);
        assert_eq!(map.len(), 1);
        assert_eq!(map.snapshot().get("foo"), Some(&b("bar")));
    }
    assert_eq!(m.set("foo", "baz").await.unwrap(), Some(b("bar")));
}

/// Delete returns the previous value and the key disappears; reset empties the map.
pub async fn rmap_delete_and_reset(cx: Ctx) {
    let m = join(&cx, "m").await;
    for k in ["a", "b", "c"] {
        m.set(k, k).await.unwrap();
    }
    assert_eq!(m.delete("b").await.unwrap(), Some(b("b")));
    assert_eq!(m.delete("b").await.unwrap(), None);
    eventually("two left", || async {
        m.len() == 2 && !m.contains_key("b")
    })
    .await;
    assert_eq!(m.get("a"), Some(b("a")));
    m.reset().await.unwrap();
    eventually("empty after reset", || async { m.is_empty() }).await;
}

/// `set_and_wait` returns with the write visible locally, including under concurrent load.
pub async fn rmap_set_and_wait(cx: Ctx) {
    let m = join(&cx, "m").await;
    assert_eq!(m.set_and_wait("k", "1").await.unwrap(), None);
    assert_eq!(m.get("k"), Some(b("1")));
    assert_eq!(m.set_and_wait("k", "2").await.unwrap(), Some(b("1")));
    assert_eq!(m.get("k"), Some(b("2")));
    let writers: Vec<_> = (0..20)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move { m.set(&format!("k{i}"), "x").await.unwrap() })
        })
        .collect();
    m.set_and_wait("mine", "v").await.unwrap();
    assert_eq!(m.get("mine"), Some(b("v")));
    for w in writers {
        w.await.unwrap();
    }
    let same: Vec<_> = (0..10).map(|_| m.set_and_wait("same", "v")).collect();
    for f in same {
        f.await.unwrap();
    }
}

/// A closed map keeps its content, refuses writes (except reset/destroy) and subscribers.
pub async fn rmap_closed_map(cx: Ctx) {
    let m = join(&cx, "m").await;
    m.set_and_wait("k", "v").await.unwrap();
    let mut sub = m.subscribe().unwrap();
    m.close().await.unwrap();
    m.close().await.unwrap();
    assert!(m.is_closed());
    assert_eq!(
        (m.get("k"), m.len(), m.keys()),
        (Some(b("v")), 1, vec!["k".to_owned()])
    );
    assert!(matches!(m.set("k", "x").await, Err(Error::Closed { .. })));
    assert!(matches!(m.delete("k").await, Err(Error::Closed { .. })));
    assert!(matches!(
        m.set_and_wait("k", "x").await,
        Err(Error::Closed { .. })
    ));
    assert!(matches!(m.subscribe(), Err(Error::Closed { .. })));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap(),
        None
    );
    m.reset().await.unwrap();
    assert_eq!(
        m.get("k"),
        Some(b("v")),
        "a closed replica no longer changes"
    );
    let fresh = join(&cx, "m").await;
    assert!(fresh.is_empty(), "the reset reached the backend");
}

/// Empty values are present, distinct from absent.
pub async fn rmap_empty_value(cx: Ctx) {
    let m = join(&cx, "m").await;
    m.set_and_wait("k", "").await.unwrap();
    assert_eq!(m.get("k"), Some(Bytes::new()));
    assert_eq!(m.set("k", "x").await.unwrap(), Some(Bytes::new()));
    assert!(!m.set_if_absent("k", "y").await.unwrap());
}

/// Test-and-set / test-and-delete report what they found and change only on a match.
pub async fn rmap_conditional_writes(cx: Ctx) {
    let m = join(&cx, "m").await;
    let miss = m.test_and_set("k", "", "v").await.unwrap();
    assert_eq!(
        (miss.previous, miss.written),
        (None, false),
        "absent never matches"
    );
    m.set("k", "baz").await.unwrap();
    let miss = m.test_and_set("k", "", "v").await.unwrap();
    assert_eq!((miss.previous, miss.written), (Some(b("baz")), false));
    let hit = m.test_and_set("k", "baz", "new").await.unwrap();
    assert_eq!((hit.previous, hit.written), (Some(b("baz")), true));
    let del = m.test_and_delete("k", "wrong").await.unwrap();
    assert_eq!((del.previous, del.deleted), (Some(b("new")), false));
    let del = m.test_and_delete("k", "new").await.unwrap();
    assert_eq!((del.previous, del.deleted), (Some(b("new")), true));
    let del = m.test_and_delete("k", "new").await.unwrap();
    assert_eq!((del.previous, del.deleted), (None, false));
    assert!(m.set_if_absent("k", "1").await.unwrap());
    eventually("replica", || async { m.get("k") == Some(b("1")) }).await;
}

/// Lists: append keeps duplicates, append-unique does not, remove deletes emptied keys.
pub async fn rmap_lists(cx: Ctx) {
    let m = join(&cx, "m").await;
    assert_eq!(m.append("l", ["bar"]).await.unwrap(), [b("bar")]);
    assert_eq!(m.append("l", ["baz"]).await.unwrap(), [b("bar"), b("baz")]);
    let u = m.append_unique("u", ["a", "b", "c"]).await.unwrap();
    assert_eq!(u.list.unwrap(), [b("a"), b("b"), b("c")]);
    let u = m.append_unique("u", ["d", "e", "a"]).await.unwrap();
    assert_eq!(u.list.unwrap(), [b("a"), b("b"), b("c"), b("d"), b("e")]);
    let r = m.remove_values("l", ["bar"]).await.unwrap();
    assert_eq!((r.list, r.changed), (Some(vec![b("baz")]), true));
    let r = m.remove_values("l", ["baz"]).await.unwrap();
    assert_eq!((r.list, r.changed), (None, true));
    let r = m.remove_values("missing", ["x"]).await.unwrap();
    assert_eq!((r.list, r.changed), (None, false));
    eventually("lists replicated", || async {
        !m.contains_key("l") && m.get_list("u").unwrap().is_some_and(|l| l.len() == 5)
    })
    .await;
    m.set("plain", "not a list").await.unwrap();
    assert!(matches!(
        m.append("plain", ["x"]).await,
        Err(Error::InvalidValue { .. })
    ));
    eventually("plain replicated", || async { m.contains_key("plain") }).await;
    assert!(matches!(m.get_list("plain"), Err(Error::Malformed { .. })));
}

/// Increments replicate as decimal text, read back with `get_i64`.
pub async fn rmap_increment(cx: Ctx) {
    let m = join(&cx, "m").await;
    for (d, want) in [(1, 1), (41, 42), (-1, 41), (-41, 0)] {
        assert_eq!(m.increment("n", d).await.unwrap(), want);
    }
    eventually("decimal text", || async { m.get("n") == Some(b("0")) }).await;
    m.increment("n", -7).await.unwrap();
    eventually("read back typed", || async {
        m.get_i64("n").unwrap() == Some(-7)
    })
    .await;
    assert_eq!(m.get_i64("absent").unwrap(), None);
    m.set("s", "abc").await.unwrap();
    assert!(matches!(
        m.increment("s", 1).await,
        Err(Error::InvalidValue { .. })
    ));
    eventually("the text arrived", || async { m.get("s").is_some() }).await;
    assert!(matches!(m.get_i64("s"), Err(Error::InvalidValue { .. })));
    let state = m.state();
    assert_eq!((state.name.as_str(), state.len), ("m", 2));
    assert_eq!(state.revision, m.revision());
}

/// Test-and-reset clears only on a full match; no tests = unconditional.
pub async fn rmap_test_and_reset(cx: Ctx) {
    let m = join(&cx, "m").await;
    m.set("a", "1").await.unwrap();
    m.set("b", "2").await.unwrap();
    assert!(!m.test_and_reset([("a", "1"), ("b", "x")]).await.unwrap());
    assert!(!m.test_and_reset([("zz", "")]).await.unwrap());
    assert!(m.test_and_reset([("a", "1"), ("b", "2")]).await.unwrap());
    eventually("empty", || async { m.is_empty() }).await;
    m.set("c", "3").await.unwrap();
    assert!(m
        .test_and_reset(Vec::<(String, Bytes)>::new())
        .await
        .unwrap());
    eventually("empty again", || async { m.is_empty() }).await;
}

/// Invalid names and keys are typed errors and write nothing.
pub async fn rmap_invalid_names_and_keys(cx: Ctx) {
    for name in ["invalid*redis*key", "", "a b", "x{y}"] {
        let r = Map::join(cx.backend.clone(), name, opts(&cx)).await;
        assert!(matches!(r, Err(Error::InvalidName { .. })), "{name:?}");
    }
    let m = join(&cx, "m").await;
    for key in ["", "foo=2"] {
        assert!(matches!(
            m.set(key, "v").await,
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            m.append(key, ["v"]).await,
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            m.remove_values(key, ["v"]).await,
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            m.test_and_reset([(key, "v")]).await,
            Err(Error::InvalidKey { .. })
        ));
    }
    let small = Map::join(
        cx.backend.clone(),
        "small",
        opts(&cx).with_max_value_size(4),
    )
    .await
    .unwrap();
    assert!(matches!(
        small.set("k", "12345").await,
        Err(Error::PayloadTooLarge { size: 5, limit: 4 })
    ));
    assert!(!cx
        .backend
        .exists(&cx.keyspace().map("m").unwrap().hash)
        .await
        .unwrap());
}

/// Typed values round-trip; a value of another shape is `Malformed`, not a panic.
pub async fn rmap_typed_values(cx: Ctx) {
    let m = join(&cx, "m").await;
    m.set_typed("pt", &(3u32, "x".to_owned())).await.unwrap();
    eventually("typed", || async { m.contains_key("pt") }).await;
    assert_eq!(
        m.get_typed::<(u32, String)>("pt").unwrap(),
        Some((3, "x".to_owned()))
    );
    m.set_and_wait("raw", "garbage").await.unwrap();
    assert!(matches!(
        m.get_typed::<(u32, String)>("raw"),
        Err(Error::Malformed { .. })
    ));
    assert_eq!(m.get_typed::<u32>("absent").unwrap(), None);
}

/// Destroy empties the map; a later write is seen (revisions continue).
pub async fn rmap_destroy_then_set(cx: Ctx) {
    let (m, other) = (join(&cx, "m").await, join(&cx, "m").await);
    m.set_and_wait("a", "1").await.unwrap();
    m.destroy().await.unwrap();
    eventually("destroyed", || async { other.is_empty() && m.is_empty() }).await;
    m.set("b", "2").await.unwrap();
    eventually("new write seen", || async {
        other.get("b") == Some(b("2"))
    })
    .await;
}

/// Foreign or corrupt notices on the channel are ignored: no change, no panic.
pub async fn rmap_ignores_malformed_notices(cx: Ctx) {
    let m = join(&cx, "m").await;
    m.set_and_wait("k", "v").await.unwrap();
    let before = m.revision();
    let channel = cx.keyspace().map("m").unwrap().channel;
    for junk in [
        &b"destroy:"[..],
        b"",
        b"\x01\x05",
        b"\x09garbage",
        b"\x01\x01\x01\x03extra",
    ] {
        cx.backend
            .publish(&channel, Bytes::copy_from_slice(junk))
            .await
            .unwrap();
    }
    m.set_and_wait("k2", "v2").await.unwrap();
    assert_eq!(m.get("k"), Some(b("v")));
    assert_eq!(m.revision().rev, before.rev + 1);
}

/// Every event names the key and kind; a slow subscriber still learns of a later reset.
pub async fn rmap_events_say_what_changed(cx: Ctx) {
    let m = join(&cx, "m").await;
    let mut sub = m.subscribe().unwrap();
    m.set("a", "1").await.unwrap();
    m.delete("a").await.unwrap();
    m.reset().await.unwrap();
    let seen: Vec<(EventKind, Option<String>)> = [
        next(&mut sub).await,
        next(&mut sub).await,
        next(&mut sub).await,
    ]
    .into_iter()
    .map(|e| (e.kind, e.key))
    .collect();
    assert_eq!(
        seen,
        [
            (EventKind::Change, Some("a".into())),
            (EventKind::Delete, Some("a".into())),
            (EventKind::Reset, None)
        ]
    );

    let slow_map = Map::join(cx.backend.clone(), "slow", opts(&cx).with_event_buffer(2))
        .await
        .unwrap();
    let mut slow = slow_map.subscribe().unwrap();
    for i in 0..5 {
        slow_map.set(&format!("k{i}"), "v").await.unwrap();
    }
    slow_map.reset().await.unwrap();
    eventually("reset applied", || async {
        slow_map.is_empty() && slow_map.revision().rev == 6
    })
    .await;
    // The replica's content can show the reset a moment before its event is queued:
    // read until the reset comes (a masked one never does) or the queue stays quiet.
    let mut kinds = Vec::new();
    while kinds.last() != Some(&EventKind::Reset) {
        match tokio::time::timeout(Duration::from_secs(2), slow.recv()).await {
            Ok(Some(e)) => kinds.push(e.kind),
            _ => break,
        }
    }
    assert_eq!(
        kinds.last(),
        Some(&EventKind::Reset),
        "the reset was masked: {kinds:?}"
    );
    // At most the two the queue holds, and the reset if it was queued after them.
    assert!(kinds.len() <= 3, "the queue is bounded: {kinds:?}");
}

/// A notice that never arrives is detected (revision gap) and repaired by a resync.
pub async fn rmap_gap_triggers_resync(cx: Ctx) {
    let m = join(&cx, "m").await;
    m.set_and_wait("a", "1").await.unwrap();
    // A write whose notice goes nowhere: the replica misses revision 2.
    cx.backend
        .map_set(
            &silent_target(&cx, "m"),
            "lost",
            b("x"),
            SetCondition::Always,
        )
        .await
        .unwrap();
    m.set("b", "2").await.unwrap();
    eventually("gap repaired", || async {
        m.get("lost") == Some(b("x")) && m.get("b") == Some(b("2"))
    })
    .await;
    converged("converged", &[&m], &cx, "m").await;
}

/// After a lost subscription the replica resyncs; a reset missed meanwhile is a `Reset`.
pub async fn rmap_resync_after_subscription_loss(cx: Ctx) {
    let observer = join(&cx, "m").await;
    observer.set_and_wait("a", "1").await.unwrap();
    let mut sub = observer.subscribe().unwrap();
    // A reset the observer cannot hear about, then the connection drops and comes back.
    cx.backend
        .map_reset(&silent_target(&cx, "m"), vec![], false)
        .await
        .unwrap();
    cx.faults.kill_subscriptions().await;
    let e = next(&mut sub).await;
    assert_eq!(e.kind, EventKind::Reset, "{e:?}");
    assert!(observer.is_empty());
    observer.set("after", "1").await.unwrap();
    eventually("writes replicate after the outage", || async {
        observer.get("after").is_some()
    })
    .await;
}

/// A map whose hash vanished and was re-created (flush, restart) is followed, not ignored.
pub async fn rmap_follows_a_recreated_map(cx: Ctx) {
    let (m, other) = (join(&cx, "m").await, join(&cx, "m").await);
    for i in 0..5 {
        m.set(&format!("k{i}"), "old").await.unwrap();
    }
    converged("initial", &[&m, &other], &cx, "m").await;
    let hash = cx.keyspace().map("m").unwrap().hash;
    cx.backend
        .delete(std::slice::from_ref(&hash))
        .await
        .unwrap();
    m.set("fresh", "new").await.unwrap(); // new generation, revision 1
    eventually("new generation adopted", || async {
        other.len() == 1 && other.get("fresh") == Some(b("new"))
    })
    .await;
    converged("after re-creation", &[&m, &other], &cx, "m").await;
}

/// A replica learns that its map expired, and reports it as a reset.
pub async fn rmap_learns_expiry(cx: Ctx) {
    let m = Map::join(
        cx.backend.clone(),
        "m",
        opts(&cx).with_ttl(Ttl::Absolute(Duration::from_millis(300))),
    )
    .await
    .unwrap();
    let mut sub = m.subscribe().unwrap();
    m.set("k", "v").await.unwrap();
    assert_eq!(next(&mut sub).await.kind, EventKind::Change);
    let hash = cx.keyspace().map("m").unwrap().hash;
    assert!(matches!(
        cx.backend.expiry(&hash).await.unwrap(),
        pulse::backend::KeyExpiry::In(_)
    ));
    assert_eq!(next(&mut sub).await.kind, EventKind::Reset);
    assert!(m.is_empty());
    m.set("k2", "v").await.unwrap();
    eventually("usable after expiry", || async { m.get("k2").is_some() }).await;
}

/// TTLs are applied by the write itself: absolute is not extended, sliding is.
pub async fn rmap_ttl_modes(cx: Ctx) {
    use pulse::backend::KeyExpiry;
    let ttl_of = |name: &'static str| {
        let (b, hash) = (cx.backend.clone(), cx.keyspace().map(name).unwrap().hash);
        async move {
            match b.expiry(&hash).await.unwrap() {
                KeyExpiry::In(d) => d,
                other => panic!("no TTL: {other:?}"),
            }
        }
    };
    let abs = Map::join(
        cx.backend.clone(),
        "abs",
        opts(&cx).with_ttl(Ttl::Absolute(Duration::from_secs(10))),
    )
    .await
    .unwrap();
    let slide = Map::join(
        cx.backend.clone(),
        "slide",
        opts(&cx).with_ttl(Ttl::Sliding(Duration::from_secs(10))),
    )
    .await
    .unwrap();
    abs.set("k", "1").await.unwrap();
    slide.set("k", "1").await.unwrap();
    let (a1, s1) = (ttl_of("abs").await, ttl_of("slide").await);
    tokio::time::sleep(Duration::from_millis(50)).await; // let the clock advance
    abs.set("k", "2").await.unwrap();
    slide.set("k", "2").await.unwrap();
    assert!(ttl_of("abs").await < a1, "absolute TTL extended");
    assert!(
        ttl_of("slide").await > s1 - Duration::from_millis(50) + Duration::from_millis(1),
        "sliding TTL not extended"
    );
}

/// Several replicas under concurrent writers converge to identical content.
pub async fn rmap_replicas_converge(cx: Ctx) {
    let replicas = [
        join(&cx, "m").await,
        join(&cx, "m").await,
        join(&cx, "m").await,
    ];
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let m = replicas[w % 3].clone();
            tokio::spawn(async move {
                for i in 0..50u32 {
                    let key = format!("k{}", (i * 7 + w as u32) % 13);
                    match i % 5 {
                        0 => drop(m.delete(&key).await.unwrap()),
                        1 => drop(m.increment("counter", 1).await.unwrap()),
                        2 => drop(
                            m.append_unique("list", [format!("{w}-{}", i % 4)])
                                .await
                                .unwrap(),
                        ),
                        _ => drop(m.set(&key, format!("{w}:{i}")).await.unwrap()),
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    converged(
        "replicas converge",
        &replicas.iter().collect::<Vec<_>>(),
        &cx,
        "m",
    )
    .await;
    assert_eq!(replicas[0].get("counter"), Some(b("40")));
    let revs: Vec<_> = replicas.iter().map(|r| r.revision()).collect();
    assert!(revs.windows(2).all(|w| w[0] == w[1]), "{revs:?}");
}

/// 50 concurrent test-and-sets through maps: exactly one wins.
pub async fn rmap_concurrent_test_and_set(cx: Ctx) {
    let m = join(&cx, "m").await;
    m.set_and_wait("k", "start").await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move {
                m.test_and_set("k", "start", format!("w{i}"))
                    .await
                    .unwrap()
                    .written
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

/// Many concurrent sets (batched together where the backend is slow enough for them to
/// queue) each stay atomic: on one key, every write saw exactly one predecessor, so the
/// previous values and the final value name each write once; on distinct keys, another
/// replica ends up with all of them.
pub async fn rmap_concurrent_sets_each_apply_once(cx: Ctx) {
    let m = join(&cx, "m").await;
    let other = join(&cx, "m").await;
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move {
                let previous = m.set("k", i.to_string()).await.unwrap();
                m.set(&format!("k{i}"), "v").await.unwrap();
                previous
            })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    let fin = cx
        .backend
        .hash_get(&cx.keyspace().map("m").unwrap().hash, "k")
        .await
        .unwrap();
    seen.push(fin);
    let mut names: Vec<Option<u32>> = seen
        .iter()
        .map(|v| {
            v.as_ref()
                .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
        })
        .collect();
    names.sort();
    let want: Vec<Option<u32>> = std::iter::once(None).chain((0..200).map(Some)).collect();
    assert_eq!(names, want);
    converged("replicas see every write", &[&m, &other], &cx, "m").await;
    assert_eq!(other.len(), 201);
}

/// Dropping every handle stops the replica: its subscription goes away.
pub async fn rmap_drop_releases_the_subscription(cx: Ctx) {
    let channel = cx.keyspace().map("m").unwrap().channel;
    let m = join(&cx, "m").await;
    let clone = m.clone();
    assert_eq!(cx.backend.publish(&channel, b("ping")).await.unwrap(), 1);
    drop(m);
    drop(clone);
    eventually("unsubscribed", || async {
        cx.backend.publish(&channel, b("ping")).await.unwrap() == 0
    })
    .await;
    let closed = join(&cx, "m").await;
    closed.close().await.unwrap();
    eventually("unsubscribed after close", || async {
        cx.backend.publish(&channel, b("ping")).await.unwrap() == 0
    })
    .await;
}
