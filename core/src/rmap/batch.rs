//! Group commit of one map's concurrent sets.
//!
//! A set goes straight to the backend while fewer than [`IN_FLIGHT`] writes of this map are
//! outstanding, so an uncontended write costs exactly one `map_set` round trip. Beyond
//! that, sets queue; whichever outstanding call finishes first carries on (in a spawned
//! task, so no caller's future does another's work) with the queue as one
//! [`map_set_many`](crate::backend::AtomicOps::map_set_many) batch, until the queue is
//! empty. Under load, hundreds of writes then share a round trip and a script call.
//!
//! Invariants: every queued write is sent or failed exactly once, its caller receives its
//! own outcome; a write never waits for a write queued after it; the `busy` count always
//! equals the direct calls and flush tasks alive, even when a caller's future is dropped
//! mid-call (its guard hands the queue on).
//!
//! Contract with [`Map`](super::Map): keys and payloads are validated before a write gets
//! here; a caller that stops waiting does not cancel its write (as with any request already
//! sent to a backend).

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::{
    backend::{MapTarget, MapWrite, SetOutcome},
    Backend, Error, Result,
};

/// How many direct calls or batches of one map may be outstanding at once: enough to keep
/// the backend busy while replies are processed, few enough that a burst queues into
/// batches.
const IN_FLIGHT: usize = 4;

/// Most writes sent as one batch.
const MAX_BATCH: usize = 512;

struct Queued {
    write: MapWrite,
    done: oneshot::Sender<Result<SetOutcome>>,
}

#[derive(Default)]
struct State {
    busy: usize,
    queue: Vec<Queued>,
}

/// Where writes go: the backend (a seam so tests can hold writes in flight).
#[async_trait]
pub(crate) trait Writer: Send + Sync + 'static {
    async fn one(&self, target: &MapTarget, write: MapWrite) -> Result<SetOutcome>;
    async fn many(&self, target: &MapTarget, writes: Vec<MapWrite>) -> Result<Vec<SetOutcome>>;
}

#[async_trait]
impl Writer for Arc<dyn Backend> {
    async fn one(&self, target: &MapTarget, w: MapWrite) -> Result<SetOutcome> {
        self.map_set(target, &w.key, w.value, w.condition).await
    }

    async fn many(&self, target: &MapTarget, writes: Vec<MapWrite>) -> Result<Vec<SetOutcome>> {
        self.map_set_many(target, writes).await
    }
}

/// The write path of one map (shared by its handles).
pub(crate) struct Batcher<W: Writer = Arc<dyn Backend>> {
    writer: W,
    /// The map's target; each call or batch gets a fresh epoch seed.
    target: MapTarget,
    state: Mutex<State>,
}

impl<W: Writer> Batcher<W> {
    pub(crate) fn new(writer: W, target: MapTarget) -> Arc<Self> {
        Arc::new(Batcher {
            writer,
            target,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `write`, directly or as part of a batch.
    pub(crate) async fn set(self: &Arc<Self>, write: MapWrite) -> Result<SetOutcome> {
        let direct = {
            let mut st = self.state();
            if st.busy < IN_FLIGHT {
                st.busy += 1;
                Ok(write)
            } else {
                let (done, rx) = oneshot::channel();
                st.queue.push(Queued { write, done });
                Err(rx)
            }
        };
        match direct {
            Ok(write) => {
                let _busy = Busy {
                    batcher: self.clone(),
                };
                self.writer
                    .one(&self.target.with_fresh_epoch(), write)
                    .await
            }
            Err(rx) => rx
                .await
                .unwrap_or_else(|_| Err(Error::connection("a batched map write was abandoned"))),
        }
    }

    /// Releases one busy slot with no task left to send the queue (the runtime is gone):
    /// queued writes fail as abandoned rather than wait forever.
    fn abandon(&self) {
        let queued = {
            let mut st = self.state();
            st.busy -= 1;
            std::mem::take(&mut st.queue)
        };
        drop(queued);
    }

    /// Takes the next batch, or releases one busy slot when there is nothing to send.
    fn next_batch(&self) -> Option<Vec<Queued>> {
        let mut st = self.state();
        if st.queue.is_empty() {
            st.busy -= 1;
            return None;
        }
        let n = st.queue.len().min(MAX_BATCH);
        Some(st.queue.drain(..n).collect())
    }
}

/// One busy slot held by a direct call; on drop (completion or cancellation) it flushes
/// the queue in a task or frees the slot.
struct Busy<W: Writer> {
    batcher: Arc<Batcher<W>>,
}

impl<W: Writer> Drop for Busy<W> {
    fn drop(&mut self) {
        let Some(first) = self.batcher.next_batch() else {
            return;
        };
        // The slot passes to the flush task; if there is no runtime to run it (the process
        // is shutting down), dropping the slot fails what is queued.
        let slot = FlushSlot {
            batcher: self.batcher.clone(),
            held: true,
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(flush(slot, first));
        }
    }
}

/// Sends batches until the queue is empty, then frees its busy slot.
/// `slot` comes in with the future, so a task dropped before it ever ran (the runtime
/// shutting down) still releases it.
async fn flush<W: Writer>(mut slot: FlushSlot<W>, first: Vec<Queued>) {
    let batcher = slot.batcher.clone();
    let mut batch = first;
    loop {
        let (writes, dones): (Vec<MapWrite>, Vec<_>) =
            batch.into_iter().map(|q| (q.write, q.done)).unzip();
        let n = writes.len();
        match batcher
            .writer
            .many(&batcher.target.with_fresh_epoch(), writes)
            .await
        {
            Ok(outcomes) if outcomes.len() == n => {
                for (done, outcome) in dones.into_iter().zip(outcomes) {
                    let _ = done.send(Ok(outcome));
                }
            }
            Ok(outcomes) => {
                let e = Error::malformed(
                    "map_set_many",
                    format!("{} outcomes for {n} writes", outcomes.len()),
                );
                for done in dones {
                    let _ = done.send(Err(e.for_each_waiter()));
                }
            }
            Err(e) => {
                for done in dones {
                    let _ = done.send(Err(e.for_each_waiter()));
                }
            }
        }
        match batcher.next_batch() {
            Some(next) => batch = next,
            None => {
                slot.held = false; // next_batch released it
                return;
            }
        }
    }
}

/// The busy slot a flush task holds; released by the task, or on drop if the task never
/// finished.
struct FlushSlot<W: Writer> {
    batcher: Arc<Batcher<W>>,
    held: bool,
}

impl<W: Writer> Drop for FlushSlot<W> {
    fn drop(&mut self) {
        if self.held {
            self.batcher.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::backend::{Revision, SetCondition};

    /// Holds every call until a permit is added; records batch sizes; echoes each key back
    /// as the "previous value" so callers can check they got their own outcome.
    struct Gate {
        permits: Arc<Semaphore>,
        batches: Mutex<Vec<usize>>,
        fail_batches: bool,
    }

    fn gate(fail_batches: bool) -> Arc<Gate> {
        Arc::new(Gate {
            permits: Arc::new(Semaphore::new(0)),
            batches: Mutex::default(),
            fail_batches,
        })
    }

    fn outcome(w: &MapWrite) -> SetOutcome {
        SetOutcome {
            previous: Some(Bytes::from(w.key.clone())),
            written: true,
            revision: Revision::default(),
        }
    }

    #[async_trait]
    impl Writer for Arc<Gate> {
        async fn one(&self, _: &MapTarget, w: MapWrite) -> Result<SetOutcome> {
            self.permits.acquire().await.expect("open").forget();
            Ok(outcome(&w))
        }

        async fn many(&self, _: &MapTarget, ws: Vec<MapWrite>) -> Result<Vec<SetOutcome>> {
            self.permits.acquire().await.expect("open").forget();
            self.batches.lock().unwrap().push(ws.len());
            if self.fail_batches {
                return Err(Error::connection("gone"));
            }
            Ok(ws.iter().map(outcome).collect())
        }
    }

    fn write(key: String) -> MapWrite {
        MapWrite {
            key,
            value: Bytes::new(),
            condition: SetCondition::Always,
        }
    }

    fn spawn_set(
        b: &Arc<Batcher<Arc<Gate>>>,
        key: String,
    ) -> tokio::task::JoinHandle<Result<SetOutcome>> {
        let b = b.clone();
        tokio::spawn(async move { b.set(write(key)).await })
    }

    /// A task's result, failing the test instead of hanging if it never finishes.
    async fn done<T>(t: tokio::task::JoinHandle<T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("the write never finished")
            .unwrap()
    }

    /// Lets spawned tasks run until they all wait (the clock is paused, so nothing else
    /// moves).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn writes_beyond_the_in_flight_limit_share_one_batch() {
        let gate = gate(false);
        let b = Batcher::new(gate.clone(), MapTarget::new("h", "c"));
        let tasks: Vec<_> = (0..IN_FLIGHT + 10)
            .map(|i| spawn_set(&b, format!("k{i}")))
            .collect();
        settle().await;
        assert_eq!(b.state().queue.len(), 10, "all but the direct calls queue");
        gate.permits.add_permits(IN_FLIGHT + 1);
        for (i, t) in tasks.into_iter().enumerate() {
            let out = done(t).await.unwrap();
            assert_eq!(out.previous, Some(Bytes::from(format!("k{i}"))));
        }
        assert_eq!(*gate.batches.lock().unwrap(), vec![10]);
        assert_eq!(b.state().busy, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_direct_call_hands_the_queue_on() {
        let gate = gate(false);
        let b = Batcher::new(gate.clone(), MapTarget::new("h", "c"));
        let direct: Vec<_> = (0..IN_FLIGHT)
            .map(|i| spawn_set(&b, format!("d{i}")))
            .collect();
        settle().await;
        let queued = spawn_set(&b, "q".into());
        settle().await;
        for t in &direct {
            t.abort();
        }
        settle().await;
        gate.permits.add_permits(1);
        let out = done(queued).await.unwrap();
        assert_eq!(out.previous, Some(Bytes::from("q")));
        settle().await;
        assert_eq!(b.state().busy, 0, "every slot is released");
    }

    #[test]
    fn a_flush_dropped_with_its_runtime_releases_its_slot() {
        let gate = gate(false);
        let b = Batcher::new(gate.clone(), MapTarget::new("h", "c"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let _tasks: Vec<_> = (0..IN_FLIGHT + 2)
                .map(|i| spawn_set(&b, format!("k{i}")))
                .collect();
            settle().await;
            // The direct calls finish; one hands the queue to a flush, which then waits.
            gate.permits.add_permits(IN_FLIGHT);
            settle().await;
            assert_eq!(b.state().busy, 1);
        });
        drop(rt);
        assert_eq!(b.state().busy, 0, "the flush's slot is released");
        assert!(b.state().queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_batch_fails_each_of_its_writes() {
        let gate = gate(true);
        let b = Batcher::new(gate.clone(), MapTarget::new("h", "c"));
        let tasks: Vec<_> = (0..IN_FLIGHT + 3)
            .map(|i| spawn_set(&b, format!("k{i}")))
            .collect();
        settle().await;
        gate.permits.add_permits(IN_FLIGHT + 1);
        let mut failed = 0;
        for t in tasks {
            failed += usize::from(matches!(done(t).await, Err(Error::Connection { .. })));
        }
        assert_eq!(failed, 3);
        assert_eq!(b.state().busy, 0);
    }
}
