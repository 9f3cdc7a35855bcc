//! What a sink has not acknowledged yet, for operators: every pending event with the
//! instance (consumer) holding it, how long since it was delivered and how often.
//!
//! Contract: a read of the backend's pending lists, paged (at most 1,000 entries per
//! call), never a write; what it lists is a snapshot, and an event may be acknowledged or
//! redelivered right after.

use std::time::Duration;

use crate::{backend::EntryId, Result};

use super::Sink;

/// One unacknowledged event of a sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEvent {
    /// The stream it is in (its name).
    pub stream: String,
    /// Its ID.
    pub id: EntryId,
    /// The sink instance it was last delivered to ([`Sink::consumer`]).
    pub consumer: String,
    /// Time since that delivery.
    pub idle: Duration,
    /// How many times it was delivered ([`Event::deliveries`](super::Event::deliveries)).
    pub deliveries: u64,
}

/// Entries asked of the backend per call.
const PAGE: usize = 1000;

impl Sink {
    /// The unacknowledged events of this sink — all its instances, on every stream this
    /// instance consumes — oldest first per stream, at most `limit` in all.
    ///
    /// Errors: [`Error::Closed`](crate::Error::Closed), backend errors (`NoGroup` when a
    /// stream's group was destroyed).
    pub async fn pending(&self, limit: usize) -> Result<Vec<PendingEvent>> {
        self.check_open()?;
        let mut out = Vec::new();
        for member in self.members() {
            let stream = &member.stream;
            let mut start = EntryId::ZERO;
            while out.len() < limit {
                let want = (limit - out.len()).min(PAGE);
                let page = self
                    .backend()
                    .group_pending(&stream.key, self.name(), None, start, want)
                    .await?;
                let full = page.len() == want;
                let Some(last) = page.last().map(|p| p.id) else {
                    break;
                };
                out.extend(page.into_iter().map(|p| PendingEvent {
                    stream: stream.name.clone(),
                    id: p.id,
                    consumer: p.consumer,
                    idle: p.idle,
                    deliveries: p.deliveries,
                }));
                match last.next() {
                    Some(next) if full => start = next,
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}
