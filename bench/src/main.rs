//! `pulse-bench`: measures Pulse on the Redis and memory backends against a raw `redis`
//! baseline doing the same work in the same run, and prints one table.
//!
//! ```text
//! cargo run --release -p pulse-bench            # full run (5 rounds, median per row):
//!                                               # writes docs/BENCHMARKS.md + chart
//! cargo run --release -p pulse-bench -- --quick # every scenario briefly (CI)
//! cargo run --release -p pulse-bench -- --only S3   # one scenario (e.g. under a profiler)
//! PULSE_BENCH_JOIN_SIZES=5000000 cargo run --release -p pulse-bench -- --only S9
//! ```
//! Uses `PULSE_REDIS_URL` when set, else starts a private `redis-server` (the idle-cost
//! rows S10 and S11 always use private ones: they count the server's commands). S1–S8 run
//! (and S14, request/reply) again on a Redis Cluster (`PULSE_REDIS_CLUSTER_URL`, else a private 3-master one),
//! against the `redis` crate's own cluster client doing the same work.
//! S1–S8 run in rounds; the scale rows (S8 with jobs running, S9–S11) and S12 (the cost of
//! a metrics recorder and info logs, last: it installs both for good) once per run, and
//! S13 (delayed events: adds with 100k pending, due-to-visible latency) between them.
//! S15 (the gateway: HTTP publish and SSE delivery against the library called directly)
//! runs once per run on the single server; S16 (the redb backend, durability on and off,
//! against the bare redb transaction rate) once per run.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod delayed;
mod gateway;
mod overhead;
mod raw;
mod redb;
mod rows;
mod rpc;
mod scale;
mod scenarios;
mod stats;

use std::sync::Arc;

use pulse::Backend;
use pulse_conformance::{redis_cluster::RedisCluster, redis_server::RedisServer};

/// Run sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Size {
    pub(crate) events: usize,
    pub(crate) samples: usize,
    pub(crate) map_entries: usize,
    pub(crate) reads: usize,
    pub(crate) jobs: usize,
}

/// Rounds of a full run.
const ROUNDS: usize = 5;

const USAGE: &str = "usage: pulse-bench [--quick] [--only S1..S16]
  (no flags)  full run: every scenario, writes docs/BENCHMARKS.md and docs/benchmarks.svg
  --quick     every scenario briefly, writes nothing (CI)
  --only SN   one scenario, writes nothing (e.g. under a profiler)";

/// Command-line flags.
#[derive(Debug, PartialEq)]
struct Args {
    quick: bool,
    only: Option<String>,
}

impl Args {
    /// `None` on `--help`, an unknown flag or a bad `--only` value, so a typo never starts
    /// a full run that rewrites the report.
    fn parse(mut args: impl Iterator<Item = String>) -> Option<Args> {
        let mut out = Args {
            quick: false,
            only: None,
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => out.quick = true,
                "--only" => {
                    let s = args.next()?;
                    let n: u8 = s.strip_prefix(['S', 's'])?.parse().ok()?;
                    if !(1..=16).contains(&n) {
                        return None;
                    }
                    out.only = Some(s);
                }
                _ => return None,
            }
        }
        Some(out)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(Args { quick, only }) = Args::parse(std::env::args().skip(1)) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let size = if quick {
        Size {
            events: 2_000,
            samples: 100,
            map_entries: 2_000,
            reads: 200_000,
            jobs: 200,
        }
    } else {
        Size {
            events: 100_000,
            samples: 2_000,
            map_entries: 100_000,
            reads: 10_000_000,
            jobs: 5_000,
        }
    };
    let server;
    let url = match std::env::var("PULSE_REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            server = RedisServer::start().expect("redis-server");
            server.url()
        }
    };
    let redis: Arc<dyn Backend> = Arc::new(
        pulse_redis::RedisBackend::connect(&url)
            .await
            .expect("connect"),
    );
    let memory: Arc<dyn Backend> = Arc::new(pulse_memory::MemoryBackend::new());
    // The full run repeats every scenario and reports, per row, the round with the median
    // ratio: each ratio still comes from one round (both sides measured back to back), and
    // one noisy round on this shared 2-core machine no longer decides a row.
    let rounds = if quick || only.is_some() { 1 } else { ROUNDS };
    let mut all = Vec::new();
    for round in 1..=rounds {
        if rounds > 1 {
            eprintln!("round {round} of {rounds}");
        }
        all.push(
            rows::run_all(
                &url,
                "redis",
                redis.clone(),
                Some(memory.clone()),
                size,
                only.as_deref(),
            )
            .await,
        );
    }
    let mut rows = stats::median_rows(all);
    // The same rows on a 3-master cluster, against the raw cluster client.
    let cluster;
    let cluster_url = match std::env::var("PULSE_REDIS_CLUSTER_URL") {
        Ok(url) => url,
        Err(_) => {
            cluster = RedisCluster::start(3, 0).expect("a private Redis Cluster");
            cluster.url()
        }
    };
    let on_cluster: Arc<dyn Backend> = Arc::new(
        pulse_redis::RedisBackend::connect(&cluster_url)
            .await
            .expect("connect to the cluster"),
    );
    let mut all = Vec::new();
    for round in 1..=rounds {
        if rounds > 1 {
            eprintln!("cluster round {round} of {rounds}");
        }
        all.push(
            rows::run_all(
                &cluster_url,
                "cluster",
                on_cluster.clone(),
                None,
                size,
                only.as_deref(),
            )
            .await,
        );
    }
    rows.extend(stats::median_rows(all));
    if only
        .as_deref()
        .is_none_or(|o| o.eq_ignore_ascii_case("S15"))
    {
        rows.extend(gateway::rows(&redis, "redis", size).await);
    }
    if only
        .as_deref()
        .is_none_or(|o| o.eq_ignore_ascii_case("S16"))
    {
        rows.extend(redb::rows(&memory, size).await);
    }
    rows.extend(scale::run_all(&url, redis.clone(), size, quick, only.as_deref()).await);
    if only
        .as_deref()
        .is_none_or(|o| o.eq_ignore_ascii_case("S13"))
    {
        rows.extend(delayed::rows(&url, &redis, size).await);
    }
    // Last: it installs a global recorder and subscriber for the rest of the process.
    if only
        .as_deref()
        .is_none_or(|o| o.eq_ignore_ascii_case("S12"))
    {
        rows.extend(overhead::s12(&url, size).await);
    }
    let table = stats::table(&rows);
    println!("{table}");
    let missed = rows.iter().filter(|r| r.met() == Some(false)).count();
    println!("{} rows, {} targets missed", rows.len(), missed);
    if !quick && only.is_none() {
        write_report(&table, &stats::svg(&rows));
    }
}

fn write_report(table: &str, svg: &str) {
    let version = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let doc = format!(
        "# Benchmarks\n\nGenerated by `cargo run --release -p pulse-bench` (full run). Ratios compare Pulse \
with a raw `redis` crate baseline doing the same work in the same run; absolute figures vary \
with the machine, ratios much less. Every scenario ran {ROUNDS} times; each row is the round \
with the median ratio.\n\n- run: {}\n- machine: {cpus} CPUs\n- {}\n- {}\n\n{table}\n\n![latency percentiles](benchmarks.svg)\n",
        version("date", "-u"),
        version("redis-server", "--version"),
        version("rustc", "--version"),
    );
    // Hand-written analysis lives beside the generated table and is appended to it.
    let notes = std::fs::read_to_string("docs/BENCHMARKS-notes.md").unwrap_or_default();
    std::fs::write("docs/BENCHMARKS.md", format!("{doc}\n{notes}"))
        .expect("write docs/BENCHMARKS.md");
    std::fs::write("docs/benchmarks.svg", svg).expect("write docs/benchmarks.svg");
    println!("wrote docs/BENCHMARKS.md and docs/benchmarks.svg");
}

#[cfg(test)]
mod tests {
    use super::Args;

    fn parse(args: &[&str]) -> Option<Args> {
        Args::parse(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn flags_parse_and_anything_else_is_refused() {
        assert_eq!(
            parse(&[]),
            Some(Args {
                quick: false,
                only: None
            })
        );
        assert_eq!(
            parse(&["--quick", "--only", "s3"]),
            Some(Args {
                quick: true,
                only: Some("s3".into())
            })
        );
        for bad in [&["--help"][..], &["--only"], &["--only", "S17"], &["-q"]] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
