//! Requests and job calls while Redis restarts (AOF, fsync always): every call ends in
//! bounded time, with its own answer or a typed error (never another call's answer, never
//! a hang), and calls work again once the server is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use pulse::{
    error::BoxError,
    pool::{Job, JobCall, JobHandler, Node, NodeOptions},
    rpc::RequestOptions,
    streaming::{NewEvent, SinkOptions, Start, Stream, StreamOptions},
    Backend, Error,
};
use pulse_conformance::redis_server::{private_server, RedisServer};
use pulse_redis::{RedisBackend, RedisOptions};
use tokio::time::Instant;

fn fast() -> RedisOptions {
    RedisOptions::default()
        .with_reconnect_delays(Duration::from_millis(20), Duration::from_millis(200))
        .with_health_check_interval(Duration::from_millis(200))
        .with_command_timeout(Duration::from_secs(1))
        .with_connect_timeout(Duration::from_secs(1))
}

async fn connect(server: &RedisServer) -> Arc<dyn Backend> {
    Arc::new(
        RedisBackend::connect_with(&server.url(), fast())
            .await
            .unwrap(),
    )
}

/// Whether `r` is an acceptable outcome of a call meeting a restart: its own answer, or
/// an error that says the call could not be completed.
fn acceptable(r: &pulse::Result<Bytes>, want: &[u8]) -> bool {
    match r {
        Ok(answer) => answer == want,
        Err(
            Error::Timeout { .. }
            | Error::Aborted { .. }
            | Error::Connection { .. }
            | Error::NotRunning { .. },
        ) => true,
        Err(_) => false,
    }
}

const TIMEOUT: Duration = Duration::from_secs(3);
/// What a call may take beyond its timeout (a command in flight when it ran out).
const SLACK: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_across_a_redis_restart_end_typed_and_in_time() {
    let Some(server) = private_server(&["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let backend = connect(&server).await;
    let service = Stream::new(backend.clone(), "echo", StreamOptions::default()).unwrap();
    let sink = service
        .new_sink(
            "echoer",
            SinkOptions::default()
                .with_start(Start::Oldest)
                .with_ack_grace(Duration::from_millis(500))
                .with_check_interval(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    let mut requests = sink.subscribe().unwrap();
    let responder = {
        let sink = sink.clone();
        tokio::spawn(async move {
            while let Some(r) = requests.recv().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = sink.reply(&r, r.payload.clone()).await;
                });
            }
        })
    };
    let callers: Vec<_> = (0..8)
        .map(|c| {
            let service = service.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0..15 {
                    let payload = format!("{c}-{n}");
                    let options = RequestOptions::default()
                        .with_timeout(TIMEOUT)
                        .with_heartbeat(Duration::from_millis(100));
                    let started = Instant::now();
                    let r = service
                        .request(NewEvent::new("q", payload.clone()), options)
                        .await
                        .map(|reply| reply.payload);
                    outcomes.push((payload, r, started.elapsed()));
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().unwrap();
    let mut failed = 0;
    for caller in callers {
        for (payload, r, took) in caller.await.unwrap() {
            assert!(acceptable(&r, payload.as_bytes()), "{payload}: {r:?}");
            assert!(took <= TIMEOUT + SLACK, "{payload} took {took:?}");
            failed += usize::from(r.is_err());
        }
    }
    assert!(failed > 0, "the restart met some calls");
    // Working again.
    let reply = service
        .request(
            NewEvent::new("q", "after"),
            RequestOptions::default().with_timeout(TIMEOUT),
        )
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"after");
    responder.abort();
    sink.close().await.unwrap();
}

struct Echo;

#[pulse::async_trait]
impl JobHandler for Echo {
    async fn start(&self, _job: &Job) -> Result<(), BoxError> {
        Ok(())
    }
    async fn stop(&self, _key: &str) -> Result<(), BoxError> {
        Ok(())
    }
    async fn call(&self, call: &JobCall) -> Result<Bytes, BoxError> {
        Ok(call.payload.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_calls_across_a_redis_restart_end_typed_and_in_time() {
    let Some(server) = private_server(&["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let backend = connect(&server).await;
    let options = NodeOptions::default()
        .with_worker_ttl(Duration::from_secs(2))
        .with_retry_delay(Duration::from_millis(50));
    let worker_node = Node::join(backend.clone(), "pool", options.clone())
        .await
        .unwrap();
    worker_node.add_worker(Echo).await.unwrap();
    let client = Node::join(backend, "pool", options.with_client_only(true))
        .await
        .unwrap();
    for k in 0..4 {
        client.dispatch_job(&format!("job-{k}"), "").await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..4).any(|k| client.job_owner(&format!("job-{k}")).is_none()) {
        assert!(Instant::now() < deadline, "owners known");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let callers: Vec<_> = (0..4)
        .map(|k| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0..40 {
                    let payload = format!("{k}-{n}");
                    let started = Instant::now();
                    let r = client
                        .call(&format!("job-{k}"), payload.clone(), TIMEOUT)
                        .await;
                    outcomes.push((payload, r, started.elapsed()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().unwrap();
    let mut failed = 0;
    for caller in callers {
        for (payload, r, took) in caller.await.unwrap() {
            assert!(acceptable(&r, payload.as_bytes()), "{payload}: {r:?}");
            assert!(took <= TIMEOUT + SLACK, "{payload} took {took:?}");
            failed += usize::from(r.is_err());
        }
    }
    assert!(failed > 0, "the restart met some calls");
    // Working again, once the pool settled (workers may have fenced and come back).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.call("job-0", "after", TIMEOUT).await {
            Ok(answer) => {
                assert_eq!(&answer[..], b"after");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "calls work again: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close().await.unwrap();
    worker_node.close().await.unwrap();
}
