//! Two applications with different key prefixes share a backend without seeing each
//! other's data.

use std::time::Duration;

use pulse::{
    keys::{Family, Keyspace},
    pool::{Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{NewEvent, ReaderOptions, Start, Stream, StreamOptions},
    Error,
};

use crate::{eventually, util::Noop, Ctx};

/// Same map, stream and pool names under two prefixes are fully separate.
pub async fn prefixes_isolate_applications(cx: Ctx) {
    let app = |n: &str| Keyspace::new(format!("{}-{n}", cx.keyspace().prefix())).unwrap();
    let (a, b) = (app("a"), app("b"));
    let ma = Map::join(
        cx.backend.clone(),
        "m",
        MapOptions::default().with_keyspace(a.clone()),
    )
    .await
    .unwrap();
    let mb = Map::join(
        cx.backend.clone(),
        "m",
        MapOptions::default().with_keyspace(b.clone()),
    )
    .await
    .unwrap();
    ma.set_and_wait("k", "from a").await.unwrap();
    mb.set_and_wait("other", "from b").await.unwrap();
    assert_eq!(
        (ma.keys(), mb.keys()),
        (vec!["k".to_owned()], vec!["other".to_owned()])
    );

    let sa = Stream::new(
        cx.backend.clone(),
        "s",
        StreamOptions::default().with_keyspace(a.clone()),
    )
    .unwrap();
    let sb = Stream::new(
        cx.backend.clone(),
        "s",
        StreamOptions::default().with_keyspace(b.clone()),
    )
    .unwrap();
    let rb = sb
        .new_reader(
            ReaderOptions::default()
                .with_start(Start::Oldest)
                .with_block(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    let mut rx = rb.subscribe().unwrap();
    sa.add("for-a", "").await.unwrap();
    sb.add("for-b", "").await.unwrap();
    let e = tokio::time::timeout(crate::patience(), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.name, "for-b");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "b saw a's event"
    );
    rb.close().await.unwrap();

    let opts = |k: &Keyspace| {
        NodeOptions::default()
            .with_keyspace(k.clone())
            .with_worker_ttl(Duration::from_millis(600))
    };
    let na = Node::join(cx.backend.clone(), "pool", opts(&a))
        .await
        .unwrap();
    let nb = Node::join(cx.backend.clone(), "pool", opts(&b))
        .await
        .unwrap();
    na.add_worker(Noop).await.unwrap();
    nb.add_worker(Noop).await.unwrap();
    na.dispatch_job("job", "a").await.unwrap();
    nb.dispatch_job("job", "b").await.unwrap(); // no JobExists across applications
    eventually("each pool sees its own job", || async {
        na.job_payload("job").as_deref() == Some(&b"a"[..])
            && nb.job_payload("job").as_deref() == Some(&b"b"[..])
    })
    .await;
    assert_eq!(na.pool_workers().len(), 1);
    assert!(matches!(
        na.dispatch_job("job", "again").await,
        Err(Error::JobExists { .. })
    ));
    na.close().await.unwrap();
    nb.close().await.unwrap();
}

/// `Keyspace::list` names the maps, streams and pools written under one prefix — not
/// another prefix's, not the keys a stream keeps beside itself (a dedup key ending in
/// `}` included) — sorted and cut at the limit.
pub async fn keyspace_lists_maps_streams_and_pools(cx: Ctx) {
    let app = |n: &str| Keyspace::new(format!("{}-{n}", cx.keyspace().prefix())).unwrap();
    let (a, b) = (app("a"), app("b"));
    let list = |ks: &Keyspace, family| {
        let (ks, backend) = (ks.clone(), cx.backend.clone());
        async move { ks.list(backend.as_ref(), family, 10).await.unwrap() }
    };
    for name in ["m2", "m1"] {
        let map = Map::join(
            cx.backend.clone(),
            name,
            MapOptions::default().with_keyspace(a.clone()),
        )
        .await
        .unwrap();
        map.set_and_wait("k", "v").await.unwrap();
        map.close().await.unwrap();
    }
    for (ks, name) in [(&a, "s2"), (&a, "s1"), (&b, "other")] {
        let stream = Stream::new(
            cx.backend.clone(),
            name,
            StreamOptions::default().with_keyspace(ks.clone()),
        )
        .unwrap();
        let event = NewEvent::new("e", "").with_dedup_key("x}");
        stream.add_event(event).await.unwrap();
    }
    let node = Node::join(
        cx.backend.clone(),
        "p1",
        NodeOptions::default().with_keyspace(a.clone()),
    )
    .await
    .unwrap();
    node.add_worker(Noop).await.unwrap();
    node.dispatch_job("job", "").await.unwrap();

    assert_eq!(list(&a, Family::Maps).await, ["m1", "m2"]);
    // A pool node's inbox is a stream of the keyspace too, named `<pool>:inbox:<node>`.
    let inbox = format!("p1:inbox:{}", node.id());
    assert_eq!(
        list(&a, Family::Streams).await,
        [inbox.as_str(), "s1", "s2"]
    );
    assert_eq!(list(&a, Family::Pools).await, ["p1"]);
    assert_eq!(list(&b, Family::Streams).await, ["other"]);
    assert!(list(&b, Family::Maps).await.is_empty());
    assert!(list(&b, Family::Pools).await.is_empty());
    // Keys `{p1:inbox:…}`, `{s1}`, `{s1}:dedup:x}`, `{s2}`: the first three hold two
    // names, so a limit of three names needs a second, larger call.
    let three = a.list(cx.backend.as_ref(), Family::Streams, 3).await;
    assert_eq!(three.unwrap(), [inbox.as_str(), "s1", "s2"]);
    let one = a.list(cx.backend.as_ref(), Family::Maps, 1).await;
    assert_eq!(one.unwrap(), ["m1"]);
    node.close().await.unwrap();
}
