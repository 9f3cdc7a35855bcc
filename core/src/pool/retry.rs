//! Retrying a pool decision until the backend agrees.
//!
//! A failed call may or may not have been applied ([`Error::Connection`]). The pool's
//! protocol writes are all safe to repeat — each is a compare-and-set against a value only
//! the caller can hold, or an idempotent set or delete — so a decision that must reach the
//! store (a release, a clean-up) is simply sent again, with back-off, until the backend
//! answers. A repeat of a write that was applied finds the record already changed and does
//! nothing, which is the outcome wanted.
//!
//! Contract with the callers: they pass only such repeatable writes, and a deadline when a
//! caller waits (a user's `add_worker`, `close`); background releases pass none and stop
//! when the write can no longer matter (see `run::release`).

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use crate::{Error, Result};

/// The first pause before a retry; it doubles up to the caller's cap.
const FIRST_RETRY: Duration = Duration::from_millis(10);

/// True when the pool sends the same call again: whatever [`Error::is_retryable`] says
/// may succeed later (unreachable store, lost reply, a refusal of the store's own), and an
/// unclassified [`Error::Backend`] (the pool's calls are protected against double
/// application, so one more try costs nothing). [`Error::Denied`] stays until someone
/// changes the credentials or the ACL: not retried.
pub(crate) fn retryable(e: &Error) -> bool {
    e.is_retryable() || matches!(e, Error::Backend { .. })
}

/// Exponential back-off from [`FIRST_RETRY`] up to a cap.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Back-off doubling up to `cap`.
    pub(crate) fn new(cap: Duration) -> Self {
        Backoff {
            next: FIRST_RETRY.min(cap),
            cap,
        }
    }

    /// The pause the next [`wait`](Self::wait) will take.
    pub(crate) fn next_pause(&self) -> Duration {
        self.next
    }

    /// Sleeps for the current pause and doubles it.
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.cap);
    }
}

/// Calls `op` until it succeeds or fails with an error a retry cannot fix; with a
/// `deadline`, gives up with the last error once the next pause would pass it.
pub(crate) async fn until_agreed<T, F, Fut>(
    deadline: Option<Instant>,
    cap: Duration,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff = Backoff::new(cap);
    loop {
        match op().await {
            Err(e) if retryable(&e) => {
                if deadline.is_some_and(|d| Instant::now() + backoff.next_pause() > d) {
                    return Err(e);
                }
                backoff.wait().await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_call_succeeds() {
        let calls = AtomicU32::new(0);
        let out = until_agreed(None, Duration::from_secs(1), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0..=4 => Err(Error::connection("down")),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(out.unwrap(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_an_error_a_retry_cannot_fix() {
        let calls = AtomicU32::new(0);
        let out: Result<()> = until_agreed(None, Duration::from_secs(1), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::Closed { what: "map".into() })
        })
        .await;
        assert!(matches!(out, Err(Error::Closed { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn transient_refusals_are_retried_and_a_missing_permission_is_not() {
        use crate::error::Refusal;
        let refused = |reason| Error::Refused {
            op: "map_set",
            reason,
            message: String::new(),
        };
        for reason in [
            Refusal::OutOfMemory,
            Refusal::TooManyClients,
            Refusal::ReadOnly,
            Refusal::Busy,
        ] {
            assert!(retryable(&refused(reason)), "{reason}");
        }
        assert!(!retryable(&Error::Denied {
            op: "map_set",
            reason: crate::Denial::NoPermission,
            message: String::new(),
        }));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_deadline_with_the_last_error() {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(500);
        let out: Result<()> = until_agreed(Some(deadline), Duration::from_millis(100), || async {
            Err(Error::connection("down"))
        })
        .await;
        assert!(out.unwrap_err().is_connection());
        assert!(Instant::now() <= deadline);
        assert!(Instant::now() >= start + Duration::from_millis(300));
    }

    #[test]
    fn back_off_doubles_up_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(50));
        let mut pauses = Vec::new();
        for _ in 0..4 {
            pauses.push(b.next_pause());
            b.next = (b.next * 2).min(b.cap);
        }
        assert_eq!(pauses, [10, 20, 40, 50].map(Duration::from_millis).to_vec());
    }
}
