//! A backend wrapper that fails calls the way a real network does, for fault-injection cases.
//!
//! [`FlakyBackend`] implements [`Backend`] by delegating to another backend, except that a
//! call it picks fails with [`Error::Connection`] either *before* delegating (the request
//! never arrived: nothing was applied) or *after* (the request was applied and the reply
//! was lost). Both are what [`Error::Connection`] promises a caller may see, so code above
//! the backend contract must keep its guarantees under both.
//!
//! Two ways to pick calls, usable together:
//! - a random share ([`FlakyBackend::set_failure_rate`]), half before and half after, from a
//!   seeded generator (a failing run can be replayed with its seed). Blocking reads and
//!   subscriptions fail at a tenth of the rate: they are long-lived, and a real network
//!   breaks them rarely compared with the short calls around them;
//! - scripted faults ([`FlakyBackend::fail_next`]): the next `n` calls of one operation whose
//!   key contains a given text fail at a given phase, for deterministic cases.
//!
//! The wrapper is cheap to clone; clones share their settings and counters, so a case keeps
//! one clone to steer the faults while the code under test holds another as
//! `Arc<dyn Backend>`.
//!
//! This module holds the wrapper, its fault settings and the one place a call is failed or
//! passed on (`FlakyBackend::call`); `delegate` holds the capability-trait methods, each a
//! one-line route through it.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use pulse::{Backend, Error, Result};

mod delegate;

/// A backend operation, as named by the capability traits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is the trait method of the same name
#[non_exhaustive]
pub enum Op {
    Exists,
    Delete,
    Expire,
    Expiry,
    KeysMatching,
    HashGet,
    HashGetAll,
    HashGetFields,
    HashScan,
    HashExists,
    HashLen,
    StreamAdd,
    StreamAddBatch,
    StreamRange,
    StreamInfo,
    StreamRemove,
    StreamMove,
    StreamAddOnce,
    DelayAdd,
    DelayRelease,
    DelayInfo,
    DelayCancel,
    StreamRead,
    GroupCreate,
    GroupRead,
    GroupAck,
    GroupClaimIdle,
    GroupClaim,
    GroupSetIdle,
    GroupDeadLetter,
    GroupPendingSummary,
    GroupPending,
    GroupConsumers,
    GroupList,
    GroupCreateConsumer,
    GroupDeleteConsumer,
    GroupDestroy,
    Publish,
    Subscribe,
    MapSet,
    MapSetMany,
    MapDelete,
    MapIncrement,
    MapEditList,
    MapReset,
    LeaseAcquire,
    LeaseRelease,
}

/// When an injected fault strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before delegating: the call was never applied.
    Before,
    /// After delegating: the call was applied and its reply lost.
    After,
}

/// What a scripted fault does to a call it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Fail(Phase),
    /// Delegate only after this long (a slow network or a stalled server).
    Delay(Duration),
    /// Delegate at once, but return the reply only after this long (a reply slow to come
    /// back: the call is applied well before its caller learns of it).
    SlowReply(Duration),
}

/// A scripted fault: the next `times` calls of `op` whose key contains `key` fail at a
/// phase, or are delayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    op: Op,
    key: String,
    action: Action,
    times: u32,
}

impl Fault {
    /// One failure of the next call of `op` (any key), after delegating.
    pub fn on(op: Op) -> Self {
        Fault {
            op,
            key: String::new(),
            action: Action::Fail(Phase::After),
            times: 1,
        }
    }

    /// Only calls whose key (a map's hash, a stream, a lease, a channel) contains `text`.
    pub fn key_containing(mut self, text: &str) -> Self {
        self.key = text.to_owned();
        self
    }

    /// Fail before delegating (nothing applied) instead of after (reply lost).
    pub fn before(mut self) -> Self {
        self.action = Action::Fail(Phase::Before);
        self
    }

    /// Fail after delegating (the default).
    pub fn after(mut self) -> Self {
        self.action = Action::Fail(Phase::After);
        self
    }

    /// Do not fail: delegate only after `d` (the call is slow to reach the store).
    pub fn delayed(mut self, d: Duration) -> Self {
        self.action = Action::Delay(d);
        self
    }

    /// Do not fail: delegate at once and hold the reply for `d` (the store applied the
    /// call; its caller hears of it later — a caller that gives up meanwhile loses it).
    pub fn reply_after(mut self, d: Duration) -> Self {
        self.action = Action::SlowReply(d);
        self
    }

    /// Fail this many matching calls instead of one.
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }
}

#[derive(Debug)]
struct State {
    /// Share of calls to fail, in millionths.
    rate_ppm: AtomicU64,
    rng: Mutex<u64>,
    seed: u64,
    script: Mutex<Vec<Fault>>,
    injected: Mutex<Vec<(Op, Phase)>>,
}

/// A [`Backend`] that fails chosen calls with [`Error::Connection`] before or after
/// delegating to the backend it wraps (see the [module docs](self)).
///
/// ```
/// # use std::sync::Arc;
/// # use pulse::prelude::*;
/// use pulse_conformance::flaky::{Fault, FlakyBackend, Op};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let flaky = FlakyBackend::new(Arc::new(pulse_memory::MemoryBackend::new()), 7);
/// flaky.fail_next(Fault::on(Op::Exists).key_containing("k"));
/// assert!(flaky.exists("k").await.unwrap_err().is_connection());
/// assert!(!flaky.exists("k").await.unwrap());
/// assert_eq!(flaky.injected(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct FlakyBackend {
    inner: Arc<dyn Backend>,
    state: Arc<State>,
}

impl std::fmt::Debug for FlakyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlakyBackend")
            .field("inner", &self.inner)
            .field("rate", &self.failure_rate())
            .field("seed", &self.state.seed)
            .finish_non_exhaustive()
    }
}

/// How a call is exposed to random faults.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exposure {
    /// A short request/reply call: the full rate.
    Call,
    /// A blocking read or a subscription: a tenth of the rate.
    LongLived,
}

impl FlakyBackend {
    /// Wraps `inner`, injecting nothing until told to; `seed` drives the random choices.
    pub fn new(inner: Arc<dyn Backend>, seed: u64) -> Self {
        FlakyBackend {
            inner,
            state: Arc::new(State {
                rate_ppm: AtomicU64::new(0),
                rng: Mutex::new(seed | 1),
                seed,
                script: Mutex::new(Vec::new()),
                injected: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The seed the random choices started from.
    pub fn seed(&self) -> u64 {
        self.state.seed
    }

    /// Fails this share of calls (0.0–1.0, clamped), half before and half after delegating.
    pub fn set_failure_rate(&self, rate: f64) {
        let ppm = (rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u64;
        self.state.rate_ppm.store(ppm, Ordering::SeqCst);
    }

    /// The share of calls failed at random.
    pub fn failure_rate(&self) -> f64 {
        self.state.rate_ppm.load(Ordering::SeqCst) as f64 / 1_000_000.0
    }

    /// Adds a scripted fault, checked before the random ones (in the order added).
    pub fn fail_next(&self, fault: Fault) {
        lock(&self.state.script).push(fault);
    }

    /// Drops every scripted fault not used up yet.
    pub fn clear_faults(&self) {
        lock(&self.state.script).clear();
    }

    /// Scripted faults not used up yet.
    pub fn pending_faults(&self) -> usize {
        lock(&self.state.script).len()
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> usize {
        lock(&self.state.injected).len()
    }

    /// How many faults were injected so far into `op` at `phase`.
    pub fn injected_into(&self, op: Op, phase: Phase) -> usize {
        lock(&self.state.injected)
            .iter()
            .filter(|(o, p)| *o == op && *p == phase)
            .count()
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    fn next_random(&self) -> u64 {
        // splitmix64: small, fast, and good enough to spread faults evenly.
        let mut s = lock(&self.state.rng);
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn decide(&self, op: Op, key: &str, exposure: Exposure) -> Option<Action> {
        {
            let mut script = lock(&self.state.script);
            if let Some(i) = script
                .iter()
                .position(|f| f.op == op && key.contains(f.key.as_str()))
            {
                let action = script[i].action;
                script[i].times = script[i].times.saturating_sub(1);
                if script[i].times == 0 {
                    script.remove(i);
                }
                return Some(action);
            }
        }
        let mut ppm = self.state.rate_ppm.load(Ordering::SeqCst);
        if exposure == Exposure::LongLived {
            ppm /= 10;
        }
        if ppm == 0 {
            return None;
        }
        let r = self.next_random();
        if r % 1_000_000 >= ppm {
            return None;
        }
        Some(Action::Fail(if (r >> 32) & 1 == 0 {
            Phase::Before
        } else {
            Phase::After
        }))
    }

    async fn call<T, F>(&self, op: Op, key: &str, exposure: Exposure, call: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send,
    {
        let phase = match self.decide(op, key, exposure) {
            None => return call.await,
            Some(Action::Delay(d)) => {
                tokio::time::sleep(d).await;
                return call.await;
            }
            Some(Action::SlowReply(d)) => {
                let out = call.await;
                tokio::time::sleep(d).await;
                return out;
            }
            Some(Action::Fail(phase)) => phase,
        };
        lock(&self.state.injected).push((op, phase));
        if phase == Phase::After {
            let _ = call.await;
        }
        Err(Error::connection(format!(
            "injected fault: {op:?} {}",
            match phase {
                Phase::Before => "before it was sent",
                Phase::After => "after it was applied (reply lost)",
            }
        )))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn first(keys: &[String]) -> &str {
    keys.first().map_or("", String::as_str)
}

fn exposure_of(block: Option<Duration>) -> Exposure {
    match block {
        Some(d) if !d.is_zero() => Exposure::LongLived,
        _ => Exposure::Call,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_fails_about_that_share_half_before_half_after() {
        let flaky = FlakyBackend::new(Arc::new(pulse_memory::MemoryBackend::new()), 42);
        flaky.set_failure_rate(0.1);
        let (mut before, mut after) = (0, 0);
        for _ in 0..100_000 {
            match flaky.decide(Op::Exists, "k", Exposure::Call) {
                Some(Action::Fail(Phase::Before)) => before += 1,
                Some(Action::Fail(Phase::After)) => after += 1,
                _ => {}
            }
        }
        let total = before + after;
        assert!((9_000..11_000).contains(&total), "{total} of 100000");
        assert!((before as f64 / total as f64 - 0.5).abs() < 0.05);
        let long = (0..100_000)
            .filter(|_| {
                flaky
                    .decide(Op::StreamRead, "k", Exposure::LongLived)
                    .is_some()
            })
            .count();
        assert!((700..1_300).contains(&long), "{long} long-lived of 100000");
    }

    #[test]
    fn scripted_faults_match_op_and_key_and_run_out() {
        let flaky = FlakyBackend::new(Arc::new(pulse_memory::MemoryBackend::new()), 1);
        flaky.fail_next(
            Fault::on(Op::MapSet)
                .key_containing("owners")
                .before()
                .times(2),
        );
        assert_eq!(flaky.decide(Op::MapSet, "x:jobs", Exposure::Call), None);
        assert_eq!(
            flaky.decide(Op::MapDelete, "x:owners", Exposure::Call),
            None
        );
        assert_eq!(
            flaky.decide(Op::MapSet, "x:owners", Exposure::Call),
            Some(Action::Fail(Phase::Before))
        );
        assert_eq!(flaky.pending_faults(), 1);
        assert_eq!(
            flaky.decide(Op::MapSet, "y:owners", Exposure::Call),
            Some(Action::Fail(Phase::Before))
        );
        assert_eq!(flaky.decide(Op::MapSet, "x:owners", Exposure::Call), None);
        assert_eq!(flaky.pending_faults(), 0);
    }
}
