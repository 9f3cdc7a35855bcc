//! The scenarios S1-S8, each measuring one Pulse figure on a backend; `rows` runs them
//! against their baselines and turns them into table rows.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::future::join_all;
use pulse::async_trait;
use pulse::{
    error::BoxError,
    keys::Keyspace,
    pool::{Job, JobHandler, Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{NewEvent, ReaderOptions, SinkOptions, Start, Stream, StreamOptions},
    Backend,
};

use crate::{
    stats::{fmt_dur, fmt_rate, rate, Samples},
    Size,
};

/// A Pulse figure: a rate (higher is better) or latency samples (lower is better).
#[derive(Clone)]
pub(crate) enum Figure {
    Rate(f64),
    Latency(Samples),
}

impl Figure {
    pub(crate) fn text(&self) -> String {
        match self {
            Figure::Rate(r) => fmt_rate(*r),
            Figure::Latency(s) => format!("p50 {}", fmt_dur(s.pct(0.5))),
        }
    }
    /// How many times better `self` is than `other`.
    pub(crate) fn times_better_than(&self, other: &Figure) -> f64 {
        match (self, other) {
            (Figure::Rate(a), Figure::Rate(b)) => a / b.max(1e-9),
            (Figure::Latency(a), Figure::Latency(b)) => {
                b.pct(0.5).as_secs_f64() / a.pct(0.5).as_secs_f64().max(1e-9)
            }
            _ => 0.0,
        }
    }
    /// The rate, for throughput figures (0 for latency figures).
    pub(crate) fn rate(&self) -> f64 {
        match self {
            Figure::Rate(r) => *r,
            Figure::Latency(_) => 0.0,
        }
    }
    pub(crate) fn latency(&self) -> Option<(Duration, Duration, Duration)> {
        match self {
            Figure::Latency(s) => Some((s.pct(0.5), s.pct(0.9), s.pct(0.99))),
            Figure::Rate(_) => None,
        }
    }
}

pub(crate) fn ks(tag: &str) -> Keyspace {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Keyspace::new(format!("bench-{tag}-{run:x}")).expect("prefix")
}

fn stream(b: &Arc<dyn Backend>, tag: &str) -> Stream {
    Stream::new(
        b.clone(),
        "s",
        StreamOptions::default().with_keyspace(ks(tag)),
    )
    .expect("stream")
}

pub(crate) async fn s1_append_many(b: &Arc<dyn Backend>, size: Size) -> Figure {
    let s = stream(b, "s1");
    let per = size.events / 8 / 100;
    let start = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    s.add_batch((0..100).map(|_| NewEvent::new("e", "payload")).collect())
                        .await
                        .expect("add");
                }
            })
        })
        .collect();
    join_all(tasks).await;
    let f = Figure::Rate(rate(per * 100 * 8, start.elapsed()));
    s.destroy().await.expect("destroy");
    f
}

pub(crate) async fn s2_append_one(b: &Arc<dyn Backend>, size: Size) -> Figure {
    let s = stream(b, "s2");
    let mut out = Samples::default();
    for _ in 0..size.samples {
        let t = Instant::now();
        s.add("e", "payload").await.expect("add");
        out.0.push(t.elapsed());
    }
    s.destroy().await.expect("destroy");
    Figure::Latency(out)
}

/// Runs `op(producer, round, i)` from 8 producer tasks, `per` rounds each of 100 calls in
/// flight (awaited together); returns how many calls ran.
pub(crate) async fn eight_by_hundred<F, Fut>(per: usize, op: F) -> usize
where
    F: Fn(usize, usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let tasks: Vec<_> = (0..8)
        .map(|p| {
            let op = op.clone();
            tokio::spawn(async move {
                for round in 0..per {
                    join_all((0..100).map(|i| op(p, round, i))).await;
                }
            })
        })
        .collect();
    for t in join_all(tasks).await {
        t.expect("producer");
    }
    per * 100 * 8
}

/// S1 with a dedup key on every event (each unique): 8 producers with 100 adds in flight.
pub(crate) async fn s1_dedup(b: &Arc<dyn Backend>, size: Size) -> Figure {
    let s = stream(b, "s1d");
    let start = Instant::now();
    let adder = s.clone();
    let n = eight_by_hundred(size.events / 8 / 100, move |p, round, i| {
        let s = adder.clone();
        async move {
            let event = NewEvent::new("e", "payload").with_dedup_key(format!("{p}-{round}-{i}"));
            s.add_event(event).await.expect("add");
        }
    })
    .await;
    let f = Figure::Rate(rate(n, start.elapsed()));
    s.destroy().await.expect("destroy");
    f
}

pub(crate) async fn s3_sink(b: &Arc<dyn Backend>, size: Size) -> Figure {
    s3_sink_with(b, size, SinkOptions::default()).await
}

/// S3 with the sink options given (the policy row).
pub(crate) async fn s3_sink_with(b: &Arc<dyn Backend>, size: Size, options: SinkOptions) -> Figure {
    let s = stream(b, "s3");
    for _ in 0..size.events / 1000 {
        s.add_batch((0..1000).map(|_| NewEvent::new("e", "payload")).collect())
            .await
            .expect("add");
    }
    let total = size.events / 1000 * 1000;
    let sink = s
        .new_sink("g", options.with_start(Start::Oldest).with_max_polled(100))
        .await
        .expect("sink");
    let start = Instant::now();
    let mut rx = sink.subscribe().expect("subscribe");
    let mut done = 0;
    while done < total {
        let mut batch = vec![rx.recv().await.expect("event")];
        while batch.len() < 100 {
            match rx.try_recv() {
                Some(e) => batch.push(e),
                None => break,
            }
        }
        done += batch.len();
        sink.ack_many(&batch).await.expect("ack");
    }
    let f = Figure::Rate(rate(total, start.elapsed()));
    sink.close().await.expect("close");
    s.destroy().await.expect("destroy");
    f
}

pub(crate) async fn s4_fan_out(b: &Arc<dyn Backend>, size: Size) -> Figure {
    let s = stream(b, "s4");
    for _ in 0..size.events / 1000 {
        s.add_batch((0..1000).map(|_| NewEvent::new("e", "payload")).collect())
            .await
            .expect("add");
    }
    let total = size.events / 1000 * 1000;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let r = s
            .new_reader(ReaderOptions::default().with_start(Start::Oldest))
            .await
            .expect("reader");
        let mut rx = r.subscribe().expect("subscribe");
        tasks.push(tokio::spawn(async move {
            for _ in 0..total {
                rx.recv().await.expect("event");
            }
            r.close().await.unwrap();
        }));
    }
    join_all(tasks).await;
    let f = Figure::Rate(rate(total * 4, start.elapsed()));
    s.destroy().await.expect("destroy");
    f
}

pub(crate) async fn s5_propagation(
    a: &Arc<dyn Backend>,
    other: &Arc<dyn Backend>,
    size: Size,
) -> Figure {
    let keyspace = ks("s5");
    let writer = Map::join(
        a.clone(),
        "m",
        MapOptions::default().with_keyspace(keyspace.clone()),
    )
    .await
    .expect("join");
    let reader = Map::join(
        other.clone(),
        "m",
        MapOptions::default().with_keyspace(keyspace),
    )
    .await
    .expect("join");
    let mut events = reader.subscribe().expect("subscribe");
    let mut out = Samples::default();
    for i in 0..size.samples {
        let t = Instant::now();
        writer.set("k", i.to_string()).await.expect("set");
        events.recv().await.expect("event");
        out.0.push(t.elapsed());
    }
    writer.destroy().await.expect("destroy");
    Figure::Latency(out)
}

pub(crate) async fn s5_writers(b: &Arc<dyn Backend>, size: Size) -> Figure {
    let m = Map::join(
        b.clone(),
        "m",
        MapOptions::default().with_keyspace(ks("s5w")),
    )
    .await
    .expect("join");
    let start = Instant::now();
    let writer = m.clone();
    let n = eight_by_hundred(size.events / 8 / 100, move |w, round, i| {
        let m = writer.clone();
        async move {
            m.set(&format!("k{w}-{round}-{i}"), "v").await.expect("set");
        }
    })
    .await;
    let f = Figure::Rate(rate(n, start.elapsed()));
    m.destroy().await.expect("destroy");
    f
}

/// S6: reads of a replica, and the same reads from a plain `HashMap<String, Bytes>` of the
/// same content (cloning each value as `Map::get` does), in alternating blocks so both
/// see the same machine state (a yardstick measured once, before, read 0.63-0.92x of
/// itself against the same code over three rounds). Returns (replica, plain) rates.
pub(crate) async fn s6_reads(b: &Arc<dyn Backend>, size: Size) -> (Figure, f64) {
    let m = Map::join(
        b.clone(),
        "m",
        MapOptions::default().with_keyspace(ks("s6")),
    )
    .await
    .expect("join");
    for chunk in (0..size.map_entries).collect::<Vec<_>>().chunks(500) {
        join_all(chunk.iter().map(|i| {
            let m = m.clone();
            async move { m.set(&format!("key-{i}"), "value").await.expect("set") }
        }))
        .await;
    }
    while m.len() < size.map_entries {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let plain: std::collections::HashMap<String, Bytes> = (0..size.map_entries)
        .map(|i| (format!("key-{i}"), Bytes::from(b"value".to_vec())))
        .collect();
    let keys: Vec<String> = (0..1024)
        .map(|i| format!("key-{}", i * 97 % size.map_entries))
        .collect();
    const BLOCKS: usize = 10;
    let per = size.reads / BLOCKS;
    let (mut replica_time, mut plain_time) = (Duration::ZERO, Duration::ZERO);
    let mut hits = 0usize;
    for _ in 0..BLOCKS {
        let start = Instant::now();
        for i in 0..per {
            hits +=
                usize::from(std::hint::black_box(plain.get(&keys[i & 1023]).cloned()).is_some());
        }
        plain_time += start.elapsed();
        let start = Instant::now();
        for i in 0..per {
            hits += usize::from(std::hint::black_box(m.get(&keys[i & 1023])).is_some());
        }
        replica_time += start.elapsed();
    }
    assert_eq!(hits, 2 * per * BLOCKS);
    m.destroy().await.expect("destroy");
    (
        Figure::Rate(rate(per * BLOCKS, replica_time)),
        rate(per * BLOCKS, plain_time),
    )
}

/// A handler that records when each job started.
pub(crate) struct Stamp(pub(crate) Arc<Mutex<Vec<(String, Instant)>>>);

#[async_trait]
impl JobHandler for Stamp {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        self.0
            .lock()
            .expect("lock")
            .push((job.key.clone(), Instant::now()));
        Ok(())
    }
    async fn stop(&self, _key: &str) -> Result<(), BoxError> {
        Ok(())
    }
}

pub(crate) async fn s7_dispatch_latency(b: &Arc<dyn Backend>, size: Size) -> Figure {
    let node = Node::join(
        b.clone(),
        "p",
        NodeOptions::default().with_keyspace(ks("s7")),
    )
    .await
    .expect("node");
    let stamps = Arc::new(Mutex::new(Vec::new()));
    node.add_worker(Stamp(stamps.clone()))
        .await
        .expect("worker");
    let mut out = Samples::default();
    for i in 0..size.samples.min(500) {
        let key = format!("job-{i}");
        let t = Instant::now();
        node.dispatch_job(&key, Bytes::new())
            .await
            .expect("dispatch");
        let started = stamps
            .lock()
            .expect("lock")
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, at)| *at)
            .expect("stamp");
        out.0.push(started.saturating_duration_since(t));
    }
    node.shutdown().await.expect("shutdown");
    Figure::Latency(out)
}

/// Dispatches about `n` jobs `<prefix>-<d>-<i>` (empty payloads) from 50 concurrent
/// dispatchers, each awaiting its dispatches in turn; returns how many it dispatched.
pub(crate) async fn dispatch_many(node: &Node, prefix: &str, n: usize) -> usize {
    let per = n / 50;
    let tasks: Vec<_> = (0..50)
        .map(|d| {
            let (node, prefix) = (node.clone(), prefix.to_owned());
            tokio::spawn(async move {
                for i in 0..per {
                    node.dispatch_job(&format!("{prefix}-{d}-{i}"), Bytes::new())
                        .await
                        .expect("dispatch");
                }
            })
        })
        .collect();
    join_all(tasks).await;
    per * 50
}

/// Dispatch throughput of `size.jobs` new jobs, after `running` jobs were dispatched (and
/// keep running) in the same pool.
pub(crate) async fn s8_dispatch_throughput(
    b: &Arc<dyn Backend>,
    size: Size,
    running: usize,
) -> Figure {
    let keyspace = ks("s8");
    let workers = Node::join(
        b.clone(),
        "p",
        NodeOptions::default().with_keyspace(keyspace.clone()),
    )
    .await
    .expect("node");
    let stamps = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..4 {
        workers
            .add_worker(Stamp(stamps.clone()))
            .await
            .expect("worker");
    }
    let client = Node::join(
        b.clone(),
        "p",
        NodeOptions::default()
            .with_keyspace(keyspace)
            .with_client_only(true),
    )
    .await
    .expect("client");
    dispatch_many(&client, "running", running).await;
    let start = Instant::now();
    let n = dispatch_many(&client, "job", size.jobs).await;
    let f = Figure::Rate(rate(n, start.elapsed()));
    client.close().await.expect("close");
    workers.shutdown().await.expect("shutdown");
    f
}
