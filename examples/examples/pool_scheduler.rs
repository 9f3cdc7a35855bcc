//! A scheduler: every two seconds one node of pool `demo-pool` asks a producer which
//! jobs should run; after five rounds the schedule ends and stops its jobs. Run it next to
//! `pool_worker` processes (several schedulers share the rounds: each round runs once):
//!
//! ```text
//! PULSE_REDIS_URL=redis://127.0.0.1:6379/ cargo run --example pool_scheduler
//! ```

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use pulse::async_trait;
use pulse::pool::{Node, NodeOptions, Plan, Producer};

struct Rotation {
    round: AtomicU32,
}

#[async_trait]
impl Producer for Rotation {
    fn name(&self) -> &str {
        "rotation"
    }

    async fn plan(&self) -> Result<Plan, pulse::error::BoxError> {
        let round = self.round.fetch_add(1, Ordering::SeqCst);
        println!("round {round}: planning");
        if round >= 5 {
            return Ok(Plan::done());
        }
        // Two jobs per round, rotating; everything else this schedule started is stopped.
        Ok(Plan::new()
            .start(format!("shift-{}", round % 3), "on duty")
            .start("always-on", "")
            .stop_all())
    }
}

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let node = Node::join(backend, "demo-pool", NodeOptions::default()).await?;
    if std::env::var("PULSE_REDIS_URL").is_err() {
        // Alone on the memory backend: host a worker so the jobs have somewhere to run.
        node.add_worker(pulse_examples::PrintingHandler {
            label: "local worker".into(),
        })
        .await?;
    }
    let schedule = node
        .schedule(
            Rotation {
                round: AtomicU32::new(0),
            },
            Duration::from_secs(2),
        )
        .await?;
    while !schedule.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("schedule finished; last error: {:?}", schedule.last_error());
    node.close().await
}
