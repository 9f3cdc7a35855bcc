//! S12: what observability costs. S1 (stream append) and S3 (sink consume + ack) on the
//! Redis backend with a Prometheus recorder (`metrics-exporter-prometheus`, no HTTP
//! listener) and a `tracing` subscriber at `info` (formatting into a discarded writer)
//! switched on, against the same switched off, in back-to-back pairs ([`PAIRS`]): the
//! median of the pairs' client-CPU ratios (off / on) must be at least 0.95, that is at most
//! 5% more CPU per event. Throughput is reported beside it; on this machine its noise is
//! larger than the 5% being measured.
//!
//! A recorder and a subscriber can be installed once per process, so both are installed
//! once behind switches: off, the recorder hands out no-op handles and the subscriber's
//! filter is `off`, which costs what having none installed costs (one check per call).
//! This row runs last, so no other row runs with them installed. Each run connects its
//! own backend: handles take their series from the recorder when they are created.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use pulse::Backend;
use tracing_subscriber::{
    filter::{LevelFilter, Targets},
    layer::SubscriberExt,
    reload,
    util::SubscriberInitExt,
    Registry,
};

use crate::{
    scenarios::{s1_append_many, s3_sink},
    stats::{fmt_rate, Row, Target},
    Size,
};

/// Forwards to the Prometheus recorder while on; no-op handles while off.
struct Switch {
    on: Arc<AtomicBool>,
    inner: metrics_exporter_prometheus::PrometheusRecorder,
}

impl Recorder for Switch {
    fn describe_counter(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        self.inner.describe_counter(k, u, d)
    }
    fn describe_gauge(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        self.inner.describe_gauge(k, u, d)
    }
    fn describe_histogram(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        self.inner.describe_histogram(k, u, d)
    }
    fn register_counter(&self, key: &Key, m: &Metadata<'_>) -> Counter {
        match self.on.load(Ordering::Relaxed) {
            true => self.inner.register_counter(key, m),
            false => Counter::noop(),
        }
    }
    fn register_gauge(&self, key: &Key, m: &Metadata<'_>) -> Gauge {
        match self.on.load(Ordering::Relaxed) {
            true => self.inner.register_gauge(key, m),
            false => Gauge::noop(),
        }
    }
    fn register_histogram(&self, key: &Key, m: &Metadata<'_>) -> Histogram {
        match self.on.load(Ordering::Relaxed) {
            true => self.inner.register_histogram(key, m),
            false => Histogram::noop(),
        }
    }
}

/// Measured pairs (off, on) per row: enough that an A/A run (both sides off) reports
/// within a few percent of 1 on this noisy 2-core machine.
const PAIRS: usize = 10;

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// CPU time this process has used so far (every thread's, from
/// `/proc/self/task/*/schedstat`, in nanoseconds); the Redis server is another process.
fn cpu_used() -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

/// One run on a backend connected for it (handles, the backend's own included, ask the
/// recorder for their series when they are made, so they see the switch as it is now):
/// its rate and the client CPU it used.
async fn one(url: &str, size: Size, s1: bool) -> (f64, Duration) {
    let redis: Arc<dyn Backend> = Arc::new(
        pulse_redis::RedisBackend::connect(url)
            .await
            .expect("connect"),
    );
    let cpu = cpu_used();
    let rate = if s1 {
        s1_append_many(&redis, size).await.rate()
    } else {
        s3_sink(&redis, size).await.rate()
    };
    let cpu = cpu_used().saturating_sub(cpu);
    drop(redis);
    (rate, cpu)
}

/// The two S12 rows.
pub(crate) async fn s12(url: &str, size: Size) -> Vec<Row> {
    let on = Arc::new(AtomicBool::new(false));
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    // What an installed exporter does every 5 s: drain the histograms' samples (without it
    // they pile up for the whole run, which no deployment does).
    let handle = prometheus.handle();
    let upkeep = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            handle.run_upkeep();
        }
    });
    let recorder = Switch {
        on: on.clone(),
        inner: prometheus,
    };
    let _ = metrics::set_global_recorder(recorder);
    let off = Targets::new().with_default(LevelFilter::OFF);
    let info = Targets::new().with_default(LevelFilter::INFO);
    let (filter, logs) = reload::Layer::<Targets, Registry>::new(off.clone());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .try_init();
    let switch = |enabled: bool| {
        on.store(enabled, Ordering::Relaxed);
        let _ = logs.reload(if enabled { info.clone() } else { off.clone() });
    };
    let mut rows = Vec::new();
    for (name, s1) in [
        (
            "S12 S1 client CPU with a metrics recorder and info logs",
            true,
        ),
        (
            "S12 S3 client CPU with a metrics recorder and info logs",
            false,
        ),
    ] {
        // Pairs run back to back, in alternating order (so neither side always runs
        // second, on a warmer server). The ratio is of client CPU per run (off / on): what
        // the recorder and the subscriber add is CPU in this process, and CPU does not
        // swing with the scheduling of the server the way throughput does (an A/A run of
        // throughput ratios spread from 1.02x to 1.40x here). Rates are reported beside it.
        let (mut bare, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for pair in 0..PAIRS {
            let run = |on: bool| {
                switch(on);
                one(url, size, s1)
            };
            let (off, on) = if pair % 2 == 0 {
                let off = run(false).await;
                (off, run(true).await)
            } else {
                let on = run(true).await;
                (run(false).await, on)
            };
            bare.push(off.0);
            with.push(on.0);
            ratios.push(off.1.as_secs_f64() / on.1.as_secs_f64().max(1e-9));
        }
        switch(false);
        let ratio = median(ratios);
        let (bare, with) = (median(bare), median(with));
        rows.push(Row {
            scenario: name.into(),
            backend: "redis",
            figure: format!("{} ({:.2}x of off)", fmt_rate(with), with / bare.max(1e-9)),
            baseline: format!("switched off {}", fmt_rate(bare)),
            ratio: Some(ratio),
            target: Target::AtLeast(0.95),
            latency: None,
        });
    }
    upkeep.abort();
    rows
}
