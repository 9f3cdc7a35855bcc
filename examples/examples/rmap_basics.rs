//! Replicated map basics: join, write, read locally, watch changes.
//!
//! ```text
//! cargo run --example rmap_basics                                   # memory backend
//! PULSE_REDIS_URL=redis://127.0.0.1:6379/ cargo run --example rmap_basics
//! ```

use pulse::rmap::{Map, MapOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let name = format!("rmap-basics-{}", pulse_examples::run_id());
    let map = Map::join(backend.clone(), &name, MapOptions::default()).await?;
    let mut changes = map.subscribe()?;

    // Writes are atomic in the backend; set_and_wait also waits for the local replica.
    map.set_and_wait("greeting", "hello").await?;
    println!("local read: greeting = {:?}", map.get("greeting"));
    println!(
        "set-if-absent again: {}",
        map.set_if_absent("greeting", "hi").await?
    );
    let swapped = map.test_and_set("greeting", "hello", "bonjour").await?;
    println!("test-and-set hello -> bonjour: written={}", swapped.written);
    println!("counter = {}", map.increment("counter", 5).await?);
    println!("list = {:?}", map.append("tags", ["red", "blue"]).await?);
    map.delete("counter").await?;
    map.reset().await?;

    // Every change reaches subscribers with its key and kind, in commit order.
    // Six writes changed the map (the refused set-if-absent published nothing).
    for _ in 0..6 {
        let wait = tokio::time::timeout(std::time::Duration::from_secs(10), changes.recv());
        match wait.await {
            Ok(Some(e)) => println!("event: {:?} {:?} (rev {})", e.kind, e.key, e.revision.rev),
            _ => break,
        }
    }
    println!("after reset: {} keys", map.len());
    map.destroy().await?;
    map.close().await?;
    Ok(())
}
