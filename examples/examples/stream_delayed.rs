//! Reminders that arrive when they are due, in due order, and one cancelled in between.
//!
//! Three reminders are added out of order, due in 300, 100 and 200 ms, and a fourth due in
//! 400 ms is cancelled. A reader sees nothing until the first is due, then the three in due
//! order, each no earlier than its due time; the reader's mover hands them to the stream.
//!
//! `cargo run --example stream_delayed` (memory) or with `PULSE_REDIS_URL` (Redis).

use std::time::{Duration, SystemTime};

use pulse::streaming::{NewEvent, ReaderOptions, Start, Stream, StreamOptions};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    let stream = Stream::new(
        backend,
        &format!("reminders-{}", pulse_examples::run_id()),
        StreamOptions::default(),
    )?;
    let reader = stream
        .new_reader(ReaderOptions::default().with_start(Start::Oldest))
        .await?;
    let mut events = reader.subscribe()?;
    let start = SystemTime::now();
    for (what, ms) in [
        ("call Ada", 300),
        ("water plants", 100),
        ("ship order", 200),
    ] {
        let event = NewEvent::new("remind", what).deliver_after(Duration::from_millis(ms));
        let at = stream.add_delayed(event).await?;
        println!("{what:?} held as {} until +{ms} ms", at.id);
    }
    let dropped = NewEvent::new("remind", "never mind").deliver_after(Duration::from_millis(400));
    let dropped = stream.add_delayed(dropped).await?;
    let info = stream.delayed().await?;
    println!(
        "{} delayed, stream length {}",
        info.count,
        stream.len().await?
    );
    println!("cancelled: {}", stream.cancel_delayed(&dropped.id).await?);
    for _ in 0..3 {
        let event = pulse_examples::got(events.recv().await)?;
        let after = start.elapsed().unwrap_or_default().as_millis();
        println!("+{after} ms: {}", String::from_utf8_lossy(&event.payload));
    }
    reader.close().await?;
    stream.destroy().await?;
    Ok(())
}
