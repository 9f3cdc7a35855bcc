//! A tour of the backend contract that everything in Pulse is built on.
//!
//! Runs on the in-memory backend by default and on Redis when `PULSE_REDIS_URL` is set:
//!
//! ```text
//! cargo run --example backend_tour
//! PULSE_REDIS_URL=redis://127.0.0.1:6379/ cargo run --example backend_tour
//! ```
//!
//! It shows an atomic map write with its change notice, a consumer group sharing events
//! between two workers, and an unacknowledged event redelivered after its worker "died".

use std::time::Duration;

use bytes::Bytes;
use pulse::{
    backend::{AddOptions, GroupStart, MapTarget, PubSubEvent, SetCondition},
    codec::MapNotice,
    keys::Keyspace,
};

#[tokio::main]
async fn main() -> pulse::Result<()> {
    pulse_examples::init_logs();
    let backend = pulse_examples::backend_from_env().await?;
    println!("backend: {}", backend.kind());
    // A unique prefix per run, so repeated runs against one Redis never collide.
    let keys = Keyspace::new(format!("demo-{}", pulse_examples::run_id()))?;

    // 1. An atomic map write: change, revision and notice in one step.
    let map_keys = keys.map("settings")?;
    let map = MapTarget::new(map_keys.hash, map_keys.channel);
    let mut notices = backend
        .subscribe(std::slice::from_ref(&map.channel))
        .await?;
    let first = backend
        .map_set(&map, "mode", Bytes::from("fast"), SetCondition::IfAbsent)
        .await?;
    let second = backend
        .map_set(&map, "mode", Bytes::from("slow"), SetCondition::IfAbsent)
        .await?;
    println!(
        "set-if-absent: first written={}, second written={} (kept {:?})",
        first.written, second.written, second.previous
    );
    if let Some(PubSubEvent::Message { payload, .. }) = notices.recv().await {
        let n = MapNotice::decode(&payload)?;
        println!("notice: rev {} {:?}", n.rev, n.change);
    }

    // 2. A consumer group: two workers share the events.
    let stream = keys.stream("orders")?;
    backend
        .group_create(&stream, "billing", GroupStart::Newest, true)
        .await?;
    let events: Vec<_> = (1..=4)
        .map(|i| vec![("order".to_owned(), Bytes::from(format!("#{i}")))])
        .collect();
    backend
        .stream_add_batch(&stream, events, &AddOptions::default().with_max_len(10_000))
        .await?;
    let alice = backend
        .group_read(
            "billing",
            "alice",
            std::slice::from_ref(&stream),
            2,
            None,
            false,
        )
        .await?;
    let bob = backend
        .group_read(
            "billing",
            "bob",
            std::slice::from_ref(&stream),
            2,
            Some(Duration::from_secs(1)),
            false,
        )
        .await?;
    for (who, got) in [("alice", &alice), ("bob", &bob)] {
        let orders: Vec<String> = got
            .iter()
            .flat_map(|b| &b.entries)
            .map(|e| String::from_utf8_lossy(&e.fields[0].1).into_owned())
            .collect();
        println!("{who} got {orders:?}");
    }
    let alice_ids: Vec<_> = alice
        .iter()
        .flat_map(|b| &b.entries)
        .map(|e| e.id)
        .collect();
    backend.group_ack(&stream, "billing", &alice_ids).await?;

    // 3. Bob "dies" without acking: after the grace period his events go to carol.
    let grace = Duration::from_millis(200);
    tokio::time::sleep(grace).await;
    let claimed = backend
        .group_claim_idle(
            &stream,
            "billing",
            "carol",
            grace,
            pulse::backend::EntryId::ZERO,
            100,
        )
        .await?;
    println!(
        "carol reclaimed {} unacked event(s) from bob",
        claimed.entries.len()
    );
    let ids: Vec<_> = claimed.entries.iter().map(|e| e.id).collect();
    backend.group_ack(&stream, "billing", &ids).await?;
    let pending = backend.group_pending_summary(&stream, "billing").await?;
    println!("pending after acks: {}", pending.count);

    backend.delete(&[stream, map.hash.clone()]).await?;
    Ok(())
}
