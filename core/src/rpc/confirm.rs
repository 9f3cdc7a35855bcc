//! Confirmed adds: [`Stream::add_confirmed`] returns once `n` distinct sinks acknowledged
//! the event.
//!
//! What counts is a *sink* (a consumer group), once, whichever of its members
//! acknowledged and however often: the members of one sink share its work, so one sink
//! acknowledging twice (a redelivery) is still one confirmation (bus counts ack calls, so
//! one consumer acking twice counts twice). Only explicit acknowledgements count
//! ([`Sink::ack`], [`Sink::ack_many`], and the ack of [`Sink::reply`]); an event a sink's
//! filter drops is acknowledged unseen and confirms nothing.
//!
//! How: the event carries `pulse.confirm.id` and `pulse.confirm.inbox` (the adder's
//! inbox, [`super::inbox`]); after a sink's acknowledgement succeeds, the sink adds a
//! confirmation naming itself to that inbox.

use std::{collections::BTreeSet, time::Duration};

use bytes::Bytes;
use tokio::time::{sleep_until, Instant};
use tracing::debug;

use super::{inbox, Signal, ID, SINK};
use crate::{
    backend::EntryId,
    streaming::{Event, NewEvent, Sink, Stream},
    Error, Result,
};

/// Header holding a confirmed add's ID.
pub(crate) const CONFIRM_ID: &str = "pulse.confirm.id";
/// Header holding the adder's inbox.
pub(crate) const CONFIRM_INBOX: &str = "pulse.confirm.inbox";
/// Name of a confirmation entry in an inbox.
pub(crate) const CONFIRMED_NAME: &str = "confirmed";

/// What [`Stream::add_confirmed`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmed {
    /// The event's ID in the stream.
    pub id: EntryId,
    /// The sinks that acknowledged it, in the order they did (at least the `n` asked for).
    pub by: Vec<String>,
}

impl Stream {
    /// Adds `event` and returns once `n` distinct sinks (consumer groups, see the
    /// [module docs](crate::rpc)) acknowledged it, saying which.
    ///
    /// Errors: [`Error::Timeout`] when fewer than `n` confirmed within `timeout`, saying
    /// how many and which (the event stays added); `InvalidArgument` (`n` zero or above
    /// 1000, a timeout outside 1 ms to 24 h, headers named `pulse.confirm.*`); what
    /// [`Stream::add_event`] refuses; `Connection`.
    pub async fn add_confirmed(
        &self,
        event: NewEvent,
        n: usize,
        timeout: Duration,
    ) -> Result<Confirmed> {
        if n == 0 || n > 1000 {
            return Err(Error::InvalidArgument(
                "a confirmed add waits for 1 to 1000 sinks".into(),
            ));
        }
        if timeout < Duration::from_millis(1) || timeout > super::MAX_TIMEOUT {
            return Err(Error::InvalidArgument(
                "a confirmation timeout is 1 ms to 24 h".into(),
            ));
        }
        if event
            .headers
            .iter()
            .any(|(h, _)| h.starts_with("pulse.confirm."))
        {
            return Err(Error::InvalidArgument(
                "headers named pulse.confirm.* are the add's own".into(),
            ));
        }
        let deadline = Instant::now() + timeout;
        let confirm = crate::ids::new_id();
        let inbox = inbox::Inbox::join(self).await?;
        let mut waiting = inbox.expect(&confirm);
        let event = event
            .with_header(CONFIRM_ID, confirm.clone())
            .with_header(CONFIRM_INBOX, inbox.name());
        let id = self.add_event(event).await?;
        let mut by = Vec::new();
        let mut seen = BTreeSet::new();
        while seen.len() < n {
            tokio::select! {
                signal = waiting.next() => match signal {
                    Some(Signal::Confirmed { sink }) => {
                        if seen.insert(sink.clone()) {
                            by.push(sink);
                        }
                    }
                    Some(_) => {}
                    None => return Err(Error::Closed { what: "confirmation inbox".into() }),
                },
                _ = sleep_until(deadline) => {
                    return Err(Error::Timeout {
                        what: format!(
                            "{n} sink confirmations of event {id}: {} within {timeout:?} ({})",
                            by.len(),
                            if by.is_empty() { "none".to_owned() } else { by.join(", ") },
                        ),
                    });
                }
            }
        }
        Ok(Confirmed { id, by })
    }
}

/// Tells the adders of the confirmed events among `events` that `sink` acknowledged
/// them (after the acknowledgement succeeded). Best effort: a confirmation that cannot be
/// added is logged; its adder times out saying who did confirm.
pub(crate) async fn acknowledged(sink: &Sink, events: &[Event]) {
    for e in events {
        let (Some(confirm), Some(inbox_name)) = (e.header(CONFIRM_ID), e.header(CONFIRM_INBOX))
        else {
            continue;
        };
        if e.sink.as_deref() != Some(sink.name()) {
            continue;
        }
        let Some(stream) = sink.stream_named(&e.stream) else {
            continue;
        };
        let inbox = match inbox::stream(
            stream.backend.clone(),
            &stream.options.keyspace,
            inbox_name,
            stream.options.max_payload,
        ) {
            Ok(inbox) => inbox,
            Err(e) => {
                debug!(error = %e, "a confirmation's inbox is not one");
                continue;
            }
        };
        let note = NewEvent::new(CONFIRMED_NAME, Bytes::new())
            .with_header(ID, confirm)
            .with_header(SINK, sink.name());
        if let Err(e) = inbox.add_if_exists(note).await {
            debug!(error = %e, "a confirmation could not be added; its adder times out");
        }
    }
}
