//! # pulse-memory
//!
//! An in-process implementation of every [`pulse::backend`] trait: the embedded default and
//! the way to unit-test services that use Pulse, with no server to run.
//!
//! Semantics follow the Redis backend exactly (both pass `pulse-conformance`), with these
//! properties of its own:
//! - one critical section ([`std::sync::Mutex`]) holds all data, so each atomic operation is
//!   trivially indivisible and notices are published in commit order;
//! - blocked readers sleep on a [`tokio::sync::Notify`] and are woken by the append, deletion
//!   or group change that concerns them — there is no polling;
//! - time (expiry, idle times, blocking deadlines) is `tokio::time`, so tests can use
//!   tokio's paused clock;
//! - data lives as long as the backend value and its clones (they share state).
//!
//! ```
//! use pulse::backend::{AddOptions, Backend, EntryId, StreamOps};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulse::Result<()> {
//! let backend = pulse_memory::MemoryBackend::new();
//! let id = backend
//!     .stream_add("events", vec![("n".into(), "hello".into())], &AddOptions::default())
//!     .await?
//!     .expect("created");
//! let read = backend.stream_read(&[("events".into(), EntryId::ZERO)], 10, None).await?;
//! assert_eq!(read[0].entries[0].id, id);
//! # Ok(()) }
//! ```

mod delayed;
mod group_ops;
mod maps;
mod ops;
mod state;
mod streams;

use std::sync::{Arc, Mutex, MutexGuard};

use pulse::backend::PubSubEvent;
use state::State;

/// The in-memory backend. Cloning it shares the same data.
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave an operation half-applied in a way
        // later calls could observe as a broken invariant of the *backend*; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fault injection for tests: behaves like a lost and re-established pub/sub connection.
    /// Every subscription receives [`PubSubEvent::Lost`] then [`PubSubEvent::Restored`];
    /// nothing published in between exists, since this happens in one step.
    pub fn interrupt_subscriptions(&self) {
        let st = self.lock();
        for sub in st.subscribers.values() {
            let _ = sub.tx.send(PubSubEvent::Lost);
            let _ = sub.tx.send(PubSubEvent::Restored);
        }
    }
}

impl pulse::Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }
}
