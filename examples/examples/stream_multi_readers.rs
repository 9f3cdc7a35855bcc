//! Several readers of one stream: each one sees every event (fan-out).
//!
//! `cargo run --example stream_multi_readers` (memory) or with `PULSE_REDIS_URL` (Redis).

use pulse::streaming::{ReaderOptions, Start, Stream, StreamOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let stream = Stream::new(
        backend,
        &format!("news-{}", pulse_examples::run_id()),
        StreamOptions::default(),
    )?;
    let opts = ReaderOptions::default().with_start(Start::Oldest);
    let (dashboard, archiver) = (
        stream.new_reader(opts.clone()).await?,
        stream.new_reader(opts).await?,
    );
    let (mut d, mut a) = (dashboard.subscribe()?, archiver.subscribe()?);
    for headline in ["rust 2027 released", "redis 8 is out"] {
        stream.add("headline", headline).await?;
    }
    for (who, rx) in [("dashboard", &mut d), ("archiver", &mut a)] {
        for _ in 0..2 {
            if let Some(e) = rx.recv().await {
                println!("{who} got: {}", String::from_utf8_lossy(&e.payload));
            }
        }
    }
    dashboard.close().await?;
    archiver.close().await?;
    stream.destroy().await
}
