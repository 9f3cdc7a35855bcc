//! What a reopened file holds: everything written, with its expiry and idle times, and a
//! bounded stream stays bounded on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, time::Duration};

use pulse::backend::{
    AddOptions, AtomicOps, EntryId, GroupOps, GroupStart, HashOps, KeyExpiry, KeyOps, StreamOps,
    Ttl,
};
use pulse_redb::{RedbBackend, RedbOptions};

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pulse-redb-persist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn fields(text: &str) -> Vec<(String, bytes::Bytes)> {
    vec![("n".into(), bytes::Bytes::copy_from_slice(text.as_bytes()))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_file_holds_streams_groups_leases_and_expiry() {
    let path = temp_file("reopen.redb");
    let b = RedbBackend::open(&path, RedbOptions::default())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = b
            .stream_add("s", fields(&format!("e{i}")), &AddOptions::default())
            .await;
        ids.push(id.unwrap().unwrap());
    }
    b.group_create("s", "g", GroupStart::After(EntryId::ZERO), false)
        .await
        .unwrap();
    let read = b
        .group_read("g", "c1", &["s".into()], 3, None, false)
        .await
        .unwrap();
    assert_eq!(read[0].entries.len(), 3);
    b.group_ack("s", "g", &[ids[0]]).await.unwrap();
    b.group_set_idle("s", "g", "c1", &[ids[1]], Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(b
        .lease_acquire("lease", "me", Duration::from_secs(300))
        .await
        .unwrap());
    assert!(b
        .lease_acquire("short", "me", Duration::from_millis(200))
        .await
        .unwrap());
    b.stream_remove("s", &[ids[4]]).await.unwrap();
    let before = b.stream_info("s").await.unwrap().unwrap();
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await; // "short" lapses while closed

    let b = RedbBackend::open(&path, RedbOptions::default())
        .await
        .unwrap();
    let entries = b
        .stream_range("s", EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    assert_eq!(
        entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[..4].to_vec(),
        "entries, the removed one gone"
    );
    assert_eq!(entries[2].fields[0].1, "e2");
    let after = b.stream_info("s").await.unwrap().unwrap();
    assert_eq!(
        after.last_id, before.last_id,
        "the last ID survives a removal"
    );
    let pending = b
        .group_pending("s", "g", None, EntryId::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![ids[1], ids[2]],
        "the acknowledged one stays acknowledged"
    );
    assert!(
        pending[0].idle >= Duration::from_secs(3600),
        "{:?}",
        pending[0].idle
    );
    assert!(
        pending[1].idle < Duration::from_secs(60),
        "{:?}",
        pending[1].idle
    );
    // The group resumes after what it delivered.
    let next = b
        .group_read("g", "c2", &["s".into()], 10, None, false)
        .await
        .unwrap();
    assert_eq!(
        next[0].entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[3]]
    );
    // A lease set before the restart is honoured after it; one that lapsed is gone.
    assert!(!b
        .lease_acquire("lease", "other", Duration::from_secs(1))
        .await
        .unwrap());
    match b.expiry("lease").await.unwrap() {
        KeyExpiry::In(left) => assert!(left > Duration::from_secs(200), "{left:?}"),
        other => panic!("{other:?}"),
    }
    assert!(!b.exists("short").await.unwrap());
    assert!(b
        .lease_acquire("short", "other", Duration::from_secs(1))
        .await
        .unwrap());
    // Expiry set with the contract's TTLs too.
    b.stream_add("t", fields("x"), &AddOptions::default())
        .await
        .unwrap();
    assert!(b
        .expire("t", Ttl::Sliding(Duration::from_secs(100)))
        .await
        .unwrap());
    drop(b);
    let b = RedbBackend::open(&path, RedbOptions::default())
        .await
        .unwrap();
    assert!(matches!(b.expiry("t").await.unwrap(), KeyExpiry::In(_)));
    assert_eq!(b.hash_len("nothing").await.unwrap(), 0);
    drop(b);
    let _ = std::fs::remove_file(&path);
}

/// A stream trimmed to 1000 entries of 1 KiB, written 30 times over: the file stops
/// growing (freed pages are reused), whatever the number of events ever added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_stream_stays_bounded_on_disk() {
    let path = temp_file("bounded.redb");
    let b = RedbBackend::open(&path, RedbOptions::default())
        .await
        .unwrap();
    let options = AddOptions::default().with_max_len(1000);
    let payload = "x".repeat(1024);
    let mut sizes = Vec::new();
    for _round in 0..30 {
        let batch: Vec<_> = (0..1000).map(|_| fields(&payload)).collect();
        for chunk in batch.chunks(100) {
            b.stream_add_batch("s", chunk.to_vec(), &options)
                .await
                .unwrap();
        }
        sizes.push(std::fs::metadata(&path).unwrap().len());
    }
    eprintln!("file sizes by round: {sizes:?}");
    let (early, last) = (sizes[4], sizes[29]);
    assert!(
        last <= early * 2,
        "the file grew from {early} to {last} bytes: {sizes:?}"
    );
    assert_eq!(b.stream_info("s").await.unwrap().unwrap().length, 1000);
    drop(b);
    let _ = std::fs::remove_file(&path);
}
