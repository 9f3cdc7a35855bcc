//! One sink (consumer group) with acknowledgements; an unacknowledged event comes back.
//!
//! `cargo run --example stream_single_sink` (memory) or with `PULSE_REDIS_URL` (Redis).

use std::time::Duration;

use pulse::streaming::{SinkOptions, Start, Stream, StreamOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let stream = Stream::new(
        backend,
        &format!("jobs-{}", pulse_examples::run_id()),
        StreamOptions::default(),
    )?;
    let options = SinkOptions::default()
        .with_start(Start::Oldest)
        .with_ack_grace(Duration::from_millis(500));
    let sink = stream.new_sink("workers", options).await?;
    let mut events = sink.subscribe()?;
    stream.add("resize", "photo-1.png").await?;
    stream.add("resize", "photo-2.png").await?;

    let first = pulse_examples::got(events.recv().await)?;
    println!(
        "got {} — pretending to crash before acking it",
        String::from_utf8_lossy(&first.payload)
    );
    let second = pulse_examples::got(events.recv().await)?;
    println!("got {} — acked", String::from_utf8_lossy(&second.payload));
    sink.ack(&second).await?;

    let again = pulse_examples::got(events.recv().await)?;
    println!(
        "redelivered after the grace period: {}",
        String::from_utf8_lossy(&again.payload)
    );
    sink.ack(&again).await?;
    sink.close().await?;
    stream.destroy().await
}
