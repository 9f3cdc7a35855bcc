#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Every series in the table of `pulse::telemetry` is recorded, with its labels, when the
//! building blocks do their work: the capturing recorder (one per test binary) sees them,
//! against the memory backend (a flaky wrapper makes a worker fence) and, for the backend
//! series, a private `redis-server`.

use std::{sync::Arc, time::Duration};

use pulse::{
    async_trait,
    error::BoxError,
    pool::{DispatchOptions, Job, JobHandler, Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{NewEvent, ReaderOptions, SinkOptions, Start, Stream, StreamOptions},
    Backend,
};
use pulse_conformance::{
    captured_metrics::{install, Captured},
    flaky::{Fault, FlakyBackend, Op},
    redis_server::private_server,
};

struct Idle;

#[async_trait]
impl JobHandler for Idle {
    async fn start(&self, _: &Job) -> Result<(), BoxError> {
        Ok(())
    }
    async fn stop(&self, _: &str) -> Result<(), BoxError> {
        Ok(())
    }
}

async fn streams(captured: &Captured, backend: Arc<dyn Backend>) {
    let s = Stream::new(backend.clone(), "orders", StreamOptions::default()).unwrap();
    s.add("created", "1").await.unwrap();
    s.add_batch(vec![
        NewEvent::new("created", "2"),
        NewEvent::new("created", "3"),
    ])
    .await
    .unwrap();
    captured
        .eventually("pulse_stream_events_added_total{stream=orders}", 3.0)
        .await;

    let reader = s
        .new_reader(ReaderOptions::default().with_start(Start::Oldest))
        .await
        .unwrap();
    let mut seen = reader.subscribe().unwrap();
    for _ in 0..3 {
        seen.recv().await.unwrap();
    }
    captured
        .eventually(
            "pulse_stream_events_delivered_total{sink=,stream=orders}",
            3.0,
        )
        .await;

    let sink = s
        .new_sink(
            "billing",
            SinkOptions::default()
                .with_start(Start::Oldest)
                .with_ack_grace(Duration::from_millis(200))
                .with_check_interval(Duration::from_millis(20)),
        )
        .await
        .unwrap();
    let mut todo = sink.subscribe().unwrap();
    let (a, b, c) = (
        todo.recv().await.unwrap(),
        todo.recv().await.unwrap(),
        todo.recv().await.unwrap(),
    );
    sink.ack_many(&[a, b]).await.unwrap();
    captured
        .eventually(
            "pulse_stream_events_acked_total{sink=billing,stream=orders}",
            2.0,
        )
        .await;
    // One event pending, none left to deliver.
    captured
        .eventually("pulse_sink_pending{sink=billing,stream=orders}", 1.0)
        .await;
    captured
        .eventually("pulse_sink_lag{sink=billing,stream=orders}", 0.0)
        .await;
    // The third waits past the grace period: reclaimed and delivered again.
    let again = todo.recv().await.unwrap();
    assert_eq!(again.id, c.id);
    captured
        .eventually(
            "pulse_stream_events_redelivered_total{sink=billing,stream=orders}",
            1.0,
        )
        .await;
    captured
        .eventually(
            "pulse_stream_events_delivered_total{sink=billing,stream=orders}",
            4.0,
        )
        .await;
    sink.ack(&again).await.unwrap();
    captured
        .eventually("pulse_sink_pending{sink=billing,stream=orders}", 0.0)
        .await;
    sink.close().await.unwrap();
    // A sink that gives up after one delivery: a failed event is dead-lettered.
    let strict = s
        .new_sink(
            "strict",
            SinkOptions::default()
                .with_start(Start::Oldest)
                .with_max_deliveries(1),
        )
        .await
        .unwrap();
    let mut todo = strict.subscribe().unwrap();
    let first = todo.recv().await.unwrap();
    strict.fail(&first, "broken").await.unwrap();
    captured
        .eventually(
            "pulse_stream_events_dead_lettered_total{sink=strict,stream=orders}",
            1.0,
        )
        .await;
    strict.close().await.unwrap();
    // A delayed event: counted when held, and when the reader's mover releases it.
    s.add_delayed(NewEvent::new("later", "x").deliver_after(Duration::from_millis(20)))
        .await
        .unwrap();
    captured
        .eventually("pulse_stream_events_delayed_total{stream=orders}", 1.0)
        .await;
    captured
        .eventually("pulse_stream_events_released_total{stream=orders}", 1.0)
        .await;
    reader.close().await.unwrap();
    // An answer nobody waits for any more (here a second answer: an answer after its
    // caller gave up is dropped by the responder itself) is counted as late.
    let responder = s.new_sink("pricer", SinkOptions::default()).await.unwrap();
    let mut requests = responder.subscribe().unwrap();
    let asked = s.request(NewEvent::new("price", "tea"), Default::default());
    let answered = async {
        let request = requests.recv().await.unwrap();
        responder.reply(&request, "3 EUR").await.unwrap();
        request
    };
    let (asked, request) = tokio::join!(asked, answered);
    assert_eq!(&asked.unwrap().payload[..], b"3 EUR");
    responder.reply(&request, "4 EUR").await.unwrap();
    captured
        .eventually("pulse_rpc_late_replies_total{}", 1.0)
        .await;
    responder.close().await.unwrap();
}

async fn maps(captured: &Captured, memory: &pulse_memory::MemoryBackend) {
    let backend: Arc<dyn Backend> = Arc::new(memory.clone());
    let options = MapOptions::default().with_check_interval(Duration::from_millis(20));
    let map = Map::join(backend.clone(), "settings", options)
        .await
        .unwrap();
    map.set_and_wait("a", "1").await.unwrap();
    captured
        .eventually("pulse_rmap_replica_lag_revisions{map=settings}", 0.0)
        .await;
    memory.interrupt_subscriptions();
    captured
        .eventually("pulse_rmap_resyncs_total{map=settings}", 1.0)
        .await;
    map.close().await.unwrap();
}

async fn pools(captured: &Captured, memory: &pulse_memory::MemoryBackend) {
    let flaky = Arc::new(FlakyBackend::new(Arc::new(memory.clone()), 1));
    let backend: Arc<dyn Backend> = flaky.clone();
    let ttl = Duration::from_millis(600);
    let node = Node::join(
        backend.clone(),
        "jobs",
        NodeOptions::default()
            .with_worker_ttl(ttl)
            .with_dispatch_timeout(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    // No worker yet: the job waits.
    let dispatch = node
        .dispatch_job_with("k", "x", DispatchOptions::default())
        .await;
    assert!(
        matches!(dispatch, Err(pulse::Error::Timeout { .. })),
        "{dispatch:?}"
    );
    captured
        .eventually("pulse_pool_dispatch_seconds{outcome=error,pool=jobs}", 1.0)
        .await;
    captured
        .eventually("pulse_pool_jobs_waiting{pool=jobs}", 1.0)
        .await;

    let worker = node.add_worker(Idle).await.unwrap();
    let running = format!(
        "pulse_pool_jobs_running{{group=default,pool=jobs,worker={}}}",
        worker.id()
    );
    captured
        .eventually("pulse_pool_job_starts_total{pool=jobs}", 1.0)
        .await;
    captured.eventually(&running, 1.0).await;
    captured
        .eventually("pulse_pool_jobs_waiting{pool=jobs}", 0.0)
        .await;
    node.dispatch_job("k2", "x").await.unwrap();
    captured
        .eventually("pulse_pool_dispatch_seconds{outcome=ok,pool=jobs}", 1.0)
        .await;
    captured.eventually(&running, 2.0).await;

    // Renewals fail: the worker fences (stops its jobs), then comes back and runs them.
    flaky.fail_next(
        Fault::on(Op::LeaseAcquire)
            .key_containing(":alive:")
            .before()
            .times(1_000_000),
    );
    captured
        .eventually("pulse_pool_fences_total{pool=jobs}", 1.0)
        .await;
    captured.eventually(&running, 0.0).await;
    flaky.clear_faults();
    captured.eventually(&running, 2.0).await;

    // A worker that leaves hands its jobs over: moves.
    node.remove_worker(&worker).await.unwrap();
    captured
        .eventually("pulse_pool_job_moves_total{pool=jobs}", 2.0)
        .await;
    captured.eventually(&running, 0.0).await;
    captured
        .eventually("pulse_pool_jobs_waiting{pool=jobs}", 2.0)
        .await;
    node.close().await.unwrap();
    captured
        .eventually_that(
            "pulse_pool_job_stops_total{pool=jobs}",
            |n| n >= 4.0,
            "at least 4 (2 fenced, 2 moved)",
        )
        .await;
}

/// Latency of every command and errors by kind, on a real server.
async fn backend_ops(captured: &Captured) {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let redis: Arc<dyn Backend> = Arc::new(
        pulse_redis::RedisBackend::connect(&server.url())
            .await
            .unwrap(),
    );
    let s = Stream::new(redis.clone(), "ops", StreamOptions::default()).unwrap();
    s.add("e", "1").await.unwrap();
    // A hash read of a stream key: WRONGTYPE, a typed error.
    let err = redis.hash_get(s.key(), "f").await.unwrap_err();
    assert_eq!(err.kind(), "wrong_type");
    let errors: Vec<String> = captured
        .series()
        .into_iter()
        .filter(|n| n.starts_with("pulse_backend_errors_total{backend=redis,error=wrong_type,"))
        .collect();
    assert_eq!(errors.len(), 1, "{:?}", captured.series());
    assert_eq!(captured.get(&errors[0]), Some(1.0));
    let ops = captured
        .series()
        .into_iter()
        .filter(|n| n.starts_with("pulse_backend_op_seconds{backend=redis,"))
        .count();
    assert!(ops >= 2, "{:?}", captured.series());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_series_is_recorded() {
    let captured = install();
    let memory = pulse_memory::MemoryBackend::new();
    streams(&captured, Arc::new(memory.clone())).await;
    maps(&captured, &memory).await;
    pools(&captured, &memory).await;
    backend_ops(&captured).await;
    // Every series in the table was seen.
    let source = include_str!("../../core/src/telemetry.rs");
    let names: Vec<&str> = source
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|rest| rest.split('`').next())
        .collect();
    assert!(names.len() >= 17, "{names:?}");
    let seen = captured.series();
    for name in names {
        if name.starts_with("pulse_backend_") && seen.iter().all(|s| !s.contains("backend=redis")) {
            continue; // no redis-server here (and not required)
        }
        assert!(
            seen.iter().any(|s| s.starts_with(&format!("{name}{{"))),
            "{name} never recorded; have {seen:?}"
        );
    }
}
