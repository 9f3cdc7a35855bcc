//! What a dashboard or a `pulse stream info` shows about a stream, read in one call:
//! [`Stream::state`].
//!
//! Contract: a few reads (the stream's info, its groups, each group's consumers), not one
//! atomic snapshot: under writes, the figures are each exact at its own instant. Every
//! consumer group of the stream is listed, the sinks of this library and any other.

use crate::{
    backend::{ConsumerInfo, EntryId},
    Result,
};

use super::Stream;

/// A stream's length, ends and consumer groups.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamState {
    /// The stream's name.
    pub name: String,
    /// Number of events in it.
    pub length: u64,
    /// The oldest event still in the stream; `None` when it is empty.
    pub first_id: Option<EntryId>,
    /// The last ID ever generated (`0-0` for a stream that never had an event).
    pub last_id: EntryId,
    /// Its sinks (consumer groups), by name.
    pub sinks: Vec<SinkState>,
}

/// One sink (consumer group) of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkState {
    /// The sink's name.
    pub name: String,
    /// Events delivered to its consumers and not acknowledged.
    pub pending: u64,
    /// The last event delivered to the sink (its cursor).
    pub last_delivered: EntryId,
    /// Events after the cursor not delivered yet; `None` when the backend cannot tell
    /// cheaply (Redis after events in the middle of the stream were deleted).
    pub lag: Option<u64>,
    /// Its consumers (one per sink instance), by name, with their pending counts and idle
    /// times.
    pub consumers: Vec<ConsumerInfo>,
}

impl Stream {
    /// The stream's length, first and last IDs, and every sink with its pending count,
    /// lag and consumers (see [`StreamState`]). A stream that does not exist yet has
    /// length 0 and no sinks.
    ///
    /// Errors: `WrongType` when the key holds something else; backend errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> pulse::Result<()> {
    /// use std::sync::Arc;
    /// use pulse::streaming::{SinkOptions, Stream, StreamOptions};
    ///
    /// let backend = Arc::new(pulse_memory::MemoryBackend::new());
    /// let orders = Stream::new(backend, "orders", StreamOptions::default())?;
    /// orders.add("created", "order #1").await?;
    /// let billing = orders.new_sink("billing", SinkOptions::default()).await?;
    /// let state = orders.state().await?;
    /// assert_eq!((state.length, state.sinks.len()), (1, 1));
    /// assert_eq!(state.sinks[0].name, "billing");
    /// # billing.close().await?; Ok(()) }
    /// ```
    pub async fn state(&self) -> Result<StreamState> {
        let b = &self.backend;
        let info = b.stream_info(&self.key).await?;
        let mut sinks = Vec::new();
        for g in b.group_list(&self.key).await? {
            let consumers = match b.group_consumers(&self.key, &g.name).await {
                Ok(c) => c,
                // Destroyed between the two reads: it is gone, so not listed.
                Err(crate::Error::NoGroup { .. }) => continue,
                Err(e) => return Err(e),
            };
            sinks.push(SinkState {
                name: g.name,
                pending: g.pending,
                last_delivered: g.last_delivered,
                lag: g.lag,
                consumers,
            });
        }
        Ok(StreamState {
            name: self.name.clone(),
            length: info.map_or(0, |i| i.length),
            first_id: info.and_then(|i| i.first_id),
            last_id: info.map_or(EntryId::ZERO, |i| i.last_id),
            sinks,
        })
    }
}
