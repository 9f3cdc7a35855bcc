//! Pulse's metrics on a Prometheus endpoint: the application installs
//! `metrics-exporter-prometheus`, and every series of `pulse::telemetry` appears on
//! `/metrics` as the stream, sink, map and pool below do their work.
//!
//! ```text
//! cargo run --example metrics_prometheus              # serves http://127.0.0.1:9464/metrics
//! PULSE_METRICS_ADDR=127.0.0.1:9000 cargo run --example metrics_prometheus
//! ```
//!
//! It keeps serving until Ctrl-C (or for `PULSE_METRICS_SECONDS` seconds).

use std::time::Duration;

use pulse_examples::{backend_from_env, run_id};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    pulse_examples::init_logs();
    let addr: std::net::SocketAddr = std::env::var("PULSE_METRICS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:9464".to_owned())
        .parse()?;
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()?;
    let backend = backend_from_env().await?;
    let tag = format!("metrics-{}", run_id());
    let handles = pulse_examples::telemetry_workload(backend, &tag).await?;
    println!("serving http://{addr}/metrics");
    let seconds = std::env::var("PULSE_METRICS_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    match seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => tokio::signal::ctrl_c().await?,
    }
    handles.close().await?;
    Ok(())
}
