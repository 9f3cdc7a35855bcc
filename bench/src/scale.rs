//! The scale rows of issue 14: how cost grows as the work grows. Each runs once per run
//! (not per round: they take seconds each and compare sizes within one run).
//!
//! - S8 with jobs already running: dispatch rate against the same run's empty-pool rate
//!   (median of three back-to-back pairs).
//! - S9 rmap join per map size: join time against one raw `HGETALL` of the same hash (which
//!   the join no longer issues: it reads in bounded steps), and replica memory per entry.
//! - S10 idle commands per second of a map, a reader and a sink (default options), each on
//!   its own private `redis-server` (its `total_commands_processed` counts nothing else),
//!   measured side by side over one window.
//! - S11 an idle pool of 1,000 and 10,000 running jobs (worker TTL 2 s), on a private
//!   server: commands per second and this process's CPU; the target is a per-job CPU cost
//!   that stays flat.
//!
//! S10 and S11 need `redis-server` on `PATH` (even with `PULSE_REDIS_URL`); without it
//! they are left out with a message.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use pulse::{
    pool::{Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{ReaderOptions, SinkOptions, Stream, StreamOptions},
    Backend,
};

use pulse_conformance::redis_server::RedisServer;

use crate::{
    raw,
    scenarios::{dispatch_many, ks, s8_dispatch_throughput, Stamp},
    stats::{fmt_dur, fmt_rate, Row, Target},
    Size,
};

fn row(scenario: String, figure: String, baseline: String, ratio: f64, target: Target) -> Row {
    Row {
        scenario,
        backend: "redis",
        figure,
        baseline,
        ratio: Some(ratio),
        target,
        latency: None,
    }
}

/// Every scale row wanted (`only` as in [`crate::rows::run_all`]).
pub(crate) async fn run_all(
    url: &str,
    redis: Arc<dyn Backend>,
    size: Size,
    quick: bool,
    only: Option<&str>,
) -> Vec<Row> {
    let want = |s: &str| only.is_none_or(|o| o.eq_ignore_ascii_case(s));
    let mut rows = Vec::new();
    if want("S8") {
        let running = if quick { 1_000 } else { 10_000 };
        // One pair is noisy on this machine (0.65x to 1.37x over three runs): the median
        // of three back-to-back pairs.
        let mut pairs = Vec::new();
        for _ in 0..3 {
            let empty = s8_dispatch_throughput(&redis, size, 0).await.rate();
            let loaded = s8_dispatch_throughput(&redis, size, running).await.rate();
            pairs.push((loaded / empty, empty, loaded));
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (_, empty, loaded) = pairs[1];
        rows.push(row(
            format!("S8 pool, 50 dispatchers, {running} jobs already running"),
            fmt_rate(loaded),
            format!("empty pool {}", fmt_rate(empty)),
            loaded / empty,
            Target::AtLeast(0.8),
        ));
    }
    if want("S9") {
        let sizes: Vec<usize> = match std::env::var("PULSE_BENCH_JOIN_SIZES") {
            Ok(v) => v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
            Err(_) if quick => vec![size.map_entries],
            Err(_) => vec![100_000, 1_000_000],
        };
        for n in sizes {
            rows.push(s9_join(url, &redis, n).await);
        }
    }
    if want("S10") {
        let window = if quick {
            Duration::from_secs(11)
        } else {
            Duration::from_secs(31)
        };
        rows.extend(s10_idle(window).await);
    }
    if want("S11") {
        let window = if quick {
            Duration::from_secs(4)
        } else {
            Duration::from_secs(20)
        };
        let sizes: &[usize] = if quick {
            &[100, 1_000]
        } else {
            &[1_000, 10_000]
        };
        let mut per_job = Vec::new();
        for &jobs in sizes {
            let Some((commands, cpu)) = s11_idle_pool(jobs, window).await else {
                break;
            };
            per_job.push(cpu / jobs as f64);
            let (first, last) = (per_job[0], *per_job.last().expect("one"));
            rows.push(row(
                format!("S11 idle pool, {jobs} running jobs, worker TTL 2 s"),
                format!("{commands:.1} commands/s, {:.1}% CPU", cpu * 100.0),
                format!("CPU per job at {} jobs", sizes[0]),
                last / first.max(1e-12),
                Target::AtMost(1.2),
            ));
        }
    }
    rows
}

/// Resident memory of this process, in bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// CPU time (user + system) this process has used (Linux; zero elsewhere).
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which is in parentheses and may hold spaces).
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // Linux reports in USER_HZ, 100 per second on every common configuration.
    Duration::from_millis(ticks * 10)
}

async fn commands_processed(conn: &mut crate::raw::Conn) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_commands_processed")
}

/// Commands per second the server processed during `window`, not counting our `INFO`.
async fn idle_rate(url: &str, window: Duration) -> f64 {
    let mut conn = raw::conn(url).await;
    let before = commands_processed(&mut conn).await;
    tokio::time::sleep(window).await;
    let after = commands_processed(&mut conn).await;
    after.saturating_sub(before + 1) as f64 / window.as_secs_f64()
}

async fn s9_join(url: &str, redis: &Arc<dyn Backend>, n: usize) -> Row {
    let keyspace = ks("s9");
    let hash = keyspace.map("big").expect("name").hash;
    let mut conn = raw::conn(url).await;
    let _: () = redis::cmd("HSET")
        .arg(&hash)
        .arg("=epoch")
        .arg(9)
        .arg("=rev")
        .arg(n)
        .arg("=kind")
        .arg("set")
        .query_async(&mut conn)
        .await
        .expect("HSET");
    for start in (0..n).step_by(5_000) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&hash);
        for i in start..(start + 5_000).min(n) {
            cmd.arg(format!("key-{i:08}"))
                .arg("value-of-a-typical-size");
        }
        let _: () = cmd.query_async(&mut conn).await.expect("HSET");
    }
    let t = Instant::now();
    let all: redis::Value = redis::cmd("HGETALL")
        .arg(&hash)
        .query_async(&mut conn)
        .await
        .expect("HGETALL");
    let hgetall = t.elapsed();
    drop(all);
    let before = rss();
    let t = Instant::now();
    let map = Map::join(
        redis.clone(),
        "big",
        MapOptions::default().with_keyspace(keyspace),
    )
    .await
    .expect("join");
    let join = t.elapsed();
    assert_eq!(map.len(), n);
    let per_entry = rss().saturating_sub(before) / n as u64;
    map.destroy().await.expect("destroy");
    row(
        format!("S9 rmap join, {n}-entry map"),
        format!("{}, ~{per_entry} B/entry in the replica", fmt_dur(join)),
        format!("one HGETALL {}", fmt_dur(hgetall)),
        join.as_secs_f64() / hgetall.as_secs_f64(),
        Target::AtMost(4.0),
    )
}

/// A private server and a backend on it; `None` (with a message) without `redis-server`.
async fn private(what: &str) -> Option<(RedisServer, Arc<dyn Backend>)> {
    let server = match RedisServer::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{what} left out: no private redis-server ({e})");
            return None;
        }
    };
    let backend = pulse_redis::RedisBackend::connect(&server.url())
        .await
        .expect("connect");
    Some((server, Arc::new(backend)))
}

async fn s10_idle(window: Duration) -> Vec<Row> {
    let (Some(m), Some(r), Some(s)) = (
        private("S10").await,
        private("S10").await,
        private("S10").await,
    ) else {
        return Vec::new();
    };
    let mut maps = Vec::new();
    for i in 0..10 {
        let map = Map::join(m.1.clone(), &format!("idle-{i}"), MapOptions::default())
            .await
            .expect("join");
        map.set("k", "v").await.expect("set");
        maps.push(map);
    }
    let stream = |b: &Arc<dyn Backend>| {
        Stream::new(b.clone(), "idle", StreamOptions::default()).expect("stream")
    };
    let reader = stream(&r.1)
        .new_reader(ReaderOptions::default())
        .await
        .expect("reader");
    let _from_reader = reader.subscribe().expect("subscribe");
    let sink = stream(&s.1)
        .new_sink("idle", SinkOptions::default())
        .await
        .expect("sink");
    let _from_sink = sink.subscribe().expect("subscribe");
    // Past the set-up bursts (first reads, first reclaim pass).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let urls = [m.0.url(), r.0.url(), s.0.url()];
    let (map_rate, reader_rate, sink_rate) = tokio::join!(
        idle_rate(&urls[0], window),
        idle_rate(&urls[1], window),
        idle_rate(&urls[2], window),
    );
    let mut rows = Vec::new();
    // Budgets: a map probes once per 5 s check and the backend's pub/sub connection, shared
    // by every map, is PINGed every 5 s; a reader's blocking read returns every 5 s, and
    // its mover of delayed events subscribes through that same shared connection (its
    // PING, 0.2/s, is paid once per backend however many maps, readers and sinks use it)
    // and looks for missed delayed events once per 120 s (a 3-command script); a sink
    // adds its liveness renewal and an idle reclaim pass (lease script + XPENDING) per
    // 10 s, within issue 14's ~1 command/s, plus the same shared PING. Commands run inside
    // our scripts count, as the server counts them.
    for (what, rate, budget) in [
        ("10 maps", map_rate, 10.0 * 0.2 + 0.2),
        ("reader", reader_rate, 0.25 + 0.2),
        ("sink", sink_rate, 1.0 + 0.2),
    ] {
        rows.push(row(
            format!("S10 idle {what}, default options"),
            format!("{rate:.2} commands/s"),
            format!("budget {budget:.2}/s"),
            rate / budget,
            Target::AtMost(1.0),
        ));
    }
    for map in maps {
        map.close().await.unwrap();
    }
    reader.close().await.unwrap();
    sink.close().await.expect("close");
    rows
}

/// Commands per second and CPU share (of one core) of an idle pool running `jobs` jobs.
async fn s11_idle_pool(jobs: usize, window: Duration) -> Option<(f64, f64)> {
    let (server, redis) = private("S11").await?;
    let url = server.url();
    let options = NodeOptions::default().with_worker_ttl(Duration::from_secs(2));
    let node = Node::join(redis.clone(), "p", options).await.expect("node");
    node.add_worker(Stamp(Arc::default()))
        .await
        .expect("worker");
    dispatch_many(&node, "job", jobs).await;
    // Let the dispatch burst settle before measuring the idle cost.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_time();
    let t = Instant::now();
    let commands = idle_rate(&url, window).await;
    let share = (cpu_time() - cpu).as_secs_f64() / t.elapsed().as_secs_f64();
    node.shutdown().await.expect("shutdown");
    Some((commands, share))
}
