//! A worker process: joins pool `demo-pool` and runs the jobs routed to it until Ctrl-C.
//! Start several (in several terminals) next to `pool_producer` to watch jobs spread and
//! move as workers come and go:
//!
//! ```text
//! PULSE_REDIS_URL=redis://127.0.0.1:6379/ cargo run --example pool_worker
//! PULSE_REDIS_URL=redis://127.0.0.1:6379/ cargo run --example pool_producer
//! ```

use std::time::Duration;

use pulse::pool::{Node, NodeOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let options = NodeOptions::default().with_worker_ttl(Duration::from_secs(5));
    let node = Node::join(backend, "demo-pool", options).await?;
    let label = format!("worker pid {}", std::process::id());
    node.add_worker(pulse_examples::PrintingHandler {
        label: label.clone(),
    })
    .await?;
    println!("{label} ready on pool demo-pool (Ctrl-C to leave; its jobs move to other workers)");
    let _ = tokio::signal::ctrl_c().await;
    node.close().await?;
    println!("{label} left the pool");
    Ok(())
}
