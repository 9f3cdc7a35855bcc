//! Delayed delivery: an event added with a due time ([`NewEvent::deliver_at`],
//! [`NewEvent::deliver_after`]) is held outside the stream, invisible to readers and
//! sinks, and appended in due order once due.
//!
//! Held under two keys in the stream's hash tag: `<stream key>:delayed` (due times by
//! delayed ID) and `<stream key>:delayed:data` (the fields). The hand-off into the stream
//! is one atomic backend step per event ([`StreamOps::delay_release`]), so a process or a
//! server dying during it neither loses nor duplicates an event. Who hands off: the
//! stream's mover ([`super::mover`]), run by the live readers and sinks of the stream.
//!
//! A delayed event has no stream ID until it is released: [`Stream::add_delayed`] returns
//! its delayed ID, which [`Stream::cancel_delayed`] takes. Adds tell the movers on the
//! channel `<stream key>:delayed:notice` when they become the earliest, so an idle mover
//! sleeps until the next due time instead of polling.
//!
//! [`StreamOps::delay_release`]: crate::backend::StreamOps::delay_release

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::warn;

use super::{NewEvent, Stream};
use crate::{
    spans::{self, traced},
    Error, Result,
};

/// Longest delay of a delayed event (365 days).
pub const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a delayed event is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// At this time (a time in the past: due at once).
    At(SystemTime),
    /// This long after the add.
    After(Duration),
}

/// A delayed event as added: its delayed ID and when it is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// Unique among the stream's delayed events; what [`Stream::cancel_delayed`] takes.
    pub id: String,
    /// When it is due, by this process's clock.
    pub due: SystemTime,
}

/// What a stream holds for later ([`Stream::delayed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelayedInfo {
    /// Delayed events held (including any foreign entry that cannot be released).
    pub count: u64,
    /// When the earliest is due.
    pub next_due: Option<SystemTime>,
}

/// Milliseconds since the epoch by this process's clock.
pub(super) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The due time of `due` in ms since the epoch, checked against [`MAX_DELAY`].
fn due_ms(due: Due) -> Result<u64> {
    let now = wall_ms();
    let too_far = || {
        Error::InvalidArgument(format!(
            "a delayed event is due at most {} days ahead",
            MAX_DELAY.as_secs() / 86_400
        ))
    };
    let ms = match due {
        Due::After(d) if d > MAX_DELAY => return Err(too_far()),
        Due::After(d) => now + d.as_millis() as u64,
        Due::At(t) => t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| {
                Error::InvalidArgument("a delayed event's due time is before 1970".into())
            })?
            .as_millis()
            .try_into()
            .map_err(|_| too_far())?,
    };
    if ms > now + MAX_DELAY.as_millis() as u64 {
        return Err(too_far());
    }
    Ok(ms)
}

impl NewEvent {
    /// Delays the event until `time` (a time in the past: due at once). Add it with
    /// [`Stream::add_delayed`]; readers and sinks see it once it is due, in due order.
    /// At most [`MAX_DELAY`] ahead.
    pub fn deliver_at(mut self, time: SystemTime) -> Self {
        self.due = Some(Due::At(time));
        self
    }

    /// Delays the event by `delay` (at most [`MAX_DELAY`]), as [`NewEvent::deliver_at`].
    pub fn deliver_after(mut self, delay: Duration) -> Self {
        self.due = Some(Due::After(delay));
        self
    }
}

impl Stream {
    pub(super) fn delayed_keys(&self) -> (String, String) {
        (self.sub_key("delayed"), self.sub_key("delayed:data"))
    }

    pub(super) fn delayed_notice(&self) -> String {
        self.sub_key("delayed:notice")
    }

    /// Adds an event to be delivered later ([`NewEvent::deliver_at`],
    /// [`NewEvent::deliver_after`]): it is held outside the stream and appended, in due
    /// order, once due, by the mover that the stream's live readers and sinks run. Due
    /// times are wall-clock times and the hand-off compares them with the backend's clock,
    /// so a producer's clock skew shifts them. With no reader or sink running anywhere,
    /// due events wait and are appended when one starts.
    ///
    /// Errors: `InvalidArgument` (no due time, a due time before 1970 or more than
    /// [`MAX_DELAY`] ahead, a dedup key — not supported on delayed events — and what
    /// [`Stream::add_event`] refuses), `PayloadTooLarge`, `WrongType`, `Connection`.
    pub async fn add_delayed(&self, mut event: NewEvent) -> Result<Scheduled> {
        let span = spans::send(&self.name, 1);
        traced(span, async {
            let due = event.due.take().ok_or_else(|| {
                Error::InvalidArgument(
                    "add_delayed needs a due time (NewEvent::deliver_at or deliver_after)".into(),
                )
            })?;
            if event.dedup_key.is_some() {
                return Err(Error::InvalidArgument(
                    "a delayed event cannot carry a dedup key".into(),
                ));
            }
            let due_ms = due_ms(due)?;
            let fields = self.fields(event)?;
            let id = crate::ids::new_id();
            let (index, data) = self.delayed_keys();
            let earliest = self
                .backend
                .delay_add(&index, &data, &id, due_ms, fields)
                .await?;
            self.metrics.delayed.increment(1);
            if earliest.is_none_or(|before| due_ms < before) {
                // The earliest now: wake the movers sleeping until a later one. If the
                // notice is lost, the movers' idle check finds the event.
                let notice = Bytes::from(due_ms.to_string());
                if let Err(e) = self.backend.publish(&self.delayed_notice(), notice).await {
                    warn!(stream = %self.name, error = %e, "could not tell the movers of a delayed event; their idle check will find it");
                }
            }
            Ok(Scheduled {
                id,
                due: UNIX_EPOCH + Duration::from_millis(due_ms),
            })
        })
        .await
    }

    /// Cancels the delayed event `id` ([`Scheduled::id`]) if it is still held; returns
    /// whether it was (false: already delivered, cancelled, or never added).
    ///
    /// Errors: `WrongType`, `Connection`.
    pub async fn cancel_delayed(&self, id: &str) -> Result<bool> {
        let (index, data) = self.delayed_keys();
        self.backend.delay_cancel(&index, &data, id).await
    }

    /// How many delayed events the stream holds and when the next is due.
    ///
    /// Errors: `WrongType`, `Connection`.
    pub async fn delayed(&self) -> Result<DelayedInfo> {
        let info = self.backend.delay_info(&self.delayed_keys().0).await?;
        Ok(DelayedInfo {
            count: info.count,
            next_due: info
                .next_due_ms
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_bounded() {
        let now = wall_ms();
        let soon = due_ms(Due::After(Duration::from_secs(1))).unwrap();
        assert!((now + 1000..now + 2000).contains(&soon));
        let past = SystemTime::now() - Duration::from_secs(60);
        assert!(
            due_ms(Due::At(past)).unwrap() < now,
            "a past time is due at once"
        );
        for bad in [
            Due::After(MAX_DELAY + Duration::from_secs(1)),
            Due::At(SystemTime::now() + MAX_DELAY + Duration::from_secs(60)),
            Due::At(UNIX_EPOCH - Duration::from_secs(1)),
        ] {
            let e = due_ms(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e:?}");
        }
    }
}
