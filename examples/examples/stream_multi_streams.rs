//! One sink over several streams, with a stream added at run time.
//!
//! `cargo run --example stream_multi_streams` (memory) or with `PULSE_REDIS_URL` (Redis).

use pulse::streaming::{SinkOptions, Start, Stream, StreamOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let run = pulse_examples::run_id();
    let eu = Stream::new(
        backend.clone(),
        &format!("eu-{run}"),
        StreamOptions::default(),
    )?;
    let us = Stream::new(backend, &format!("us-{run}"), StreamOptions::default())?;
    let sink = eu
        .new_sink("audit", SinkOptions::default().with_start(Start::Oldest))
        .await?;
    let mut events = sink.subscribe()?;
    eu.add("login", "alice").await?;
    sink.add_stream(&us, None).await?;
    us.add("login", "bob").await?;
    for _ in 0..2 {
        let e = pulse_examples::got(events.recv().await)?;
        println!(
            "{} from {}: {}",
            e.name,
            e.stream,
            String::from_utf8_lossy(&e.payload)
        );
        sink.ack(&e).await?;
    }
    sink.close().await?;
    eu.destroy().await?;
    us.destroy().await
}
