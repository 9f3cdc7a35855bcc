//! The shared conformance suite on the redb backend: a fresh file per case, fsync on every
//! commit (the default durability).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use pulse_conformance::{conformance_suite, BoxFuture, Faults, Fixture};
use pulse_redb::{RedbBackend, RedbOptions};

/// Fault injection, and the case's file, removed when the case is over.
struct RedbFaults {
    backend: RedbBackend,
    path: PathBuf,
}

impl Faults for RedbFaults {
    fn kill_subscriptions(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.backend.interrupt_subscriptions() })
    }
}

impl Drop for RedbFaults {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn fixture() -> Option<Fixture> {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("pulse-redb-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "case-{}.redb",
        CASE.fetch_add(1, Ordering::Relaxed)
    ));
    let backend = RedbBackend::open(&path, RedbOptions::default())
        .await
        .unwrap();
    Some(Fixture::new(
        Arc::new(backend.clone()),
        Arc::new(RedbFaults { backend, path }),
    ))
}

conformance_suite!(fixture);
