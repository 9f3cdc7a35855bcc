//! Baselines: the same work done directly with the `redis` crate, in the same process run.

use std::time::{Duration, Instant};

use redis::{
    aio::{ConnectionLike, MultiplexedConnection},
    cluster_async::ClusterConnection,
    AsyncCommands, Cmd, RedisFuture, Value,
};

use crate::stats::Samples;

/// A raw connection: to one server, or (a `redis+cluster://` URL) the `redis` crate's
/// cluster connection with its default settings, as a user of the crate would have it.
#[derive(Clone)]
pub(crate) enum Conn {
    One(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::One(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::One(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The `redis://` URL of every seed of a cluster URL, or `None` for a single server.
pub(crate) fn seeds(url: &str) -> Option<Vec<String>> {
    let rest = url.strip_prefix("redis+cluster://")?;
    Some(
        rest.trim_end_matches('/')
            .split(',')
            .map(|seed| format!("redis://{seed}/"))
            .collect(),
    )
}

pub(crate) async fn conn(url: &str) -> Conn {
    if let Some(seeds) = seeds(url) {
        let client = redis::cluster::ClusterClient::new(seeds).expect("cluster url");
        return Conn::Cluster(client.get_async_connection().await.expect("connect"));
    }
    let client = redis::Client::open(url).expect("url");
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    Conn::One(
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("connect"),
    )
}

/// 8 producers, each pipelining batches of 100 XADDs. Returns (events, elapsed).
pub(crate) async fn append_many(url: &str, key: &str, total: usize) -> (usize, Duration) {
    let per = total / 8;
    let start = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (url, key) = (url.to_owned(), key.to_owned());
            tokio::spawn(async move {
                let mut c = conn(&url).await;
                for _ in 0..per / 100 {
                    let mut p = redis::pipe();
                    for _ in 0..100 {
                        p.cmd("XADD")
                            .arg(&key)
                            .arg("*")
                            .arg("n")
                            .arg("e")
                            .arg("p")
                            .arg("payload");
                    }
                    let _: Vec<Value> = p.query_async(&mut c).await.expect("xadd");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    (per / 100 * 100 * 8, start.elapsed())
}

/// `total` events' commands (`build` adds one event's, given its number) pipelined as in
/// [`append_many`]: 8 connections, 100 events per round trip.
pub(crate) async fn pipelined_many(
    url: &str,
    total: usize,
    build: fn(&mut redis::Pipeline, usize),
) -> (usize, Duration) {
    let per = total / 8;
    let start = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|producer| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut c = conn(&url).await;
                for round in 0..per / 100 {
                    let mut p = redis::pipe();
                    for i in 0..100 {
                        build(&mut p, (producer * per) + round * 100 + i);
                    }
                    let _: Vec<Value> = p.query_async(&mut c).await.expect("pipeline");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    (per / 100 * 100 * 8, start.elapsed())
}

/// Adds per second of the Redis backend's `stream_add_once` script called raw, one new
/// dedup key per event, pipelined as in [`append_many`] (the keys expire after 5 min, the
/// stream is deleted).
pub(crate) async fn dedup_adds(url: &str, total: usize) -> f64 {
    const SCRIPT: &str = include_str!("../../backend-redis/lua/stream_add_once.lua");
    let (n, d) = pipelined_many(url, total, |p, i| {
        p.cmd("EVAL")
            .arg(SCRIPT)
            .arg(2)
            .arg("{raw-s1d}:s")
            .arg(format!("{{raw-s1d}}:d:{i}"))
            .arg(300_000)
            .arg("1")
            .arg("")
            .arg("")
            .arg("")
            .arg("n")
            .arg("e")
            .arg("p")
            .arg("payload");
    })
    .await;
    delete(url, &["{raw-s1d}:s"]).await;
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Deletes `keys` (a baseline's leftovers).
pub(crate) async fn delete(url: &str, keys: &[&str]) {
    let mut c = conn(url).await;
    for key in keys {
        let _: i64 = c.del(*key).await.expect("del");
    }
}

/// One awaited XADD at a time.
pub(crate) async fn append_one(url: &str, key: &str, n: usize) -> Samples {
    let mut c = conn(url).await;
    let mut s = Samples::default();
    for _ in 0..n {
        let t = Instant::now();
        let _: String = redis::cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("n")
            .arg("e")
            .arg("p")
            .arg("payload")
            .query_async(&mut c)
            .await
            .expect("xadd");
        s.0.push(t.elapsed());
    }
    s
}

/// XREADGROUP COUNT 100 loop, each XACK pipelined with the next read.
pub(crate) async fn consume_ack(url: &str, key: &str, total: usize) -> Duration {
    let mut c = conn(url).await;
    let _: Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await
        .expect("group");
    let start = Instant::now();
    let mut done = 0;
    let mut to_ack: Vec<String> = Vec::new();
    while done < total {
        let mut p = redis::pipe();
        if !to_ack.is_empty() {
            p.cmd("XACK").arg(key).arg("g").arg(&to_ack).ignore();
        }
        p.cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(100)
            .arg("STREAMS")
            .arg(key)
            .arg(">");
        let (reply,): (redis::streams::StreamReadReply,) =
            p.query_async(&mut c).await.expect("read");
        to_ack = reply
            .keys
            .iter()
            .flat_map(|k| k.ids.iter().map(|i| i.id.clone()))
            .collect();
        done += to_ack.len();
    }
    if !to_ack.is_empty() {
        let _: i64 = c.xack(key, "g", &to_ack).await.expect("ack");
    }
    start.elapsed()
}

/// Four XREAD loops over the same stream; every loop reads every event.
pub(crate) async fn fan_out(url: &str, key: &str, total: usize) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (url, key) = (url.to_owned(), key.to_owned());
            tokio::spawn(async move {
                let mut c = conn(&url).await;
                let mut cursor = "0".to_owned();
                let mut got = 0;
                while got < total {
                    let reply: redis::streams::StreamReadReply = c
                        .xread_options(
                            &[&key],
                            &[&cursor],
                            &redis::streams::StreamReadOptions::default().count(1000),
                        )
                        .await
                        .expect("xread");
                    for k in reply.keys {
                        got += k.ids.len();
                        if let Some(last) = k.ids.last() {
                            cursor = last.id.clone();
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    start.elapsed()
}

/// PUBLISH to a subscriber on another connection: publish-to-receive latency (on a
/// cluster, the subscriber is on the first seed).
pub(crate) async fn publish_latency(url: &str, channel: &str, n: usize) -> Samples {
    let first = seeds(url).and_then(|s| s.into_iter().next());
    let client = redis::Client::open(first.as_deref().unwrap_or(url)).expect("url");
    let (mut sink, mut stream) = client.get_async_pubsub().await.expect("pubsub").split();
    sink.subscribe(channel).await.expect("subscribe");
    let mut c = conn(url).await;
    let mut s = Samples::default();
    use futures_util::StreamExt;
    for i in 0..n {
        let t = Instant::now();
        let _: i64 = c.publish(channel, i.to_string()).await.expect("publish");
        let _ = stream.next().await;
        s.0.push(t.elapsed());
    }
    s
}

/// The equivalent of a map write (HSET + revision + PUBLISH) as EVALSHA, 8 writers
/// pipelining 100 at a time.
pub(crate) async fn evalsha_writes(url: &str, hash: &str, total: usize) -> Duration {
    let script = redis::Script::new("redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]); local r = redis.call('HINCRBY', KEYS[1], '=rev', 1); redis.call('PUBLISH', KEYS[1] .. ':n', r); return r");
    let mut c = conn(url).await;
    script
        .prepare_invoke()
        .key(hash)
        .arg("k")
        .arg("v")
        .invoke_async::<i64>(&mut c)
        .await
        .expect("load");
    let sha = script.get_hash().to_owned();
    let per = total / 8;
    let start = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (url, hash, sha) = (url.to_owned(), hash.to_owned(), sha.clone());
            tokio::spawn(async move {
                let mut c = conn(&url).await;
                for b in 0..per / 100 {
                    let mut p = redis::pipe();
                    for i in 0..100 {
                        p.cmd("EVALSHA")
                            .arg(&sha)
                            .arg(1)
                            .arg(&hash)
                            .arg(format!("k{w}-{b}-{i}"))
                            .arg("v");
                    }
                    let _: Vec<Value> = p.query_async(&mut c).await.expect("evalsha");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    start.elapsed()
}
