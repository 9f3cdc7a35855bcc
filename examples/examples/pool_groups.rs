//! Worker groups: premium tenants get workers of their own.
//!
//! One pool, two groups: the default group and `premium`, whose range is the keys of
//! tenants 1 and 2 (`tenant-1:`, `tenant-2:`). Jobs run in their key's group; a worker
//! added to `premium` takes only premium jobs; moving tenant 3 into the range moves only
//! tenant 3's jobs; a group without a live worker holds its jobs (they wait, and the pool
//! says so). The pool's events (`Node::events`) show each move as it happens, and
//! `Node::inspect` where everything runs. Memory backend by default; set `PULSE_REDIS_URL`
//! to run it on Redis.
//!
//! ```text
//! cargo run --example pool_groups
//! ```

use std::time::Duration;

use pulse::pool::{JobStatus, Node, NodeOptions, PoolEvent};

async fn show(node: &Node) -> pulse::Result<()> {
    let state = node.inspect().await?;
    for job in &state.jobs {
        let place = match &job.status {
            JobStatus::Running { worker, .. } => format!("runs on {}", short(worker)),
            JobStatus::Waiting { reason, .. } => format!("waits ({reason:?})"),
            _ => "?".to_owned(),
        };
        println!(
            "    {:<12} [{:<8}] {place}, moved {} times",
            job.key, job.group, job.moves
        );
    }
    Ok(())
}

/// The last characters of a worker ID, enough to tell them apart here.
fn short(id: &str) -> &str {
    &id[id.len().saturating_sub(6)..]
}

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let pool = format!("tenants-{}", pulse_examples::run_id());
    let options = NodeOptions::default()
        .with_worker_ttl(Duration::from_secs(3))
        .with_dispatch_timeout(Duration::from_millis(500));
    let node = Node::join(backend, &pool, options).await?;
    // Print the moves as the pool reports them.
    let mut events = node.events()?;
    let printer = tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            match e {
                PoolEvent::JobMoved { key, from, to } => {
                    println!("  event: {key} moved {} -> {}", short(&from), short(&to))
                }
                PoolEvent::JobsWaiting { group, count } => {
                    println!("  event: {count} job(s) of group {group} wait for a worker")
                }
                PoolEvent::RangesChanged => println!("  event: ranges changed"),
                _ => {}
            }
        }
    });

    node.set_group_range("premium", &["tenant-1:", "tenant-2:"])
        .await?;
    let basic = node.add_worker(pulse_examples::Quiet).await?;
    println!(
        "default worker {}; premium has no worker yet",
        short(basic.id())
    );
    for key in [
        "tenant-1:feed",
        "tenant-2:feed",
        "tenant-3:feed",
        "tenant-4:feed",
    ] {
        match node.dispatch_job(key, "").await {
            Ok(()) => {}
            Err(pulse::Error::Timeout { .. }) => {
                println!("  {key} dispatched, waits for a premium worker")
            }
            Err(e) => return Err(e),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    show(&node).await?;

    let premium = node
        .add_worker_in_group("premium", pulse_examples::Quiet)
        .await?;
    println!(
        "premium worker {} joins: only premium jobs go to it",
        short(premium.id())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    show(&node).await?;

    println!("tenant 3 becomes premium: only its job moves");
    node.set_group_range("premium", &["tenant-1:", "tenant-2:", "tenant-3:"])
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    show(&node).await?;

    node.close().await?;
    let _ = printer.await;
    Ok(())
}
