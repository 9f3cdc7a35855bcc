#![allow(clippy::unwrap_used, clippy::expect_used)]

//! With the `opentelemetry` feature, a traced producer stores its W3C `traceparent` with
//! what it sends, and the consumer's span links to it: checked on the spans the
//! OpenTelemetry SDK exports (in memory), for an event through a sink and a reader, and a
//! job through a worker's `start`. One subscriber per process, so one test.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use pulse::{
    async_trait,
    error::BoxError,
    pool::{Job, JobHandler, Node, NodeOptions},
    streaming::{NewEvent, ReaderOptions, SinkOptions, Start, Stream, StreamOptions},
};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// The trace and span ids of a `traceparent`.
fn ids(tp: &str) -> (TraceId, SpanId) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    (
        TraceId::from_hex(parts[1]).unwrap(),
        SpanId::from_hex(parts[2]).unwrap(),
    )
}

/// Waits until a finished span named `name` exists; returns it.
async fn finished(exporter: &InMemorySpanExporter, name: &str) -> SpanData {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans = exporter.get_finished_spans().unwrap();
        if let Some(s) = spans.iter().find(|s| s.name == name) {
            return s.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no span {name:?}; have {:?}",
            spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn links_to(span: &SpanData, tp: &str) -> bool {
    let (trace, id) = ids(tp);
    span.links
        .links
        .iter()
        .any(|l| l.span_context.trace_id() == trace && l.span_context.span_id() == id)
}

#[derive(Clone, Default)]
struct Recorder {
    started: Arc<Mutex<Vec<Job>>>,
}

#[async_trait]
impl JobHandler for Recorder {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        self.started.lock().unwrap().push(job.clone());
        Ok(())
    }
    async fn stop(&self, _: &str) -> Result<(), BoxError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_store_their_context_and_consumers_link_to_it() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("pulse-tests")));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let backend: Arc<dyn pulse::Backend> = Arc::new(pulse_memory::MemoryBackend::new());

    // An event added inside the application's span.
    let stream = Stream::new(backend.clone(), "orders", StreamOptions::default()).unwrap();
    let sink = stream
        .new_sink("billing", SinkOptions::default().with_start(Start::Oldest))
        .await
        .unwrap();
    let reader = stream
        .new_reader(ReaderOptions::default().with_start(Start::Oldest))
        .await
        .unwrap();
    let (mut billed, mut read) = (sink.subscribe().unwrap(), reader.subscribe().unwrap());
    let checkout = tracing::info_span!("checkout");
    let root_trace = checkout.context().span().span_context().trace_id();
    let id = stream
        .add("created", "order 1")
        .instrument(checkout.clone())
        .await
        .unwrap();
    drop(checkout);
    let event = billed.recv().await.unwrap();
    assert_eq!(event.id, id);
    let tp = event
        .trace_parent
        .clone()
        .expect("the event carries a traceparent");
    let (trace, send_id) = ids(&tp);
    assert_eq!(
        trace, root_trace,
        "the event belongs to the application's trace"
    );

    // The producer span: Pulse's own, a child of the application's, named and typed the
    // OpenTelemetry messaging way.
    let send = finished(&exporter, "send orders").await;
    assert_eq!(send.span_context.span_id(), send_id);
    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(
        attribute(&send, "messaging.system").as_deref(),
        Some("pulse")
    );
    assert_eq!(
        attribute(&send, "messaging.destination.name").as_deref(),
        Some("orders")
    );
    assert_eq!(
        attribute(&send, "messaging.message.id"),
        Some(id.to_string())
    );

    // Both consumers' receive spans link to it (a link, not a parent).
    let reader_event = read.recv().await.unwrap();
    assert_eq!(reader_event.trace_parent.as_deref(), Some(tp.as_str()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let receives = loop {
        let receives: Vec<SpanData> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.name == "receive orders")
            .collect();
        if receives.len() >= 2 || tokio::time::Instant::now() > deadline {
            break receives;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(receives.len(), 2, "one receive per consumer");
    for r in &receives {
        assert_eq!(r.span_kind, SpanKind::Consumer);
        assert!(links_to(r, &tp), "{:?}", r.links);
        assert_ne!(r.span_context.trace_id(), TraceId::INVALID);
    }
    assert!(receives
        .iter()
        .any(|r| attribute(r, "messaging.consumer.group.name").as_deref() == Some("billing")));
    sink.ack(&event).await.unwrap();
    let ack = finished(&exporter, "ack orders").await;
    assert_eq!(
        attribute(&ack, "messaging.operation.type").as_deref(),
        Some("settle")
    );

    // An explicit traceparent wins over the current span's.
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    stream
        .add_event(NewEvent::new("created", "order 2").with_trace_parent(given))
        .await
        .unwrap();
    assert_eq!(
        billed.recv().await.unwrap().trace_parent.as_deref(),
        Some(given)
    );

    // A failed operation says why on its span.
    stream
        .add_event(NewEvent::new("created", "x").with_topic("bad..topic"))
        .await
        .unwrap_err();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let spans = exporter.get_finished_spans().unwrap();
        if let Some(s) = spans
            .iter()
            .find(|s| s.name == "send orders" && attribute(s, "error.type").is_some())
        {
            break s.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed send span"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        attribute(&failed, "error.type").as_deref(),
        Some("invalid_name")
    );
    assert!(
        matches!(failed.status, opentelemetry::trace::Status::Error { .. }),
        "{:?}",
        failed.status
    );
    sink.close().await.unwrap();
    reader.close().await.unwrap();

    // A job dispatched inside the application's span: the worker's start links to it.
    let recorder = Recorder::default();
    let node = Node::join(backend.clone(), "jobs", NodeOptions::default())
        .await
        .unwrap();
    node.add_worker(recorder.clone()).await.unwrap();
    let request = tracing::info_span!("request");
    let request_trace = request.context().span().span_context().trace_id();
    node.dispatch_job("job-1", "payload")
        .instrument(request.clone())
        .await
        .unwrap();
    drop(request);
    let job = recorder.started.lock().unwrap()[0].clone();
    let job_tp = job.trace_parent.expect("the job carries a traceparent");
    assert_eq!(ids(&job_tp).0, request_trace);
    let start = finished(&exporter, "start jobs").await;
    assert!(links_to(&start, &job_tp), "{:?}", start.links);
    let dispatch = finished(&exporter, "dispatch jobs").await;
    assert_eq!(dispatch.span_context.span_id(), ids(&job_tp).1);
    node.close().await.unwrap();
}
