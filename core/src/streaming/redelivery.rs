//! The redelivery policy of a sink: when an unacknowledged event is due again, when it goes
//! to the dead letters instead, and what a handler can say about it (`nack`, `fail`).
//!
//! An event delivered `n` times is due again once it has been idle (unacknowledged since
//! its last delivery) for `ack_grace + back-off(n)` ([`SinkOptions::due_after`]); the
//! reclaim pass (`liveness`) then redelivers it, or, when `n` reached `max_deliveries`,
//! moves it to the dead letters (`dead_letters`). The count and the idle time are the
//! backend's (the group's pending list), so every instance judges an event alike and
//! nothing is kept only in a process.
//!
//! `nack(event, delay)` sets the event's idle time so that it is due `delay` from now
//! (`GroupOps::group_set_idle`, its count unchanged). A delay longer than the due time
//! itself cannot be written as an idle time: the instance then holds the event (resetting
//! its idle time every half due time) until the rest fits; if it dies meanwhile the event
//! is due at most one due time after the last reset, earlier than asked, never lost.
//!
//! [`SinkOptions::due_after`]: super::SinkOptions

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tracing::debug;

use super::{
    dead_letters::{move_to_dead_letters, store_reason},
    sink::{Member, SinkInner},
    Event, Sink,
};
use crate::{Error, Result};

/// Longest delay a nack may ask for.
const MAX_NACK_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

impl Sink {
    /// Negative acknowledgement: this delivery of `event` failed, deliver it again not
    /// before `delay` from now (`None`: the back-off of its delivery count, so at the next
    /// reclaim pass when there is none). The redelivery goes to whichever instance
    /// reclaims it, counted as a new delivery; past `max_deliveries` the event moves to
    /// the dead letters instead. Events of other sinks or readers are ignored.
    ///
    /// Errors: [`Error::InvalidArgument`] for a delay over 7 days; backend errors (the
    /// event stays pending and is redelivered after the usual grace).
    pub async fn nack(&self, event: &Event, delay: Option<Duration>) -> Result<()> {
        let Some(member) = self.member_of(event) else {
            return Ok(());
        };
        let delay = delay.unwrap_or_else(|| {
            self.inner
                .options
                .redelivery_backoff
                .after(event.deliveries)
        });
        if delay > MAX_NACK_DELAY {
            return Err(Error::InvalidArgument(format!(
                "a nack delay is at most 7 days, not {delay:?}"
            )));
        }
        defer(self.inner.clone(), member, event, delay).await
    }

    /// The handler failed `event` for `reason`: this delivery counts, and the reason is
    /// kept with the event (it appears on its dead letter). When the event has had its
    /// `max_deliveries`, it moves to the dead letters now; otherwise it is redelivered as
    /// after [`Sink::nack`] without a delay.
    ///
    /// Errors: backend errors (the event stays pending).
    pub async fn fail(&self, event: &Event, reason: &str) -> Result<()> {
        let Some(member) = self.member_of(event) else {
            return Ok(());
        };
        let spent = self
            .inner
            .options
            .max_deliveries
            .is_some_and(|max| event.deliveries >= max);
        if spent {
            move_to_dead_letters(
                &self.inner,
                &member,
                event.id,
                event.deliveries,
                Some(reason.to_owned()),
            )
            .await?;
            return Ok(());
        }
        store_reason(&self.inner, &member.stream, event.id, reason).await?;
        self.nack(event, None).await
    }

    /// The member an event of this sink came from.
    fn member_of(&self, event: &Event) -> Option<Member> {
        if event.sink.as_deref() != Some(self.name()) {
            return None;
        }
        self.members()
            .into_iter()
            .find(|m| m.stream.name == event.stream)
    }
}

/// Makes `event` due again `delay` from now (see the module doc).
async fn defer(
    inner: Arc<SinkInner>,
    member: Member,
    event: &Event,
    delay: Duration,
) -> Result<()> {
    let due = inner.options.due_after(event.deliveries);
    let (key, id) = (member.stream.key.clone(), event.id);
    let set = {
        let inner = inner.clone();
        move |idle: Duration| {
            let (inner, key) = (inner.clone(), key.clone());
            async move {
                inner
                    .backend
                    .group_set_idle(&key, &inner.name, &inner.consumer, &[id], idle)
                    .await
            }
        }
    };
    if delay <= due {
        set(due - delay).await?;
        return Ok(());
    }
    set(Duration::ZERO).await?;
    let until = Instant::now() + delay;
    let mut shutdown = inner.shutdown_signal();
    let hold = async move {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left <= due {
                if let Err(e) = set(due - left).await {
                    debug!(error = %e, "a deferred event's last hold failed");
                }
                return;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep((due / 2).min(left - due)) => {}
            }
            match set(Duration::ZERO).await {
                Ok(held) if held.is_empty() => return, // acknowledged or moved meanwhile
                Ok(_) => {}
                Err(e) => debug!(error = %e, "holding a deferred event failed; trying again"),
            }
        }
    };
    tokio::spawn(hold);
    Ok(())
}

/// What the reclaim pass does with a pending event that is due.
pub(super) enum Verdict {
    /// Deliver it again.
    Redeliver,
    /// Move it to the dead letters.
    DeadLetter,
}

/// Whether pending event with `deliveries` deliveries, idle for `idle`, is due, and for
/// what; `None` when not due yet.
pub(super) fn judge(inner: &SinkInner, deliveries: u64, idle: Duration) -> Option<Verdict> {
    if idle < inner.options.due_after(deliveries) {
        return None;
    }
    Some(match inner.options.max_deliveries {
        Some(max) if deliveries >= max => Verdict::DeadLetter,
        _ => Verdict::Redeliver,
    })
}
