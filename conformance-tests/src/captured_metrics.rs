//! A metrics recorder that keeps every series in memory, for tests of what Pulse records
//! (the table in `pulse::telemetry`). A process has one global recorder, so a test binary
//! calls [`install`] once, *before* it creates backends and handles (handles ask the
//! recorder for their series when they are made), then waits for series with
//! [`Captured::eventually`].
//!
//! A series is named `name{label=value,…}`, labels sorted; its value is the counter's or
//! gauge's value, or a histogram's number of samples.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// Every series recorded so far.
#[derive(Debug, Default)]
pub struct Captured(Mutex<BTreeMap<String, f64>>);

impl Captured {
    fn all(&self) -> MutexGuard<'_, BTreeMap<String, f64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `series`, if it was recorded.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.all().get(series).copied()
    }

    /// The names (with labels) of every series recorded.
    pub fn series(&self) -> Vec<String> {
        self.all().keys().cloned().collect()
    }

    /// Waits (up to 20 s) until `series` has the value `want`; panics with what was
    /// recorded otherwise.
    pub async fn eventually(&self, series: &str, want: f64) {
        self.eventually_that(series, |v| v == want, &format!("{want}"))
            .await
    }

    /// Waits (up to 20 s) until `series` has a value that satisfies `ok`.
    pub async fn eventually_that(&self, series: &str, ok: impl Fn(f64) -> bool, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.get(series);
            if got.is_some_and(&ok) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series}: {got:?}, want {what}; have {:?}",
                self.series()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Installs the capturing recorder as the process's global recorder (once; later calls
/// return the same store).
pub fn install() -> Arc<Captured> {
    static STORE: OnceLock<Arc<Captured>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let store = Arc::new(Captured::default());
            // Fails only if another recorder was installed first: then nothing is captured
            // and the test's waits say so.
            let _ = metrics::set_global_recorder(Capture(store.clone()));
            store
        })
        .clone()
}

struct Series {
    id: String,
    all: Arc<Captured>,
}

impl Series {
    fn update(&self, f: impl FnOnce(f64) -> f64) {
        let mut all = self.all.all();
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
