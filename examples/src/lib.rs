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

/// The Redis backend when `PULSE_REDIS_URL` is set, the memory backend otherwise.
pub async fn backend_from_env() -> pulse::Result<Arc<dyn Backend>> {
    match std::env::var("PULSE_REDIS_URL") {
        Ok(url) => Ok(Arc::new(pulse_redis::RedisBackend::connect(&url).await?)),
        Err(_) => Ok(Arc::new(pulse_memory::MemoryBackend::new())),
    }
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
