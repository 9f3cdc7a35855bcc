//! A sink instance's reads: the loop that keeps one group read over the sink's streams in
//! flight while someone listens, and the delivery of what a read (or a reclaim pass) took
//! — parsed, filtered, handed to the subscribers, or acknowledged when it is not for them.
//!
//! Contract with `sink.rs`: the loop runs from the first subscription until the sink's
//! shutdown signal; it reads the member streams anew on every `changed` notice and waits
//! on `subscribed` while nobody listens. A read, once sent, is never dropped (see
//! [`read_loop`]). Acks it decides on go through the sink's batching flusher.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{
    sync::watch,
    task::{self, JoinSet},
};
use tracing::{debug, warn, Instrument};

use super::{
    sink::{AckRequest, Member, SinkInner},
    Event, Stream,
};
use crate::{
    backend::{EntryId, GroupStart, StreamBatch, StreamEntry},
    spans, Error, Result,
};

impl SinkInner {
    /// Hands pending `entries` back: their idle time is set to when they are due for
    /// reclaim, so another instance takes them at its next pass (this delivery counts).
    async fn release(
        &self,
        stream: &Stream,
        entries: &[StreamEntry],
        deliveries: Option<&HashMap<EntryId, u64>>,
    ) {
        let mut by_idle: HashMap<Duration, Vec<EntryId>> = HashMap::new();
        for e in entries {
            let count = deliveries.map_or(1, |d| d.get(&e.id).copied().unwrap_or(2));
            by_idle
                .entry(self.options.due_after(count))
                .or_default()
                .push(e.id);
        }
        for (idle, ids) in by_idle {
            if let Err(e) = self
                .backend
                .group_set_idle(&stream.key, &self.name, &self.consumer, &ids, idle)
                .await
            {
                debug!(sink = %self.name, error = %e, "handing back events nobody here handles failed; they are reclaimed after the ack grace");
            }
        }
    }

    fn ack_later(&self, key: &str, id: EntryId) {
        let _ = self.acks.send(AckRequest {
            key: key.to_owned(),
            ids: vec![id],
            done: None,
        });
    }

    /// Parses, filters and delivers entries of `stream`, each with its delivery count from
    /// `deliveries` (first deliveries: none given, so 1); false if shut down meanwhile.
    pub(super) async fn deliver(
        &self,
        member: &Member,
        entries: Vec<StreamEntry>,
        deliveries: Option<&HashMap<EntryId, u64>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let stream = &member.stream;
        if !self.options.no_ack && !self.subscribers.any() {
            // Read while the last subscriber went away (a read was already blocked):
            // nobody here would handle them, so they are due for the others at once.
            self.release(stream, &entries, deliveries).await;
            return true;
        }
        for entry in entries {
            let id = entry.id;
            match Event::from_entry(&stream.name, Some(&self.name), entry) {
                Err(e) => {
                    warn!(sink = %self.name, stream = %stream.name, %id, error = %e, "acknowledging an entry that is not an event");
                    if !self.options.no_ack {
                        self.ack_later(&stream.key, id);
                    }
                }
                Ok(event) if !self.options.filter.matches(&event) => {
                    if !self.options.no_ack {
                        self.ack_later(&stream.key, id);
                    }
                }
                Ok(event)
                    if matches!(
                        self.responding.on_delivery(
                            &self.backend,
                            stream,
                            &self.consumer,
                            &event,
                            self.subscribers.watchers()
                        ),
                        crate::rpc::Delivery::Expired
                    ) =>
                {
                    if !self.options.no_ack {
                        self.ack_later(&stream.key, id);
                    }
                }
                Ok(mut event) => {
                    if let Some(counts) = deliveries {
                        // A claimed entry whose count could not be read was delivered
                        // before: at least twice now.
                        event.deliveries = counts.get(&id).copied().unwrap_or(2);
                    }
                    let span = spans::receive(&stream.name, Some(&self.name), &self.consumer, id);
                    spans::link_producer(&span, event.trace_parent.as_deref());
                    if !self
                        .subscribers
                        .deliver(event, &member.metrics.delivered, shutdown)
                        .instrument(span)
                        .await
                    {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// The sink's reads: one group read over the current streams is in flight while someone
/// listens. A read is never dropped once sent — a group read that took entries has made
/// them pending under this consumer, so dropping it (and its reply) would hide them until
/// the ack grace redelivers them. When the streams change, the read in flight is left to
/// finish (its entries are delivered, except those of a stream removed meanwhile) and a
/// new one over the new streams starts beside it.
pub(super) async fn read_loop(inner: Arc<SinkInner>, mut shutdown: watch::Receiver<bool>) {
    let opts = inner.options.clone();
    let mut delay = opts.retry_delay;
    // Reads in flight; `current` is the one over the current streams. Aborted with the
    // loop at shutdown: the sink is closing, and the others reclaim its pending entries.
    let mut reads: JoinSet<Result<Vec<StreamBatch>>> = JoinSet::new();
    let mut current: Option<task::Id> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let members = inner.members();
        // Every subscriber may have dropped its receiver (its task ended or panicked):
        // then take nothing nobody would handle until someone subscribes again.
        let wanted = !members.is_empty() && inner.subscribers.any();
        if wanted && current.is_none() {
            let keys: Vec<String> = members.iter().map(|m| m.stream.key.clone()).collect();
            let inner = inner.clone();
            let read = async move {
                let (name, consumer) = (&inner.name, &inner.consumer);
                let (count, block) = (opts.max_polled, Some(opts.block));
                let backend = &inner.backend;
                backend
                    .group_read(name, consumer, &keys, count, block, opts.no_ack)
                    .await
            };
            current = Some(reads.spawn(read.in_current_span()).id());
        }
        let (id, read) = tokio::select! {
            _ = shutdown.changed() => return,
            _ = inner.changed.notified() => {
                current = None;
                continue;
            }
            _ = inner.subscribed.notified(), if !wanted => continue,
            Some(done) = reads.join_next_with_id(), if !reads.is_empty() => match done {
                Ok(done) => done,
                // Only a bug in a backend panics a read: count it as a failed read (what
                // it took, if anything, is redelivered after the ack grace).
                Err(e) => (e.id(), Err(Error::connection(format!("group read: {e}")))),
            },
        };
        if current == Some(id) {
            current = None;
        }
        match read {
            Ok(batches) => {
                delay = opts.retry_delay;
                inner.tracker().ok();
                for batch in batches {
                    // A stream removed while the read was in flight is not delivered: its
                    // entries stay pending and are reclaimed like those of a leaver.
                    let current = inner.members();
                    let Some(m) = current.iter().find(|m| m.stream.key == batch.stream) else {
                        continue;
                    };
                    if !inner.deliver(m, batch.entries, None, &mut shutdown).await {
                        return;
                    }
                }
                continue;
            }
            Err(e @ Error::NoGroup { .. }) => {
                inner.tracker().failed(&e);
                // The stream (and its group) is gone: re-create it from the start of the
                // new stream, so nothing added after the re-creation is missed.
                warn!(sink = %inner.name, ?delay, "group or stream missing; re-creating it");
                for m in &members {
                    if let Err(e) = inner
                        .backend
                        .group_create(
                            &m.stream.key,
                            &inner.name,
                            GroupStart::After(EntryId::ZERO),
                            true,
                        )
                        .await
                    {
                        warn!(sink = %inner.name, error = %e, "re-creating the group failed");
                    }
                }
            }
            Err(e) => {
                inner.tracker().failed(&e);
                debug!(sink = %inner.name, error = %e, ?delay, "group read failed; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
