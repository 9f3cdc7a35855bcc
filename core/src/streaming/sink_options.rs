//! The options of a sink instance, with their defaults and builders.

use std::time::Duration;

use super::{Filter, Start};

/// Options of a sink instance. All instances of one sink must use the same `ack_grace`.
/// Defaults are documented on each field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SinkOptions {
    /// Where a *new* group starts. Default [`Start::Newest`] (resolved by the backend when
    /// the group is created). Ignored (and reported) when the group exists.
    pub start: Start,
    /// Longest a single blocking read waits. Default 5 s (close interrupts it at once).
    pub block: Duration,
    /// Most events read per stream per round trip. Default 1000.
    pub max_polled: usize,
    /// Capacity of each subscriber's queue. Default 1000.
    pub buffer: usize,
    /// Which events are delivered; the others are acknowledged at once. Default all.
    pub filter: Filter,
    /// Read without acknowledgement: events never become pending (at-most-once).
    /// Default false.
    pub no_ack: bool,
    /// How long a delivered event may stay unacknowledged before it is redelivered, and
    /// how long an instance may go without renewing its liveness. Default 20 s.
    pub ack_grace: Duration,
    /// How often instances look for events to reclaim (one instance per stream does it):
    /// an unacknowledged event is redelivered between `ack_grace` and
    /// `ack_grace + check_interval` after its delivery, and so are the events of an
    /// instance that died. Default 5 s (an idle sink then costs under one command per
    /// second).
    pub check_interval: Duration,
    /// First delay before retrying after a read error (doubling up to 5 s). Default 100 ms.
    pub retry_delay: Duration,
    /// How long reads may keep failing before [`Sink::health`](super::Sink::health) says so. Default 10 s.
    pub read_patience: Duration,
    /// Most times an event is delivered: one that is still unacknowledged when it would
    /// be delivered once more moves to the sink's dead-letter stream instead
    /// ([`Stream::dead_letters`](super::Stream::dead_letters)). Default `None`: redelivered
    /// until acknowledged. 1 to 1,000,000, checked when the sink is created.
    pub max_deliveries: Option<u64>,
    /// How much longer than `ack_grace` an unacknowledged event waits before each
    /// redelivery, growing with its delivery count (and the default delay of
    /// [`Sink::nack`](super::Sink::nack)). Default none: `ack_grace` alone, as before.
    pub redelivery_backoff: RedeliveryBackoff,
}

/// A redelivery back-off: before its `n`-th redelivery an event waits
/// `min(initial × factor^(n-1), max)` on top of the sink's `ack_grace`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RedeliveryBackoff {
    /// The wait before the first redelivery. Zero: no back-off.
    pub initial: Duration,
    /// The growth per delivery, at least 1.
    pub factor: f64,
    /// The longest wait.
    pub max: Duration,
}

impl RedeliveryBackoff {
    /// No back-off: redelivery after `ack_grace`.
    pub const NONE: RedeliveryBackoff = RedeliveryBackoff {
        initial: Duration::ZERO,
        factor: 1.0,
        max: Duration::ZERO,
    };

    /// The wait after delivery number `deliveries` (1 = the first).
    pub fn after(&self, deliveries: u64) -> Duration {
        if self.initial.is_zero() {
            return Duration::ZERO;
        }
        let steps = deliveries.saturating_sub(1).min(64) as i32;
        let secs = self.initial.as_secs_f64() * self.factor.powi(steps);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            return self.max;
        }
        Duration::from_secs_f64(secs)
    }
}

impl Default for RedeliveryBackoff {
    fn default() -> Self {
        RedeliveryBackoff::NONE
    }
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            start: Start::Newest,
            block: Duration::from_secs(5),
            max_polled: 1000,
            buffer: 1000,
            filter: Filter::All,
            no_ack: false,
            ack_grace: Duration::from_secs(20),
            check_interval: Duration::from_secs(5),
            retry_delay: Duration::from_millis(100),
            read_patience: Duration::from_secs(10),
            max_deliveries: None,
            redelivery_backoff: RedeliveryBackoff::NONE,
        }
    }
}

impl SinkOptions {
    /// Sets [`SinkOptions::start`].
    pub fn with_start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }
    /// Sets [`SinkOptions::block`] (at least 1 ms).
    pub fn with_block(mut self, d: Duration) -> Self {
        self.block = d.max(Duration::from_millis(1));
        self
    }
    /// Sets [`SinkOptions::max_polled`] (at least 1).
    pub fn with_max_polled(mut self, n: usize) -> Self {
        self.max_polled = n.max(1);
        self
    }
    /// Sets [`SinkOptions::buffer`] (at least 1).
    pub fn with_buffer(mut self, n: usize) -> Self {
        self.buffer = n.max(1);
        self
    }
    /// Sets [`SinkOptions::filter`].
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
    /// Sets [`SinkOptions::no_ack`].
    pub fn with_no_ack(mut self, no_ack: bool) -> Self {
        self.no_ack = no_ack;
        self
    }
    /// Sets [`SinkOptions::ack_grace`] (at least 4 ms).
    pub fn with_ack_grace(mut self, d: Duration) -> Self {
        self.ack_grace = d.max(Duration::from_millis(4));
        self
    }
    /// Sets [`SinkOptions::check_interval`] (at least 1 ms).
    pub fn with_check_interval(mut self, d: Duration) -> Self {
        self.check_interval = d.max(Duration::from_millis(1));
        self
    }
    /// Sets [`SinkOptions::retry_delay`].
    pub fn with_retry_delay(mut self, d: Duration) -> Self {
        self.retry_delay = d.max(Duration::from_millis(1));
        self
    }
    /// Sets [`SinkOptions::read_patience`].
    pub fn with_read_patience(mut self, d: Duration) -> Self {
        self.read_patience = d;
        self
    }
    /// Sets [`SinkOptions::max_deliveries`].
    pub fn with_max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = Some(n);
        self
    }
    /// Sets [`SinkOptions::redelivery_backoff`].
    pub fn with_redelivery_backoff(
        mut self,
        initial: Duration,
        factor: f64,
        max: Duration,
    ) -> Self {
        self.redelivery_backoff = RedeliveryBackoff {
            initial,
            factor,
            max,
        };
        self
    }

    /// Whether any redelivery policy is set (the reclaim pass then reads delivery counts
    /// before claiming).
    pub(crate) fn has_policy(&self) -> bool {
        self.max_deliveries.is_some() || !self.redelivery_backoff.initial.is_zero()
    }

    /// How long an event delivered `deliveries` times waits unacknowledged before it is
    /// due again.
    pub(crate) fn due_after(&self, deliveries: u64) -> Duration {
        self.ack_grace + self.redelivery_backoff.after(deliveries)
    }

    /// Checks the policy's values: [`Error::InvalidArgument`] naming the bad one.
    pub(crate) fn check(&self) -> crate::Result<()> {
        let bad = |why: &str| {
            Err(crate::Error::InvalidArgument(format!(
                "sink options: {why}"
            )))
        };
        if let Some(n) = self.max_deliveries {
            if !(1..=1_000_000).contains(&n) {
                return bad("max_deliveries must be 1 to 1,000,000");
            }
        }
        let b = &self.redelivery_backoff;
        if !b.initial.is_zero() {
            if !b.factor.is_finite() || b.factor < 1.0 {
                return bad("the redelivery back-off factor must be a number of at least 1");
            }
            if b.max < b.initial {
                return bad("the redelivery back-off's max must be at least its initial delay");
            }
            if b.max > Duration::from_secs(7 * 24 * 3600) {
                return bad("the redelivery back-off's max must be at most 7 days");
            }
        }
        Ok(())
    }
}
