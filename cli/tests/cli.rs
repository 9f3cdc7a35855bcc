//! The `pulse` binary run as a subprocess: against `memory:` (what one invocation can show:
//! help, JSON shapes, exit codes, messages) and against a private `redis-server` shared with
//! the test, which sets up streams, sinks, maps and pools through the library and checks
//! what the command prints and does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{process::Command, sync::Arc, time::Duration};

use pulse::{
    error::BoxError,
    keys::Keyspace,
    pool::{Job, JobHandler, Node, NodeOptions},
    streaming::{NewEvent, SinkOptions, Start, Stream, StreamOptions},
    Backend,
};
use pulse_conformance::redis_server::private_server;
use serde_json::Value;

/// Runs `pulse` with `args`; (exit code, stdout, stderr).
fn pulse(backend: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .arg("--backend")
        .arg(backend)
        .args(["--keyspace", "clitest"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `pulse --json …` that must succeed, parsed.
fn json(backend: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = pulse(backend, &all);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// `pulse --json …` printing JSON lines.
fn json_lines(backend: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = pulse(backend, &all);
    assert_eq!(code, 0, "{args:?}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `pulse restore <target>` with `input` on its standard input; (exit code, stderr).
fn restore_into(backend: &str, target: &str, input: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args([
            "--backend",
            backend,
            "--keyspace",
            "clitest",
            "restore",
            target,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_json_shapes_and_exit_codes_on_memory() {
    let (code, out, _) = pulse("memory:", &["--help"]);
    assert_eq!(code, 0);
    for cmd in ["stream", "sink", "map", "pool", "request"] {
        assert!(out.contains(cmd), "{cmd} in --help: {out}");
    }
    let info = json("memory:", &["stream", "info", "orders"]);
    assert_eq!(info["length"], 0);
    assert_eq!(info["sinks"], Value::Array(vec![]));
    let added = json(
        "memory:",
        &["stream", "add", "orders", "created", "héllo wörld"],
    );
    assert_eq!(added["added"], true);
    assert!(added["id"].as_str().unwrap().contains('-'));
    let b64 = json(
        "memory:",
        &["stream", "add", "orders", "raw", "AP8=", "--base64"],
    );
    assert_eq!(b64["added"], true);
    // Bad input: exit 2, a message that names the problem.
    for (args, says) in [
        (
            vec!["stream", "tail", "orders", "--from", "yesterday"],
            "not an event ID",
        ),
        (vec!["stream", "info", "bad name"], "invalid stream name"),
        (
            vec!["stream", "add", "s", "n", "p", "--header", "novalue"],
            "NAME=VALUE",
        ),
        (
            vec!["stream", "add", "s", "n", "!!", "--base64"],
            "not base64",
        ),
        (
            vec!["stream", "add", "s", "n", "p", "--delay", "soon"],
            "not a duration",
        ),
        (vec!["stream", "tail", "s", "--subject", "a.>.b"], "subject"),
    ] {
        let (code, _, err) = pulse("memory:", &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // Not found: exit 3.
    let (code, _, err) = pulse("memory:", &["map", "get", "cfg", "missing"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("missing"));
    // An unknown backend: exit 2, the URL's secret never printed.
    let (code, _, err) = pulse("postgres://user:hunter2@db/x", &["stream", "info", "s"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("postgres") && !err.contains("hunter2"),
        "{err}"
    );
}

struct Echo;

#[pulse::async_trait]
impl JobHandler for Echo {
    async fn start(&self, _job: &Job) -> Result<(), BoxError> {
        Ok(())
    }
    async fn call(&self, call: &pulse::pool::JobCall) -> Result<bytes::Bytes, BoxError> {
        Ok(call.payload.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_sinks_maps_pools_and_requests_on_redis() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let url = server.url();
    let backend: Arc<dyn Backend> = pulse_connect::open(&url).await.unwrap();
    let ks = Keyspace::new("clitest").unwrap();
    let orders = Stream::new(
        backend.clone(),
        "orders",
        StreamOptions::default().with_keyspace(ks.clone()),
    )
    .unwrap();
    for (i, subject) in ["orders.eu.created", "orders.us.created", "orders.eu.paid"]
        .iter()
        .enumerate()
    {
        orders
            .add_event(NewEvent::new("e", format!("p{i}")).with_topic(*subject))
            .await
            .unwrap();
    }
    let run = |args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            json(&url, &args)
        })
    };
    let run_lines = |args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            json_lines(&url, &args)
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();

    // tail, with a subject pattern and from a position.
    let eu = run_lines(s(&["stream", "tail", "orders", "--subject", "orders.eu.*"]))
        .await
        .unwrap();
    let payloads: Vec<&str> = eu.iter().map(|e| e["payload"].as_str().unwrap()).collect();
    assert_eq!(payloads, ["p0", "p2"]);
    let first = eu[0]["id"].as_str().unwrap().to_owned();
    let after = run_lines(s(&["stream", "tail", "orders", "--from", &first]))
        .await
        .unwrap();
    assert_eq!(after.len(), 2, "{after:?}");

    // A sink with an unacknowledged event: pending, then acknowledged from the shell.
    let sink = orders
        .new_sink("billing", SinkOptions::default().with_start(Start::Oldest))
        .await
        .unwrap();
    let mut rx = sink.subscribe().unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let pending = run(s(&["sink", "pending", "orders", "billing"]))
        .await
        .unwrap();
    let pending = pending.as_array().unwrap();
    assert!(pending
        .iter()
        .any(|p| p["id"] == got.id.to_string() && p["deliveries"] == 1));
    let sinks = run(s(&["sink", "ls", "orders"])).await.unwrap();
    assert_eq!(sinks[0]["name"], "billing");
    let acked = run(s(&[
        "sink",
        "ack",
        "orders",
        "billing",
        &got.id.to_string(),
    ]))
    .await
    .unwrap();
    assert_eq!(acked["acknowledged"], 1);
    let (code, _, err) = {
        let url = url.clone();
        let id = got.id.to_string();
        tokio::task::spawn_blocking(move || pulse(&url, &["sink", "ack", "orders", "billing", &id]))
            .await
            .unwrap()
    };
    assert_eq!(code, 3, "acknowledging twice: {err}");
    sink.close().await.unwrap();
    let info = run(s(&["stream", "info", "orders"])).await.unwrap();
    assert_eq!(info["length"], 3);
    assert_eq!(info["sinks"][0]["name"], "billing");

    // Dead letters: a poison event failed once by a strict sink, listed, requeued, purged.
    let strict = orders
        .new_sink(
            "strict",
            SinkOptions::default()
                .with_start(Start::Oldest)
                .with_max_deliveries(1),
        )
        .await
        .unwrap();
    let mut poison = strict.subscribe().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), poison.recv())
        .await
        .unwrap()
        .unwrap();
    strict.fail(&first, "cannot bill this").await.unwrap();
    let letters = run(s(&["stream", "dead-letters", "ls", "orders", "strict"]))
        .await
        .unwrap();
    assert_eq!(letters[0]["original_id"], first.id.to_string());
    assert_eq!(letters[0]["error"], "cannot bill this");
    let letter = letters[0]["id"].as_str().unwrap().to_owned();
    let requeued = run(s(&[
        "stream",
        "dead-letters",
        "requeue",
        "orders",
        "strict",
        &letter,
    ]))
    .await
    .unwrap();
    assert!(requeued["id"].as_str().is_some());
    let purged = run(s(&[
        "stream",
        "dead-letters",
        "purge",
        "orders",
        "strict",
        "--all",
    ]))
    .await
    .unwrap();
    assert_eq!(purged["all"], true);
    assert!(
        run(s(&["stream", "dead-letters", "ls", "orders", "strict"]))
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty()
    );
    strict.close().await.unwrap();
    // Adds with a dedup key (the second is the first's ID) and a delay.
    let once = run(s(&[
        "stream",
        "add",
        "orders",
        "e",
        "x",
        "--dedup-key",
        "k1",
    ]))
    .await
    .unwrap();
    let twice = run(s(&[
        "stream",
        "add",
        "orders",
        "e",
        "x",
        "--dedup-key",
        "k1",
    ]))
    .await
    .unwrap();
    assert_eq!(
        (once["added"].clone(), twice["added"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    assert_eq!(once["id"], twice["id"]);
    let later = run(s(&["stream", "add", "orders", "e", "x", "--delay", "1h"]))
        .await
        .unwrap();
    assert!(later["delayed_id"].as_str().is_some());
    let info = run(s(&["stream", "info", "orders"])).await.unwrap();
    assert_eq!(info["delayed"], 1);

    // Dump and restore: the same entries (IDs, subjects, headers, bytes) in another stream;
    // restoring again is refused (the IDs are not above the last one).
    orders
        .add_event(NewEvent::new("bin", vec![0u8, 255, 1]).with_header("h", "v"))
        .await
        .unwrap();
    let dumped = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || pulse(&url, &["dump", "orders"]))
            .await
            .unwrap()
    };
    assert_eq!(dumped.0, 0, "{}", dumped.2);
    assert!(dumped.1.lines().count() >= 4);
    let restore = |target: &'static str, input: String| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || restore_into(&url, target, &input))
    };
    assert_eq!(restore("copy", dumped.1.clone()).await.unwrap().0, 0);
    let copied = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || pulse(&url, &["dump", "copy"]))
            .await
            .unwrap()
    };
    assert_eq!(copied.1, dumped.1, "the copy is the same entries");
    let (code, err) = restore("copy", dumped.1.clone()).await.unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 1") && err.contains("greater"), "{err}");
    let (code, err) = restore("copy2", "{\"id\": \"x\"}\n".to_owned())
        .await
        .unwrap();
    assert_eq!(code, 2, "{err}");
    // The streams of the keyspace: the dead letters and sinks kept beside `orders` are not
    // streams of their own; the failed restore created nothing.
    let streams = run(s(&["stream", "ls"])).await.unwrap();
    let names: Vec<&str> = streams
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["copy", "orders"], "{streams}");
    let info = run(s(&["stream", "info", "orders"])).await.unwrap();
    assert_eq!(streams[1]["length"], info["length"]);
    assert_eq!(streams[1]["last_id"], info["last_id"]);
    let one = run(s(&["stream", "ls", "--limit", "1"])).await.unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);

    // Maps: set from the shell, seen by the library; ls and delete.
    run(s(&["map", "set", "cfg", "color", "blue"]))
        .await
        .unwrap();
    let m = pulse::rmap::Map::join(
        backend.clone(),
        "cfg",
        pulse::rmap::MapOptions::default().with_keyspace(ks.clone()),
    )
    .await
    .unwrap();
    assert_eq!(m.get("color").as_deref(), Some(&b"blue"[..]));
    let all = run(s(&["map", "get", "cfg"])).await.unwrap();
    assert_eq!(all[0]["key"], "color");
    assert_eq!(all[0]["value"], "blue");
    let maps = run(s(&["map", "ls"])).await.unwrap();
    assert_eq!(maps, serde_json::json!([{"name": "cfg", "keys": 1}]));
    run(s(&["map", "del", "cfg", "color"])).await.unwrap();
    m.close().await.unwrap();

    // Pools: a worker in this process; dispatch, inspect, call and stop from the shell.
    let node = Node::join(
        backend.clone(),
        "feeds",
        NodeOptions::default().with_keyspace(ks.clone()),
    )
    .await
    .unwrap();
    let worker = node.add_worker(Echo).await.unwrap();
    run(s(&["pool", "dispatch", "feeds", "sensor-1", "cfg"]))
        .await
        .unwrap();
    let jobs = run(s(&["pool", "jobs", "feeds"])).await.unwrap();
    assert_eq!(jobs[0]["key"], "sensor-1");
    assert_eq!(jobs[0]["status"]["state"], "running");
    assert_eq!(jobs[0]["status"]["worker"], worker.id());
    let pools = run(s(&["pool", "ls"])).await.unwrap();
    assert_eq!(
        pools,
        serde_json::json!([{"name": "feeds", "workers": 1, "jobs": 1}])
    );
    let workers = run(s(&["pool", "workers", "feeds"])).await.unwrap();
    assert_eq!(workers[0]["jobs"], 1);
    assert_eq!(workers[0]["alive"], true);
    let answer = run(s(&["pool", "call", "feeds", "sensor-1", "ping"]))
        .await
        .unwrap();
    assert_eq!(answer["payload"], "ping");
    run(s(&["pool", "stop", "feeds", "sensor-1"]))
        .await
        .unwrap();
    node.close().await.unwrap();

    // A request answered by a responder in this process.
    let svc = Stream::new(
        backend.clone(),
        "prices",
        StreamOptions::default().with_keyspace(ks.clone()),
    )
    .unwrap();
    let responder = svc
        .new_sink("pricer", SinkOptions::default())
        .await
        .unwrap();
    let mut requests = responder.subscribe().unwrap();
    let answering = {
        let responder = responder.clone();
        tokio::spawn(async move {
            let r = requests.recv().await.unwrap();
            responder.reply(&r, "3 EUR").await.unwrap();
        })
    };
    let reply = run(s(&["request", "prices", "tea"])).await.unwrap();
    assert_eq!(reply["payload"], "3 EUR");
    answering.await.unwrap();
    responder.close().await.unwrap();
}

/// The persistent embedded backend from the command line: what one run wrote, the next
/// run reads (each invocation is its own process owning the file for its duration).
#[test]
fn a_redb_file_keeps_what_each_run_wrote() {
    let dir = std::env::temp_dir().join(format!("pulse-cli-redb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("redb:{}", dir.join("data.redb").display());
    let added = json(&url, &["stream", "add", "orders", "created", "one"]);
    assert_eq!(added["added"], true);
    json(&url, &["map", "set", "config", "mode", "fast"]);
    let info = json(&url, &["stream", "info", "orders"]);
    assert_eq!(info["length"], 1);
    assert_eq!(info["last_id"], added["id"]);
    let (code, out, _) = pulse(&url, &["map", "get", "config", "mode"]);
    assert_eq!(code, 0);
    assert!(out.contains("fast"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}
