//! Publish/subscribe with topics: exact topics, patterns and custom predicates.
//!
//! `cargo run --example stream_pubsub` (memory) or with `PULSE_REDIS_URL` (Redis).

use std::time::Duration;

use pulse::streaming::{Filter, NewEvent, ReaderOptions, Start, Stream, StreamOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let stream = Stream::new(
        backend,
        &format!("market-{}", pulse_examples::run_id()),
        StreamOptions::default(),
    )?;
    let opts = ReaderOptions::default().with_start(Start::Oldest);
    let exact = stream
        .new_reader(
            opts.clone()
                .with_filter(Filter::Topic("stocks.nyse".into())),
        )
        .await?;
    let pattern = stream
        .new_reader(opts.clone().with_filter(Filter::pattern(r"^stocks\.")?))
        .await?;
    let big = stream
        .new_reader(opts.with_filter(Filter::custom(|e| e.payload.len() > 3)))
        .await?;
    let mut subs = [
        ("exact stocks.nyse", exact.subscribe()?),
        ("pattern ^stocks\\.", pattern.subscribe()?),
        ("payload > 3 bytes", big.subscribe()?),
    ];
    for (topic, price) in [
        ("stocks.nyse", "101"),
        ("stocks.lse", "99"),
        ("fx.eurusd", "1.0842"),
    ] {
        stream
            .add_event(NewEvent::new("price", price).with_topic(topic))
            .await?;
    }
    for (label, rx) in subs.iter_mut() {
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            println!(
                "[{label}] {} {}",
                e.topic.unwrap_or_default(),
                String::from_utf8_lossy(&e.payload)
            );
        }
    }
    for r in [exact, pattern, big] {
        r.close().await?;
    }
    stream.destroy().await
}
