#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Levels a production user can live with: nothing per event above `debug`. The same
//! stream and map workload runs with few and with many events under a subscriber that
//! counts what it is given; what is at `info` or above must not grow with the number of
//! events, and the per-event spans must be there at `debug`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use pulse::{
    rmap::{Map, MapOptions},
    streaming::{ReaderOptions, SinkOptions, Start, Stream, StreamOptions},
    Backend,
};
use tracing::{span, Level, Subscriber};
use tracing_subscriber::{layer::Context, prelude::*, Layer};

/// `(level, span or event name)` → how many.
#[derive(Default, Clone)]
struct Counts(Arc<Mutex<BTreeMap<(Level, String), usize>>>);

impl Counts {
    fn take(&self) -> BTreeMap<(Level, String), usize> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl<S: Subscriber> Layer<S> for Counts {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, _: &span::Id, _: Context<'_, S>) {
        let m = attrs.metadata();
        *self
            .0
            .lock()
            .unwrap()
            .entry((*m.level(), m.name().to_owned()))
            .or_default() += 1;
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let m = event.metadata();
        *self
            .0
            .lock()
            .unwrap()
            .entry((*m.level(), format!("event at {}", m.target())))
            .or_default() += 1;
    }
}

/// Adds `n` events, consumes them with a sink (acknowledged) and a reader, and writes `n`
/// map keys; all under names of their own.
async fn workload(backend: &Arc<dyn Backend>, tag: &str, n: usize) {
    let stream = Stream::new(
        backend.clone(),
        &format!("{tag}-s"),
        StreamOptions::default(),
    )
    .unwrap();
    let sink = stream
        .new_sink("sink", SinkOptions::default().with_start(Start::Oldest))
        .await
        .unwrap();
    let reader = stream
        .new_reader(ReaderOptions::default().with_start(Start::Oldest))
        .await
        .unwrap();
    let (mut todo, mut seen) = (sink.subscribe().unwrap(), reader.subscribe().unwrap());
    for i in 0..n {
        stream.add("e", format!("{i}")).await.unwrap();
    }
    for _ in 0..n {
        let e = todo.recv().await.unwrap();
        sink.ack(&e).await.unwrap();
        seen.recv().await.unwrap();
    }
    let map = Map::join(backend.clone(), &format!("{tag}-m"), MapOptions::default())
        .await
        .unwrap();
    for i in 0..n {
        map.set(&format!("k{i}"), "v").await.unwrap();
    }
    sink.close().await.unwrap();
    reader.close().await.unwrap();
    map.close().await.unwrap();
    // Let the background loops wind down before counting.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn at_or_above_info(counts: &BTreeMap<(Level, String), usize>) -> BTreeMap<(Level, String), usize> {
    counts
        .iter()
        .filter(|((level, _), _)| *level <= Level::INFO)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_per_event_above_debug() {
    let counts = Counts::default();
    tracing_subscriber::registry().with(counts.clone()).init();
    let backend: Arc<dyn Backend> = Arc::new(pulse_memory::MemoryBackend::new());

    workload(&backend, "few", 5).await;
    let few = counts.take();
    workload(&backend, "many", 50).await;
    let many = counts.take();

    assert_eq!(
        at_or_above_info(&few),
        at_or_above_info(&many),
        "info and above grew with the number of events"
    );
    // The per-event spans exist, at debug: 10 times the events, 10 times the spans.
    for name in [
        "pulse.stream.send",
        "pulse.stream.receive",
        "pulse.stream.ack",
        "pulse.rmap.op",
    ] {
        let key = (Level::DEBUG, name.to_owned());
        let (f, m) = (
            few.get(&key).copied().unwrap_or(0),
            many.get(&key).copied().unwrap_or(0),
        );
        assert!(
            f > 0 && m >= 10 * f - 10,
            "{name}: {f} then {m}; have {many:?}"
        );
    }
}
