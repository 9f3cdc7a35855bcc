//! A full disk, for real: the test lowers this process's file-size limit (`RLIMIT_FSIZE`,
//! set with util-linux's `prlimit`; `SIGXFSZ` is caught so the process lives), so the file
//! cannot grow and redb's writes fail with `EFBIG` as on a full disk. Writes then fail with
//! [`pulse::Error::Connection`] after the commit timeout while reads go on; once the limit
//! is raised the committer's retry writes everything (redb refuses every call after an
//! I/O error, so the retry has to open the database again), and a reopened file holds every
//! acknowledged write — with fsynced and with eventual durability.
//!
//! The limit is process-wide, so this binary holds this one test and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, process::Command, time::Duration};

use bytes::Bytes;
use pulse::backend::{AddOptions, EntryId, StreamOps};
use pulse_redb::{Durability, RedbBackend, RedbOptions};

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pulse-redb-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Sets this process's soft file-size limit (`None`: back to the hard limit).
fn limit_file_size(bytes: Option<u64>) {
    let soft = bytes.map_or("unlimited".to_owned(), |b| b.to_string());
    let out = Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--fsize={soft}:"),
        ])
        .output()
        .expect("prlimit (util-linux) runs");
    assert!(out.status.success(), "prlimit: {out:?}");
}

fn event(text: &str) -> Vec<(String, Bytes)> {
    vec![("n".into(), Bytes::copy_from_slice(text.as_bytes()))]
}

async fn add(
    b: &RedbBackend,
    stream: &str,
    fields: Vec<(String, Bytes)>,
) -> pulse::Result<EntryId> {
    let id = b.stream_add(stream, fields, &AddOptions::default()).await?;
    Ok(id.expect("no dedup, no limit: always added"))
}

async fn names(b: &RedbBackend, stream: &str) -> Vec<String> {
    let entries = b
        .stream_range(stream, EntryId::ZERO, EntryId::MAX, None)
        .await
        .unwrap();
    entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.fields[0].1).into_owned())
        .collect()
}

/// One round on a fresh file with `durability`.
async fn round(durability: Durability) {
    let path = temp_file(&format!("{durability:?}.redb"));
    let options = RedbOptions {
        durability,
        commit_timeout: Duration::from_secs(1),
        // Eventual: nothing is fsynced on its own during the round, so the rewrite after
        // the failure is what keeps the early writes.
        flush_interval: Duration::from_secs(3600),
        ..RedbOptions::default()
    };
    let b = RedbBackend::open(&path, options.clone()).await.unwrap();
    let mut want = Vec::new();
    for i in 0..50 {
        add(&b, "s", event(&format!("e{i}"))).await.unwrap();
        want.push(format!("e{i}"));
    }

    let size = std::fs::metadata(&path).unwrap().len();
    limit_file_size(Some(size));
    // 8 MiB cannot fit in a file that may not grow.
    let big = vec![("n".to_owned(), Bytes::from(vec![b'x'; 8 << 20]))];
    let refused = match durability {
        // The write waits for its commit, which fails until the timeout.
        Durability::Immediate => add(&b, "s", big).await.unwrap_err(),
        // The write returns at once; waiting for the disk is what fails.
        Durability::Eventual => {
            add(&b, "s", big).await.unwrap();
            b.sync().await.unwrap_err()
        }
    };
    assert!(refused.is_connection(), "{refused:?}");
    let msg = refused.to_string();
    assert!(msg.contains("not written"), "{msg}");
    // Reads go on.
    assert!(names(&b, "s").await.starts_with(&want));
    // Once the failure is older than the commit timeout, writes fail at once.
    let more = add(&b, "s", event("during")).await;
    assert!(more.unwrap_err().is_connection());

    limit_file_size(None);
    // The committer retries on its own (every 200 ms); `sync` says when it got through.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = b.sync().await {
        assert!(
            std::time::Instant::now() < deadline,
            "never written again: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = add(&b, "s", event("after")).await.unwrap();
    drop(b);

    let b = RedbBackend::open(&path, options).await.unwrap();
    let stored = names(&b, "s").await;
    assert!(
        stored.starts_with(&want),
        "acknowledged writes lost: {} kept",
        stored.len()
    );
    // The refused writes were retried with the rest once the disk had room.
    assert_eq!(stored.len(), 53, "{:?}", &stored[50..]);
    assert_eq!(stored[50].len(), 8 << 20);
    assert_eq!(&stored[51..], ["during", "after"]);
    let last = b.stream_info("s").await.unwrap().unwrap().last_id;
    assert_eq!(last, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_then_the_retry_keeps_everything() {
    // The file-size signal would end the process; caught, the write fails with EFBIG.
    let _caught =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25)).unwrap();
    round(Durability::Immediate).await;
    round(Durability::Eventual).await;
}
