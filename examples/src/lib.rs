//! Shared set-up for the examples: pick the backend from the environment.
//!
//! The project README is included below so its code samples run as doc tests.
#![doc = include_str!("../../README.md")]

use std::sync::Arc;

use pulse::Backend;

/// Prints the library's logs on standard error, filtered by `PULSE_LOG` (for example
/// `pulse=debug`, or `pulse::pool=debug,warn`; default `warn`): the same thing an
/// application does to see what Pulse is doing (see the README's "Logs, traces and
/// metrics").
pub fn init_logs() {
    use tracing_subscriber::{filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};
    let spec = std::env::var("PULSE_LOG").unwrap_or_else(|_| "warn".to_owned());
    let filter: Targets = spec.parse().unwrap_or_else(|e| {
        eprintln!("PULSE_LOG={spec:?} is not a filter ({e}); using `warn`");
        Targets::new().with_default(tracing_subscriber::filter::LevelFilter::WARN)
    });
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
}

/// The backend `PULSE_BACKEND` names (any URL [`pulse_connect::open`] takes), else the
/// Redis server `PULSE_REDIS_URL` names, else the memory backend.
pub async fn backend_from_env() -> pulse::Result<Arc<dyn Backend>> {
    pulse_connect::open(&pulse_connect::url_from_env("memory:")).await
}

/// A per-run identifier (milliseconds since the epoch), so repeated runs against one Redis
/// never share names.
pub fn run_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The value of a subscription's `recv()`, or an error if the subscription ended.
pub fn got<T>(next: Option<T>) -> pulse::Result<T> {
    next.ok_or_else(|| pulse::Error::Closed {
        what: "subscription".into(),
    })
}

/// A job handler for the pool examples: prints what it is asked to do.
#[derive(Debug)]
pub struct PrintingHandler {
    /// A label for the worker (printed with every line).
    pub label: String,
}

#[pulse::async_trait]
impl pulse::pool::JobHandler for PrintingHandler {
    async fn start(&self, job: &pulse::pool::Job) -> Result<(), pulse::error::BoxError> {
        let how = if job.requeued {
            "moved/recovered to"
        } else {
            "started on"
        };
        println!(
            "  job {:<8} {how} {} ({})",
            job.key,
            self.label,
            String::from_utf8_lossy(&job.payload)
        );
        Ok(())
    }

    async fn stop(&self, key: &str) -> Result<(), pulse::error::BoxError> {
        println!("  job {key:<8} stopped on {}", self.label);
        Ok(())
    }

    async fn notify(&self, key: &str, payload: bytes::Bytes) -> Result<(), pulse::error::BoxError> {
        println!(
            "  job {key:<8} notified on {}: {}",
            self.label,
            String::from_utf8_lossy(&payload)
        );
        Ok(())
    }
}

/// A job handler that runs nothing and prints nothing (for examples that show where jobs
/// run from the outside: inspection and events).
#[derive(Debug, Default)]
pub struct Quiet;

#[pulse::async_trait]
impl pulse::pool::JobHandler for Quiet {
    async fn start(&self, _job: &pulse::pool::Job) -> Result<(), pulse::error::BoxError> {
        Ok(())
    }
}

/// What [`telemetry_workload`] keeps running: close it when done.
#[derive(Debug)]
pub struct Workload {
    sink: pulse::streaming::Sink,
    map: pulse::rmap::Map,
    node: pulse::pool::Node,
}

impl Workload {
    /// Closes the sink, the map and the node.
    pub async fn close(&self) -> pulse::Result<()> {
        self.sink.close().await?;
        self.map.close().await?;
        self.node.close().await
    }
}

/// A little of everything that records metrics, under names prefixed by `tag`: events
/// added, delivered to a sink and acknowledged (one of them only after its ack grace ran
/// out and it was delivered again), a request answered, a map joined and written, a job
/// dispatched to a worker.
/// Every series of `pulse::telemetry` then has a value except the map's resync counter,
/// which needs a lost subscription.
pub async fn telemetry_workload(backend: Arc<dyn Backend>, tag: &str) -> pulse::Result<Workload> {
    use pulse::{
        pool::{Node, NodeOptions},
        rmap::{Map, MapOptions},
        streaming::{SinkOptions, Start, Stream, StreamOptions},
    };
    let stream = Stream::new(
        backend.clone(),
        &format!("{tag}-events"),
        StreamOptions::default(),
    )?;
    let options = SinkOptions::default()
        .with_start(Start::Oldest)
        .with_ack_grace(std::time::Duration::from_millis(300))
        .with_check_interval(std::time::Duration::from_millis(50));
    let sink = stream.new_sink("billing", options).await?;
    let mut todo = sink.subscribe()?;
    for i in 0..3 {
        stream.add("created", format!("order {i}")).await?;
    }
    for i in 0..3 {
        let event = got(todo.recv().await)?;
        if i < 2 {
            sink.ack(&event).await?;
        }
    }
    // The third was not acknowledged: past the grace it comes again.
    let again = got(todo.recv().await)?;
    sink.ack(&again).await?;
    // A request answered by the sink (the caller's inbox has its series).
    let options =
        pulse::rpc::RequestOptions::default().with_timeout(std::time::Duration::from_secs(10));
    let asking = stream.request(pulse::streaming::NewEvent::new("price", "tea"), options);
    let answering = async {
        let request = got(todo.recv().await)?;
        sink.reply(&request, "3 EUR").await
    };
    let (reply, answered) = tokio::join!(asking, answering);
    reply?;
    answered?;
    let map = Map::join(
        backend.clone(),
        &format!("{tag}-settings"),
        MapOptions::default(),
    )
    .await?;
    map.set("mode", "fast").await?;
    let node = Node::join(backend, &format!("{tag}-jobs"), NodeOptions::default()).await?;
    node.add_worker(PrintingHandler {
        label: "worker".to_owned(),
    })
    .await?;
    node.dispatch_job("job-1", "payload").await?;
    Ok(Workload { sink, map, node })
}
