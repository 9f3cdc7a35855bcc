//! A poison event reaches the dead letters and is requeued once the bug is fixed.
//!
//! The sink gives up after three deliveries (`max_deliveries`); the handler fails the
//! poison event each time with a reason (`Sink::fail`), which travels to the dead letter.
//! An operator lists the dead letters, reads why, and requeues it: it comes back into the
//! stream as a new event, and this time the handler takes it.
//!
//! `cargo run --example stream_dead_letters` (memory) or with `PULSE_REDIS_URL` (Redis).

use std::time::Duration;

use pulse::streaming::{NewEvent, SinkOptions, Start, Stream, StreamOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let stream = Stream::new(
        backend,
        &format!("payments-{}", pulse_examples::run_id()),
        StreamOptions::default(),
    )?;
    let options = SinkOptions::default()
        .with_start(Start::Oldest)
        .with_ack_grace(Duration::from_millis(500))
        .with_check_interval(Duration::from_millis(50))
        .with_max_deliveries(3);
    let sink = stream.new_sink("charger", options).await?;
    let mut events = sink.subscribe()?;
    stream.add("charge", "order-1: 10 EUR").await?;
    stream
        .add_event(NewEvent::new("charge", "order-2: ten EUR").with_header("currency", "EUR"))
        .await?;

    // The handler cannot parse "ten": it fails the event on each delivery.
    let mut fixed = false;
    let dead = stream.dead_letters("charger")?;
    loop {
        let event = pulse_examples::got(events.recv().await)?;
        let payload = String::from_utf8_lossy(&event.payload).into_owned();
        if payload.contains("ten") && !fixed {
            println!(
                "delivery {} of {payload:?}: cannot parse the amount",
                event.deliveries
            );
            sink.fail(&event, "amount is not a number: \"ten\"").await?;
            if event.deliveries < 3 {
                continue;
            }
            // The third failure moved it to the dead letters.
            for letter in dead.list(10).await? {
                println!(
                    "dead letter {}: {:?} from {} after {} deliveries, because {}",
                    letter.id,
                    String::from_utf8_lossy(&letter.event.payload),
                    letter.event.stream,
                    letter.deliveries,
                    letter.error.as_deref().unwrap_or("(no reason)"),
                );
                fixed = true; // the operator fixes the handler, then requeues
                let again = dead.requeue(letter.id).await?;
                println!("requeued as {again}");
            }
            continue;
        }
        println!("charged {payload:?} (delivery {})", event.deliveries);
        sink.ack(&event).await?;
        if payload.contains("ten") {
            break;
        }
    }
    println!("dead letters left: {}", dead.list(10).await?.len());
    sink.close().await?;
    dead.purge_all().await?;
    stream.destroy().await
}
