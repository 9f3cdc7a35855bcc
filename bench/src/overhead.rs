//! S12: what observability costs. S1 (stream append) and S3 (sink consume + ack) on the
//! Redis backend with a Prometheus recorder (`metrics-exporter-prometheus`, no HTTP
//! listener) and a `tracing` subscriber at `info` (formatting into a discarded writer)
//! switched on, against the same switched off, in alternating rounds (three each); the
//! ratio of the medians must be at least 0.95.
//!
//! A recorder and a subscriber can be installed once per process, so both are installed
//! once behind switches: off, the recorder hands out no-op handles and the subscriber's
//! filter is `off`, which costs what having none installed costs (one check per call).
//! This row runs last, so no other row runs with them installed. Each run connects its
//! own backend: handles take their series from the recorder when they are created.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
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

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// One run on a backend connected for it: handles (the backend's own included) ask the
/// recorder for their series when they are made, so they see the switch as it is now.
async fn one(url: &str, size: Size, s1: bool) -> f64 {
    let redis: Arc<dyn Backend> = Arc::new(
        pulse_redis::RedisBackend::connect(url)
            .await
            .expect("connect"),
    );
    let rate = if s1 {
        s1_append_many(&redis, size).await.rate()
    } else {
        s3_sink(&redis, size).await.rate()
    };
    drop(redis);
    rate
}

/// The two S12 rows.
pub(crate) async fn s12(url: &str, size: Size) -> Vec<Row> {
    let on = Arc::new(AtomicBool::new(false));
    let recorder = Switch {
        on: on.clone(),
        inner: metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
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
        ("S12 S1 with a metrics recorder and info logs", true),
        ("S12 S3 with a metrics recorder and info logs", false),
    ] {
        let (mut bare, mut with) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            switch(false);
            bare.push(one(url, size, s1).await);
            switch(true);
            with.push(one(url, size, s1).await);
        }
        switch(false);
        let (bare, with) = (median(bare), median(with));
        rows.push(Row {
            scenario: name.into(),
            backend: "redis",
            figure: fmt_rate(with),
            baseline: format!("switched off {}", fmt_rate(bare)),
            ratio: Some(with / bare.max(1e-9)),
            target: Target::AtLeast(0.95),
            latency: None,
        });
    }
    rows
}
