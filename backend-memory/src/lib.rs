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
//! - data lives as long as the backend value and its clones (they share state);
//! - a [journaled](MemoryBackend::journaled) backend also reports every change it makes,
//!   so that another store can keep them ([`journal`]; `pulse-redb` writes them to disk).
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
pub mod journal;
mod maps;
mod ops;
mod state;
mod streams;

use std::{
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex, MutexGuard},
};

use journal::{Change, Journal};
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

    /// An empty backend that journals its changes: each operation's changes can be taken
    /// with [`take_changes`](Self::take_changes), in the order operations made them, and
    /// `on_change` is called (under the state lock: it must only signal) whenever there
    /// are new ones.
    ///
    /// ```
    /// use pulse::backend::AtomicOps;
    /// use pulse_memory::{journal::Change, MemoryBackend};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> pulse::Result<()> {
    /// let backend = MemoryBackend::journaled(std::sync::Arc::new(|| {}));
    /// backend.lease_acquire("lease", "me", std::time::Duration::from_secs(5)).await?;
    /// let (changes, position) = backend.take_changes();
    /// assert_eq!(position, changes.len() as u64);
    /// assert!(changes.iter().any(|c| matches!(c, Change::Str { key, .. } if key == "lease")));
    /// # Ok(()) }
    /// ```
    pub fn journaled(on_change: journal::OnChange) -> Self {
        let backend = Self::default();
        backend.lock().journal = Some(Journal::new(on_change));
        backend
    }

    /// Takes the changes made since the last call (empty without a journal), and the
    /// journal position after them: [`journal_position`](Self::journal_position) counts
    /// every change ever made, so a writer that read position `p` after its operation
    /// knows its changes are taken once a call returned a position of at least `p`.
    pub fn take_changes(&self) -> (Vec<Change>, u64) {
        let mut st = self.lock();
        match &mut st.journal {
            Some(j) => (std::mem::take(&mut j.changes), j.position),
            None => (Vec::new(), 0),
        }
    }

    /// How many changes were ever made (0 without a journal).
    pub fn journal_position(&self) -> u64 {
        self.lock().journal.as_ref().map_or(0, |j| j.position)
    }

    /// Applies changes read back from where a journal was kept (in the order they were
    /// made, or grouped by key with each key's [`Change::Key`] first), producing no new
    /// changes. For an empty journaled backend being restored, before it is shared.
    pub fn restore(&self, changes: impl IntoIterator<Item = Change>) {
        let mut st = self.lock();
        for change in changes {
            st.restore(change);
        }
        st.flush_journal(false);
    }

    fn lock(&self) -> Guard<'_> {
        // A panic while holding the lock cannot leave an operation half-applied in a way
        // later calls could observe as a broken invariant of the *backend*; keep serving.
        Guard(
            self.state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
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

/// The state lock; releasing it records what the operation changed (journaled backends).
struct Guard<'a>(MutexGuard<'a, State>);

impl Deref for Guard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.0
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.flush_journal(true);
    }
}

impl pulse::Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }
}
