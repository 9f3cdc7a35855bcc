#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Every series in the table of `pulse::telemetry` is recorded, with its labels, when the
//! building blocks do their work: a recorder installed for this test binary (one process,
//! so one global recorder) captures them, against the memory backend.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use pulse::{
    error::BoxError,
    pool::{Job, JobHandler, Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{NewEvent, ReaderOptions, SinkOptions, Start, Stream, StreamOptions},
};

/// `name{label=value,…}` → value (counters and gauges) or number of samples (histograms).
#[derive(Default)]
struct Captured(Mutex<BTreeMap<String, f64>>);

struct Series {
    id: String,
    all: Arc<Captured>,
}

impl Series {
    fn update(&self, f: impl FnOnce(f64) -> f64) {
        let mut all = self.all.0.lock().unwrap();
        let v = all.entry(self.id.clone()).or_default();
        *v = f(*v);
    }
}

impl CounterFn for Series {
    fn increment(&self, n: u64) {
        self.update(|v| v + n as f64);
    }
    fn absolute(&self, n: u64) {
        self.update(|_| n as f64);
    }
}

impl GaugeFn for Series {
    fn increment(&self, n: f64) {
        self.update(|v| v + n);
    }
    fn decrement(&self, n: f64) {
        self.update(|v| v - n);
    }
    fn set(&self, n: f64) {
        self.update(|_| n);
    }
}

impl HistogramFn for Series {
    fn record(&self, _: f64) {
        self.update(|v| v + 1.0);
    }
}

struct Capture(Arc<Captured>);

impl Capture {
    fn series(&self, key: &Key) -> Arc<Series> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        Arc::new(Series {
            id: format!("{}{{{}}}", key.name(), labels.join(",")),
            all: self.0.clone(),
        })
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.series(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.series(key))
    }
}

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

async fn eventually(captured: &Captured, series: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = captured.0.lock().unwrap().get(series).copied();
        if got == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series}: {got:?}, want {want}; have {:?}",
            captured.0.lock().unwrap().keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_series_is_recorded() {
    let captured = Arc::new(Captured::default());
    metrics::set_global_recorder(Capture(captured.clone())).expect("one recorder");
    let memory = pulse_memory::MemoryBackend::new();
    let backend: Arc<dyn pulse::Backend> = Arc::new(memory.clone());

    let s = Stream::new(backend.clone(), "orders", StreamOptions::default()).unwrap();
    s.add("created", "1").await.unwrap();
    s.add_batch(vec![
        NewEvent::new("created", "2"),
        NewEvent::new("created", "3"),
    ])
    .await
    .unwrap();
    eventually(
        &captured,
        "pulse_stream_events_added_total{stream=orders}",
        3.0,
    )
    .await;

    let reader = s
        .new_reader(ReaderOptions::default().with_start(Start::Oldest))
        .await
        .unwrap();
    let mut seen = reader.subscribe().unwrap();
    for _ in 0..3 {
        seen.recv().await.unwrap();
    }
    eventually(
        &captured,
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
    eventually(
        &captured,
        "pulse_stream_events_acked_total{sink=billing,stream=orders}",
        2.0,
    )
    .await;
    // The third waits past the grace period: reclaimed and delivered again.
    let again = todo.recv().await.unwrap();
    assert_eq!(again.id, c.id);
    eventually(
        &captured,
        "pulse_stream_events_redelivered_total{sink=billing,stream=orders}",
        1.0,
    )
    .await;
    eventually(
        &captured,
        "pulse_stream_events_delivered_total{sink=billing,stream=orders}",
        4.0,
    )
    .await;
    sink.ack(&again).await.unwrap();
    eventually(
        &captured,
        "pulse_sink_pending{sink=billing,stream=orders}",
        0.0,
    )
    .await;
    sink.close().await.unwrap();
    reader.close().await.unwrap();

    let map = Map::join(backend.clone(), "settings", MapOptions::default())
        .await
        .unwrap();
    memory.interrupt_subscriptions();
    eventually(&captured, "pulse_rmap_resyncs_total{map=settings}", 1.0).await;
    map.close().await.unwrap();

    let node = Node::join(
        backend.clone(),
        "jobs",
        NodeOptions::default().with_worker_ttl(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let worker = node.add_worker(Idle).await.unwrap();
    node.dispatch_job("k", "x").await.unwrap();
    let running = format!(
        "pulse_pool_jobs_running{{pool=jobs,worker={}}}",
        worker.id()
    );
    eventually(&captured, "pulse_pool_job_starts_total{pool=jobs}", 1.0).await;
    eventually(&captured, &running, 1.0).await;
    eventually(
        &captured,
        "pulse_pool_dispatch_seconds{outcome=ok,pool=jobs}",
        1.0,
    )
    .await;
    node.close().await.unwrap();
    eventually(&captured, "pulse_pool_job_stops_total{pool=jobs}", 1.0).await;
    eventually(&captured, &running, 0.0).await;
}
