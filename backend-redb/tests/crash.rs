//! Crashes with real processes: a child process (this test binary, re-run with
//! `PULSE_REDB_CHILD` set) works on a file and reports on stdout every operation that
//! returned `Ok`; the parent SIGKILLs it at a random moment, reopens the file and checks
//! that every reported operation is there and that nothing is half-applied.
//!
//! `PULSE_REDB_CRASH_ROUNDS` sets the rounds of the workload test (default 6; the long
//! form is documented in the README).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use bytes::Bytes;
use pulse::{
    async_trait,
    backend::{EntryId, GroupOps, HashOps, StreamOps},
    error::BoxError,
    keys::Keyspace,
    pool::{Job, JobHandler, Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{SinkOptions, Start, Stream, StreamOptions},
};
use pulse_redb::{RedbBackend, RedbOptions};

const CHILD: &str = "PULSE_REDB_CHILD";

fn keyspace() -> Keyspace {
    Keyspace::new("crash").unwrap()
}

fn node_options() -> NodeOptions {
    NodeOptions::default()
        .with_keyspace(keyspace())
        .with_worker_ttl(Duration::from_millis(800))
        .with_retry_delay(Duration::from_millis(50))
}

/// Prints one report line the parent parses.
fn report(line: String) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@@ {line}");
    let _ = out.flush();
}

/// Starts the child in `mode` on `path`; its report lines arrive on the receiver.
fn spawn(mode: &str, path: &Path) -> (Child, mpsc::Receiver<String>) {
    spawn_with(mode, path, &[])
}

fn spawn_with(mode: &str, path: &Path, env: &[(&str, &str)]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--ignored"])
        .env(CHILD, format!("{mode}:{}", path.display()))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(report) = line.strip_prefix("@@ ") {
                if tx.send(report.to_owned()).is_err() {
                    return;
                }
            }
        }
    });
    (child, rx)
}

fn kill(child: &mut Child) {
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pulse-redb-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// A number from the clock, for the kill moments (no `rand` in the workspace).
fn jitter(max_ms: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos / 1000) % max_ms.max(1)
}

/// The child: runs when `PULSE_REDB_CHILD` says so (the parent runs it with `--ignored`).
#[test]
#[ignore = "run by the crash tests in a child process"]
fn child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (mode, path) = spec.split_once(':').unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let backend = RedbBackend::open(path, RedbOptions::default())
            .await
            .unwrap();
        match mode {
            "work" => work(Arc::new(backend)).await,
            "pool" => pool(Arc::new(backend)).await,
            "hold" => {
                report("open".into());
                std::future::pending::<()>().await;
            }
            _ => panic!("unknown mode {mode}"),
        }
    });
}

/// Adds events, writes map values, acknowledges sink events and dispatches jobs, all at
/// once, reporting each `Ok`.
async fn work(backend: Arc<RedbBackend>) {
    let b: Arc<dyn pulse::Backend> = backend;
    let stream = Stream::new(
        b.clone(),
        "s",
        StreamOptions::default().with_keyspace(keyspace()),
    )
    .unwrap();
    let sink = stream
        .new_sink("sink", SinkOptions::default().with_start(Start::Oldest))
        .await
        .unwrap();
    let adder = {
        let stream = stream.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let id = stream.add("e", format!("event {i}")).await.unwrap();
                report(format!("add {id}"));
            }
        })
    };
    let acker = tokio::spawn(async move {
        let mut rx = sink.subscribe().unwrap();
        while let Some(event) = rx.recv().await {
            sink.ack(&event).await.unwrap();
            report(format!("ack {}", event.id));
        }
    });
    let writer = {
        let b = b.clone();
        tokio::spawn(async move {
            let map = Map::join(b, "m", MapOptions::default().with_keyspace(keyspace()))
                .await
                .unwrap();
            // Write i is revision i, across rounds: resume after the stored revision.
            for i in map.revision().rev + 1.. {
                map.set(&format!("k{i}"), i.to_string()).await.unwrap();
                report(format!("map {i}"));
            }
        })
    };
    let dispatcher = tokio::spawn(async move {
        let node = Node::join(b, "pool", node_options()).await.unwrap();
        let _worker = node.add_worker(Starts).await.unwrap();
        for i in 0u64.. {
            let key = format!("job-{}-{i}", std::process::id());
            node.dispatch_job(&key, "payload").await.unwrap();
            report(format!("job {key}"));
        }
    });
    let _ = tokio::join!(adder, acker, writer, dispatcher);
}

/// A worker that reports every start.
struct Starts;

#[async_trait]
impl JobHandler for Starts {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        report(format!("start {} {}", job.key, std::process::id()));
        Ok(())
    }
}

/// Runs a pool node with one worker; dispatches `PULSE_REDB_JOBS` jobs when told to;
/// reports every start.
async fn pool(backend: Arc<RedbBackend>) {
    let node = Node::join(backend, "pool", node_options()).await.unwrap();
    let _worker = node.add_worker(Starts).await.unwrap();
    if let Ok(n) = std::env::var("PULSE_REDB_JOBS") {
        for i in 0..n.parse::<u32>().unwrap() {
            node.dispatch_job(&format!("job-{i}"), "payload")
                .await
                .unwrap();
            report(format!("dispatched job-{i}"));
        }
    }
    std::future::pending::<()>().await;
}

/// Everything each round's child reported.
#[derive(Default, Debug)]
struct Reported {
    added: BTreeSet<EntryId>,
    acked: BTreeSet<EntryId>,
    map: u64,
    jobs: BTreeSet<String>,
}

impl Reported {
    fn take(&mut self, line: &str) {
        let (what, arg) = line.split_once(' ').unwrap();
        match what {
            "add" => {
                self.added.insert(arg.parse().unwrap());
            }
            "ack" => {
                self.acked.insert(arg.parse().unwrap());
            }
            "map" => self.map = self.map.max(arg.parse().unwrap()),
            "job" => {
                self.jobs.insert(arg.to_owned());
            }
            "start" => {}
            _ => panic!("unknown report {line}"),
        }
    }
}

/// Checks the reopened file against what the children reported.
async fn check(path: &Path, reported: &Reported) {
    let backend = RedbBackend::open(path, RedbOptions::default())
        .await
        .unwrap();
    let ks = keyspace();
    let stream = ks.stream("s").unwrap();
    let entries: BTreeSet<EntryId> = backend
        .stream_range(&stream, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let missing: Vec<_> = reported.added.difference(&entries).collect();
    assert!(missing.is_empty(), "added and lost: {missing:?}");
    let pending: BTreeSet<EntryId> = backend
        .group_pending(&stream, "sink", None, EntryId::ZERO, 1 << 20)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    let back: Vec<_> = reported.acked.intersection(&pending).collect();
    assert!(back.is_empty(), "acknowledged and pending again: {back:?}");
    // A map write and its revision are one: revision r means k1..kr, nothing after.
    let hash = ks.map("m").unwrap().hash;
    let fields: BTreeMap<String, Bytes> = backend
        .hash_get_all(&hash)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let rev: u64 = fields
        .get("=rev")
        .map_or(0, |v| String::from_utf8_lossy(v).parse().unwrap());
    assert!(
        rev >= reported.map,
        "map at revision {rev}, {} reported",
        reported.map
    );
    for i in 1..=rev {
        assert_eq!(
            fields.get(&format!("k{i}")),
            Some(&Bytes::from(i.to_string())),
            "k{i} under revision {rev}"
        );
    }
    assert!(
        !fields.contains_key(&format!("k{}", rev + 1)),
        "a write without its revision"
    );
    // Every dispatched job has its record.
    let jobs = ks.pool_map("pool", "jobs").unwrap().hash;
    let records = backend.hash_get_all(&jobs).await.unwrap();
    let lost: Vec<_> = reported
        .jobs
        .iter()
        .filter(|k| !records.iter().any(|(f, v)| f == *k && !v.is_empty()))
        .collect();
    assert!(lost.is_empty(), "dispatched and lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_that_returned_ok_and_splits_nothing() {
    let rounds: u32 = std::env::var("PULSE_REDB_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let path = temp_file("work.redb");
    let mut reported = Reported::default();
    for round in 0..rounds {
        let (mut child, rx) = spawn("work", &path);
        // Let it get going (the first report), then kill it at a random moment.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the child works");
        reported.take(&first);
        let until = Instant::now() + Duration::from_millis(50 + jitter(400));
        while Instant::now() < until {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(5)) {
                reported.take(&line);
            }
        }
        kill(&mut child);
        // What it printed before it died counts too.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            reported.take(&line);
        }
        check(&path, &reported).await;
        eprintln!(
            "round {round}: {} adds, {} acks, map at {}, {} jobs — all there",
            reported.added.len(),
            reported.acked.len(),
            reported.map,
            reported.jobs.len()
        );
    }
    assert!(reported.added.len() > 10 && reported.acked.len() > 10 && reported.map > 10);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_only_process_died_runs_its_jobs_again_exactly_once() {
    let path = temp_file("pool.redb");
    let (mut first, rx) = spawn_with("pool", &path, &[("PULSE_REDB_JOBS", "5")]);
    let mut started = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while started.len() < 5 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the first process starts its jobs");
        if let Some(rest) = line.strip_prefix("start ") {
            started.insert(rest.split(' ').next().unwrap().to_owned());
        }
    }
    kill(&mut first);
    let (mut second, rx) = spawn("pool", &path);
    let mut again: BTreeMap<String, u32> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while again.len() < 5 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("jobs not restarted: {again:?}"));
        if let Some(rest) = line.strip_prefix("start ") {
            *again
                .entry(rest.split(' ').next().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    // A while longer: nothing starts twice.
    let quiet = Instant::now() + Duration::from_secs(2);
    while let Ok(line) = rx.recv_timeout(quiet.saturating_duration_since(Instant::now())) {
        if let Some(rest) = line.strip_prefix("start ") {
            *again
                .entry(rest.split(' ').next().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    kill(&mut second);
    assert_eq!(again.keys().cloned().collect::<BTreeSet<_>>(), started);
    assert!(again.values().all(|n| *n == 1), "each job once: {again:?}");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_gets_in_use_naming_the_file() {
    let path = temp_file("held.redb");
    let (mut holder, rx) = spawn("hold", &path);
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), "open");
    let e = RedbBackend::open(&path, RedbOptions::default())
        .await
        .unwrap_err();
    kill(&mut holder);
    match e {
        pulse::Error::InUse { path: named } => assert!(named.ends_with("held.redb"), "{named}"),
        other => panic!("expected InUse, got {other:?}"),
    }
    // Once the holder is gone, the file opens (no repair needed).
    RedbBackend::open(&path, RedbOptions::default())
        .await
        .unwrap();
    let _ = std::fs::remove_file(&path);
}
