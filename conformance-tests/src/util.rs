//! Helpers shared by the cases: the per-case context and "eventually" assertions.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use pulse::{
    backend::{MapTarget, PubSubEvent, Subscription},
    Backend,
};

use crate::{flaky::FlakyBackend, Faults, Fixture};

/// What a case receives: the backend, its faults, and a private namespace.
#[derive(Clone)]
pub struct Ctx {
    /// The backend under test.
    pub backend: Arc<dyn Backend>,
    /// Its fault injection.
    pub faults: Arc<dyn Faults>,
    ns: String,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("ns", &self.ns)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    pub(crate) fn new(case: &str, fx: Fixture) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let ns = format!(
            "conf:{case}:{}:{nanos:x}:{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Ctx {
            backend: fx.backend,
            faults: fx.faults,
            ns,
        }
    }

    /// A key private to this case.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{{{name}}}", self.ns)
    }

    /// A keyspace private to this case (for the building blocks: maps, streams, pools).
    pub fn keyspace(&self) -> pulse::keys::Keyspace {
        pulse::keys::Keyspace::new(self.ns.clone()).expect("namespace is a valid prefix")
    }

    /// A fault-injecting wrapper around this case's backend (injecting nothing until told
    /// to), seeded from the clock; the seed is printed so a failing run can be replayed.
    /// Clones share their settings: keep one to steer the faults and hand another, as
    /// `Arc<dyn Backend>`, to the code under test.
    pub fn flaky(&self) -> FlakyBackend {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        eprintln!("{}: fault seed {seed}", self.ns);
        FlakyBackend::new(self.backend.clone(), seed)
    }

    /// The user keys of a map's hash as the store holds them (bookkeeping fields left
    /// out), read from the backend under test itself.
    pub async fn stored_map(&self, hash: &str) -> std::collections::HashMap<String, bytes::Bytes> {
        self.backend
            .hash_get_all(hash)
            .await
            .unwrap()
            .into_iter()
            .filter(|(k, _)| !k.starts_with('='))
            .collect()
    }

    /// A map target private to this case.
    pub fn map(&self, name: &str) -> MapTarget {
        let hash = self.key(name);
        let channel = format!("{hash}:notices");
        MapTarget::new(hash, channel)
    }
}

tokio::task_local! {
    static PATIENCE: Duration;
}

/// Runs a case with `patience` as the bound of its waits (see [`patience`]).
pub(crate) async fn with_patience<F: Future>(patience: Duration, case: F) -> F::Output {
    PATIENCE.scope(patience, case).await
}

/// How long the running case waits for something that must happen: the fixture's
/// [`patience`](crate::Fixture::patience) (outside a case, the default [`crate::PATIENCE`]).
pub fn patience() -> Duration {
    PATIENCE.try_with(|p| *p).unwrap_or(crate::PATIENCE)
}

/// Polls `check` every 10 ms until it returns true; panics after [`patience`] naming `what`.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(patience(), what, check).await
}

/// [`eventually`] with an explicit bound, for cases whose point is *how soon* (a bound
/// shorter than a periodic safety net it must not depend on).
pub(crate) async fn eventually_within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("not true within {limit:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next event of `sub`, panicking after [`patience`].
pub async fn expect_event(sub: &mut Subscription) -> PubSubEvent {
    tokio::time::timeout(patience(), sub.recv())
        .await
        .expect("no pub/sub event in time")
        .expect("subscription closed")
}

/// A pool job handler that does nothing (for cases about the pool's plumbing).
pub(crate) struct Noop;

#[pulse::async_trait]
impl pulse::pool::JobHandler for Noop {
    async fn start(&self, _job: &pulse::pool::Job) -> Result<(), pulse::error::BoxError> {
        Ok(())
    }
    async fn stop(&self, _key: &str) -> Result<(), pulse::error::BoxError> {
        Ok(())
    }
}
