//! `pulse serve --demo`: something to look at. Seeds the store with a pool (`orders`, two
//! workers, six jobs), a stream (`payments`, a sink `billing` with one dead letter and an
//! event a second while serving) and a map (`config`), all in the serving process — so it
//! works on `memory:`, where nothing else could put data in. The workers and the producer
//! live as long as the returned [`Demo`].

use std::{sync::Arc, time::Duration};

use pulse::{
    error::BoxError,
    keys::Keyspace,
    pool::{Job, JobHandler, Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{Sink, SinkOptions, Start, Stream, StreamOptions},
    Backend, Result,
};

/// The demo's workers, sink, map and producer; dropping it stops the producer.
#[derive(Debug)]
pub struct Demo {
    _node: Node,
    _sink: Sink,
    _map: Map,
    producer: tokio::task::JoinHandle<()>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.producer.abort();
    }
}

struct Idle;

#[pulse::async_trait]
impl JobHandler for Idle {
    async fn start(&self, _job: &Job) -> std::result::Result<(), BoxError> {
        Ok(())
    }
}

/// Seeds the demo data under `keyspace`.
pub async fn seed(backend: Arc<dyn Backend>, keyspace: Keyspace) -> Result<Demo> {
    let node = Node::join(
        backend.clone(),
        "orders",
        NodeOptions::default().with_keyspace(keyspace.clone()),
    )
    .await?;
    node.add_worker(Idle).await?;
    node.add_worker(Idle).await?;
    for i in 1..=6 {
        node.dispatch_job(&format!("order-{i}"), format!("order {i}"))
            .await?;
    }
    let stream = Stream::new(
        backend.clone(),
        "payments",
        StreamOptions::default()
            .with_keyspace(keyspace.clone())
            .with_max_len(10_000),
    )?;
    let sink = stream
        .new_sink(
            "billing",
            SinkOptions::default()
                .with_start(Start::Oldest)
                .with_max_deliveries(1),
        )
        .await?;
    let mut rx = sink.subscribe()?;
    stream.add("payment.failed", "card declined").await?;
    if let Some(event) = rx.recv().await {
        sink.fail(&event, "no such card").await?;
    }
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        for i in 0u64.. {
            tick.tick().await;
            let _ = stream.add("payment.done", format!("payment {i}")).await;
        }
    });
    let map = Map::join(
        backend,
        "config",
        MapOptions::default().with_keyspace(keyspace),
    )
    .await?;
    map.set("mode", "fast").await?;
    map.set("region", "eu-west").await?;
    Ok(Demo {
        _node: node,
        _sink: sink,
        _map: map,
        producer,
    })
}
