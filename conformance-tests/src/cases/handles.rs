//! The shape every handle shares: `close` is async, returns a `Result`, may be called
//! again (and then returns at once with `Ok`), and afterwards the handle says it is closed
//! and refuses new work with [`Error::Closed`].

use std::time::Duration;

use pulse::{
    pool::{Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{ReaderOptions, SinkOptions, Stream, StreamOptions},
    Error,
};

use crate::Ctx;

fn closed<T: std::fmt::Debug>(what: &str, out: pulse::Result<T>) {
    assert!(
        matches!(out, Err(Error::Closed { .. })),
        "{what} after close: {out:?}"
    );
}

/// Map, reader, sink, node, ticker and schedule: close twice, both `Ok`; then closed.
pub async fn every_close_is_async_idempotent_and_final(cx: Ctx) {
    let b = cx.backend.clone();
    let map = Map::join(
        b.clone(),
        "m",
        MapOptions::default().with_keyspace(cx.keyspace()),
    )
    .await
    .unwrap();
    map.close().await.unwrap();
    map.close().await.unwrap();
    assert!(map.is_closed());
    closed("map set", map.set("k", "v").await);

    let stream = Stream::new(
        b.clone(),
        "s",
        StreamOptions::default().with_keyspace(cx.keyspace()),
    )
    .unwrap();
    let block = Duration::from_millis(100);
    let reader = stream
        .new_reader(ReaderOptions::default().with_block(block))
        .await
        .unwrap();
    reader.close().await.unwrap();
    reader.close().await.unwrap();
    assert!(reader.is_closed());
    closed("reader subscribe", reader.subscribe());

    let sink = stream
        .new_sink("g", SinkOptions::default().with_block(block))
        .await
        .unwrap();
    sink.close().await.unwrap();
    sink.close().await.unwrap();
    assert!(sink.is_closed());
    closed("sink subscribe", sink.subscribe());

    let options = NodeOptions::default()
        .with_keyspace(cx.keyspace())
        .with_worker_ttl(Duration::from_millis(600))
        .with_stop_timeout(Duration::from_secs(2));
    let node = Node::join(b.clone(), "pool", options).await.unwrap();
    let ticker = node
        .new_ticker("t", Duration::from_millis(50))
        .await
        .unwrap();
    ticker.close().await.unwrap();
    ticker.close().await.unwrap();
    node.close().await.unwrap();
    node.close().await.unwrap();
    assert!(node.is_closed());
    closed("dispatch", node.dispatch_job("k", "x").await);
}
