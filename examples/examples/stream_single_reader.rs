//! One reader of one stream: every event, in order.
//!
//! `cargo run --example stream_single_reader` (memory) or with `PULSE_REDIS_URL` (Redis).

use pulse::streaming::{ReaderOptions, Start, Stream, StreamOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let stream = Stream::new(
        backend,
        &format!("sensor-{}", pulse_examples::run_id()),
        StreamOptions::default(),
    )?;
    let reader = stream
        .new_reader(ReaderOptions::default().with_start(Start::Oldest))
        .await?;
    let mut events = reader.subscribe()?;
    for t in [20.5, 21.0, 21.7] {
        stream.add("temperature", t.to_string()).await?;
    }
    for _ in 0..3 {
        if let Some(e) = events.recv().await {
            println!(
                "{} {} = {}",
                e.id,
                e.name,
                String::from_utf8_lossy(&e.payload)
            );
        }
    }
    reader.close().await?;
    stream.destroy().await
}
