//! The Pulse demo: a keyed worker pool in one process.
//!
//! ```text
//! cargo run --example demo                                   # memory backend
//! PULSE_REDIS_URL=redis://127.0.0.1:6379/ cargo run --example demo
//! ```
//!
//! Two nodes join a pool with one worker each; six jobs are dispatched and spread by key;
//! a third worker joins and takes its share; the first worker leaves and its jobs move.
//! Every start and stop is printed by the handlers, and a table shows where each job runs.

use std::time::Duration;

use pulse::pool::{Node, NodeOptions};
use pulse_examples::PrintingHandler;

async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn show(node: &Node, names: &[(String, &str)]) {
    println!("  where each job runs:");
    for key in node.job_keys() {
        let owner = node.job_owner(&key).unwrap_or_default();
        let label = names
            .iter()
            .find(|(id, _)| *id == owner)
            .map_or("(moving)", |(_, l)| *l);
        println!("    {key:<8} -> {label}");
    }
}

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    println!("backend: {}", backend.kind());
    let pool = format!("demo-{}", pulse_examples::run_id());
    let options = NodeOptions::default().with_worker_ttl(Duration::from_secs(3));
    let (a, b) = (
        Node::join(backend.clone(), &pool, options.clone()).await?,
        Node::join(backend, &pool, options).await?,
    );

    println!("\n1. two nodes, one worker each");
    let w1 = a
        .add_worker(PrintingHandler {
            label: "worker-1 (node a)".into(),
        })
        .await?;
    let w2 = b
        .add_worker(PrintingHandler {
            label: "worker-2 (node b)".into(),
        })
        .await?;
    let mut names = vec![
        (w1.id().to_owned(), "worker-1"),
        (w2.id().to_owned(), "worker-2"),
    ];

    println!("\n2. dispatch six jobs (each call returns once its worker started it)");
    for (i, city) in ["paris", "tokyo", "lima", "oslo", "cairo", "perth"]
        .iter()
        .enumerate()
    {
        a.dispatch_job(city, format!("sensor feed #{i}")).await?;
    }
    let again = a.dispatch_job("paris", "again").await;
    println!(
        "  dispatching paris again: {}",
        again.map_or_else(|e| e.to_string(), |()| "ok".into())
    );
    settle().await;
    show(&a, &names);

    println!("\n3. a third worker joins node b: it takes about a third of the jobs");
    let w3 = b
        .add_worker(PrintingHandler {
            label: "worker-3 (node b)".into(),
        })
        .await?;
    names.push((w3.id().to_owned(), "worker-3"));
    settle().await;
    show(&a, &names);

    println!("\n4. worker-1 leaves: only its jobs move");
    a.remove_worker(&w1).await?;
    settle().await;
    show(&a, &names);

    println!("\n5. notify one job, stop another");
    a.notify_worker("tokyo", "recalibrate").await?;
    a.stop_job("lima").await?;
    settle().await;
    show(&a, &names);

    println!("\n6. shut the pool down");
    a.shutdown().await?;
    println!("  done: {} jobs left", a.job_keys().len());
    Ok(())
}
