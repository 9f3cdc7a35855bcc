//! Two sinks on one stream: each sink gets every event once, split between its instances.
//!
//! `cargo run --example stream_multi_sinks` (memory) or with `PULSE_REDIS_URL` (Redis).

use std::time::Duration;

use pulse::streaming::{SinkOptions, Start, Stream, StreamOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let stream = Stream::new(
        backend,
        &format!("orders-{}", pulse_examples::run_id()),
        StreamOptions::default(),
    )?;
    let opts = SinkOptions::default().with_start(Start::Oldest);
    // Two instances of "billing" share its events; "shipping" sees all of them too.
    let billing = [
        stream.new_sink("billing", opts.clone()).await?,
        stream.new_sink("billing", opts.clone()).await?,
    ];
    let shipping = stream.new_sink("shipping", opts).await?;
    let mut billing_rx = [billing[0].subscribe()?, billing[1].subscribe()?];
    let mut shipping_rx = shipping.subscribe()?;
    for i in 1..=4 {
        stream.add("order", format!("#{i}")).await?;
    }
    for _ in 0..4 {
        let e = pulse_examples::got(shipping_rx.recv().await)?;
        println!("shipping: {}", String::from_utf8_lossy(&e.payload));
        shipping.ack(&e).await?;
    }
    let mut billed = 0;
    while billed < 4 {
        for (i, rx) in billing_rx.iter_mut().enumerate() {
            if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                println!(
                    "billing instance {i}: {}",
                    String::from_utf8_lossy(&e.payload)
                );
                billing[i].ack(&e).await?;
                billed += 1;
            }
        }
    }
    for s in billing.iter().chain([&shipping]) {
        s.close().await?;
    }
    stream.destroy().await
}
