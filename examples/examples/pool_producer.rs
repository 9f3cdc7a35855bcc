//! A producer process: dispatches jobs to pool `demo-pool` from a client-only node.
//!
//! ```text
//! PULSE_REDIS_URL=redis://127.0.0.1:6379/ cargo run --example pool_producer [count] [stop]
//! ```
//! With `stop`, it stops the jobs it dispatched instead.

use pulse::pool::{Node, NodeOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(10);
    let stop = args.get(2).is_some_and(|a| a == "stop");
    let backend = pulse_examples::backend_from_env().await?;
    let node = Node::join(
        backend,
        "demo-pool",
        NodeOptions::default().with_client_only(true),
    )
    .await?;
    for i in 0..count {
        let key = format!("job-{i}");
        if stop {
            println!("stop {key}: existed={}", node.stop_job(&key).await?);
        } else {
            match node.dispatch_job(&key, format!("payload {i}")).await {
                Ok(()) => println!("dispatched {key}: started"),
                Err(e) => println!("dispatch {key}: {e}"),
            }
        }
    }
    node.close().await
}
