//! Whether a reader or a sink is reading: a status callers can watch, so a loop that keeps
//! failing (server full, refused, unreachable) is not only a line in the log.
//!
//! The read loop reports every read's outcome to a [`Tracker`]. One failure changes
//! nothing visible (the loop retries with back-off, most failures are brief); reads that
//! keep failing for longer than the patience turn the status to [`ReadHealth::Failing`]
//! with the last error, logged once at `warn`; the next successful read turns it back to
//! [`ReadHealth::Reading`], logged once at `info`.

use std::time::Duration;

use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

use crate::Error;

/// The reading status of a [`Reader`](super::Reader) or [`Sink`](super::Sink) (see
/// [`Reader::health`](super::Reader::health), [`Sink::health`](super::Sink::health)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadHealth {
    /// Reads succeed, or have failed for less than the patience.
    Reading,
    /// Every read has failed for longer than the patience; the loop keeps retrying and
    /// delivers again as soon as a read succeeds.
    Failing {
        /// The last error, as text.
        error: String,
    },
}

/// The read loop's side of a status.
#[derive(Debug)]
pub(super) struct Tracker {
    what: String,
    patience: Duration,
    failing_since: Option<Instant>,
    status: watch::Sender<ReadHealth>,
}

impl Tracker {
    /// A tracker for `what` (for the log), starting as `Reading`.
    pub(super) fn new(what: String, patience: Duration) -> Self {
        Tracker {
            what,
            patience,
            failing_since: None,
            status: watch::channel(ReadHealth::Reading).0,
        }
    }

    /// A receiver of the status.
    pub(super) fn watch(&self) -> watch::Receiver<ReadHealth> {
        self.status.subscribe()
    }

    /// A read succeeded.
    pub(super) fn ok(&mut self) {
        self.failing_since = None;
        let recovered = self.status.send_if_modified(|s| {
            let failing = *s != ReadHealth::Reading;
            *s = ReadHealth::Reading;
            failing
        });
        if recovered {
            info!(what = %self.what, "reading again");
        }
    }

    /// A read failed with `error`.
    pub(super) fn failed(&mut self, error: &Error) {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.patience {
            return;
        }
        let error = error.to_string();
        let (what, patience) = (&self.what, self.patience);
        self.status.send_if_modified(|s| {
            let changed = *s == ReadHealth::Reading;
            if changed {
                warn!(%what, %error, ?patience, "every read has failed for longer than the patience");
            }
            let text_changed = !matches!(s, ReadHealth::Failing { error: e } if *e == error);
            *s = ReadHealth::Failing { error };
            changed || text_changed
        });
    }
}
