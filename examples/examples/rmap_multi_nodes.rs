//! Two nodes sharing one replicated map.
//!
//! With `PULSE_REDIS_URL` set, the second node is a separate process (this program started
//! again with `writer <map name>`), so the map really crosses processes over Redis:
//!
//! ```text
//! PULSE_REDIS_URL=redis://127.0.0.1:6379/ cargo run --example rmap_multi_nodes
//! ```
//!
//! Without it, both nodes run in this process on one memory backend.

use std::time::Duration;

use pulse::rmap::{Map, MapOptions, MapSubscriber};

async fn writer(name: &str) -> pulse::Result<()> {
    let backend = pulse_examples::backend_from_env().await?;
    let map = Map::join(backend, name, MapOptions::default()).await?;
    for city in ["paris", "tokyo", "lima"] {
        map.set(city, format!("online since {}", pulse_examples::run_id()))
            .await?;
        println!("[writer pid {}] set {city}", std::process::id());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    map.increment("visits", 3).await?;
    map.set("done", "yes").await?;
    Ok(())
}

async fn reader(map: Map, mut changes: MapSubscriber) -> pulse::Result<()> {
    // Every change arrives with its key, in commit order, until the writer says "done".
    let wait = Duration::from_secs(30);
    while let Ok(Some(e)) = tokio::time::timeout(wait, changes.recv()).await {
        println!(
            "[reader pid {}] {:?} {:?}",
            std::process::id(),
            e.kind,
            e.key
        );
        if e.key.as_deref() == Some("done") {
            break;
        }
    }
    let mut content: Vec<_> = map
        .snapshot()
        .iter()
        .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
        .collect();
    content.sort();
    println!("[reader] replica now holds: {content:?}");
    Ok(())
}

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("writer") {
        return writer(args.get(2).map_or("rmap-multi", String::as_str)).await;
    }
    let name = format!("rmap-multi-{}", pulse_examples::run_id());
    let backend = pulse_examples::backend_from_env().await?;
    let map = Map::join(backend.clone(), &name, MapOptions::default()).await?;
    let changes = map.subscribe()?;
    if std::env::var("PULSE_REDIS_URL").is_ok() {
        let exe = std::env::current_exe()
            .map_err(|e| pulse::Error::Config(format!("current exe: {e}")))?;
        let mut child = std::process::Command::new(exe)
            .args(["writer", &name])
            .spawn()
            .map_err(|e| pulse::Error::Config(format!("spawn writer: {e}")))?;
        reader(map.clone(), changes).await?;
        let _ = child.wait();
    } else {
        println!("(no PULSE_REDIS_URL: both nodes in this process on the memory backend)");
        let writer_map = Map::join(backend, &name, MapOptions::default()).await?;
        let task = tokio::spawn(reader(map.clone(), changes));
        writer_on(writer_map).await?;
        let _ = task.await;
    }
    map.destroy().await?;
    Ok(())
}

/// The writer's steps on an already joined map (single-process mode).
async fn writer_on(map: Map) -> pulse::Result<()> {
    for city in ["paris", "tokyo", "lima"] {
        map.set(city, "online").await?;
        println!("[writer] set {city}");
    }
    map.increment("visits", 3).await?;
    map.set("done", "yes").await?;
    Ok(())
}
