//! Node inboxes: one stream per node carrying dispatch results, notifications, and job
//! calls and their answers (module `call`).
//!
//! A node reads its own inbox (`inbox_loop`) and deletes what it handled, so an inbox
//! holds only unread messages. Senders append only to an inbox that exists (never into
//! the void) and never touch its expiry: the owner's keep-alive does, so the inbox of a
//! node that died expires however many messages are still sent to it.
//!
//! Two kinds of sending, because a repeat means different things:
//! - a *dispatch result* ([`NodeInner::send_result`]) is retried until it is in the inbox
//!   or `worker_ttl` has passed: a lost one would turn a successful dispatch into a
//!   timeout, and a duplicate is harmless (the dispatcher's waiter is gone after the
//!   first);
//! - a *notification* ([`NodeInner::send_inbox`]) is sent once: a repeat after an ambiguous
//!   failure could deliver it twice, and notifications are at most once.

use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use tokio::{sync::watch, time::Instant};
use tracing::{debug, warn, Instrument};

use super::{
    call::{handle_call, Incoming},
    node::{owner_node, NodeInner},
    options::NodeOptions,
    records::InboxMessage,
    retry::{retryable, Backoff},
    worker::Slot,
};
use crate::{
    backend::EntryId,
    codec, spans,
    streaming::{Event, NewEvent, Stream, StreamOptions},
    Result,
};

/// Most inbox messages handled (and then deleted together) at once.
const INBOX_BATCH: usize = 256;

/// How long a node's inbox outlives its node's last keep-alive.
pub(crate) fn inbox_ttl(options: &NodeOptions) -> Duration {
    (options.worker_ttl * 10).max(Duration::from_secs(60))
}

/// The stream name of `node`'s inbox in `pool`.
pub(crate) fn inbox_name(pool: &str, node: &str) -> String {
    format!("{pool}:inbox:{node}")
}

impl NodeInner {
    /// Another node's inbox, for sending. A send does not touch the inbox's expiry.
    fn inbox_stream(&self, node: &str) -> Result<Stream> {
        let opts = StreamOptions::default().with_keyspace(self.options.keyspace.clone());
        Stream::new(self.backend.clone(), &inbox_name(&self.pool, node), opts)
    }

    /// One attempt: appends `msg` to `node`'s inbox if that inbox exists; `Ok(false)` when
    /// it does not.
    pub(super) async fn try_send(&self, node: &str, msg: &InboxMessage) -> Result<bool> {
        let stream = self.inbox_stream(node)?;
        let sent = stream
            .add_if_exists(NewEvent::new("m", codec::encode(msg)?))
            .await?;
        Ok(sent.is_some())
    }

    /// Sends a notification once (at most once: see the module docs).
    pub(crate) async fn send_inbox(&self, node: &str, msg: &InboxMessage) {
        match self.try_send(node, msg).await {
            Ok(true) => {}
            Ok(false) => debug!(pool = %self.pool, %node, "inbox gone; message dropped"),
            Err(e) => {
                warn!(pool = %self.pool, %node, error = %e, "could not send to a node inbox; the notification is dropped")
            }
        }
    }

    /// Sends a dispatch result, retrying while the send fails or the inbox is missing (its
    /// node re-creates a lost inbox within `worker_ttl / 3`), for up to `worker_ttl`.
    pub(crate) async fn send_result(&self, node: &str, msg: &InboxMessage) {
        let deadline = Instant::now() + self.options.worker_ttl;
        let mut backoff = Backoff::new(self.options.worker_ttl / 6);
        loop {
            let outcome = self.try_send(node, msg).await;
            let why = match outcome {
                Ok(true) => return,
                Ok(false) => "its inbox does not exist".to_owned(),
                Err(e) if retryable(&e) => e.to_string(),
                Err(e) => {
                    warn!(pool = %self.pool, %node, error = %e, "could not send a dispatch result");
                    return;
                }
            };
            if Instant::now() + backoff.next_pause() > deadline {
                warn!(pool = %self.pool, %node, reason = %why, "dispatch result not delivered within the worker TTL; the dispatcher times out");
                return;
            }
            debug!(pool = %self.pool, %node, reason = %why, "dispatch result not delivered yet; retrying");
            backoff.wait().await;
        }
    }
}

/// Reads this node's inbox, a batch of waiting messages at a time.
pub(crate) async fn inbox_loop(
    inner: Arc<NodeInner>,
    mut rx: crate::streaming::EventReceiver,
    mut stop: watch::Receiver<bool>,
) {
    // Handled messages whose delete failed: deleted with the next batch.
    let mut undeleted: Vec<EntryId> = Vec::new();
    loop {
        let first = tokio::select! {
            _ = stop.changed() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let mut batch = vec![first];
        while batch.len() < INBOX_BATCH {
            match rx.try_recv() {
                Some(e) => batch.push(e),
                None => break,
            }
        }
        undeleted.extend(batch.iter().map(|e| e.id));
        for event in batch {
            handle_inbox(&inner, event).await;
        }
        // Handled messages are deleted, so an inbox holds only what its node has not read
        // yet instead of one entry per job it ever dispatched.
        match inner.inbox.remove(&undeleted).await {
            Ok(_) => undeleted.clear(),
            Err(e) => {
                debug!(pool = %inner.pool, error = %e, pending = undeleted.len(), "could not delete handled inbox messages; retrying with the next batch")
            }
        }
    }
}

/// One inbox message: a dispatch result for a waiting `dispatch_job`, or a notification
/// for a job running here (forwarded at most twice when the job has moved).
async fn handle_inbox(inner: &Arc<NodeInner>, event: Event) {
    if event.name != "m" {
        return;
    }
    match codec::decode::<InboxMessage>("inbox message", &event.payload) {
        Ok(InboxMessage::Started {
            dispatch_id, error, ..
        }) => {
            if let Some(tx) = inner
                .waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&dispatch_id)
            {
                let _ = tx.send(error);
            }
        }
        Ok(InboxMessage::Notify { key, payload, hops }) => {
            let local = inner
                .locals()
                .into_iter()
                .find(|w| w.slots().get(&key) == Some(&Slot::Running));
            match local {
                Some(w) => {
                    let span = spans::job(&inner.pool, &w.id, "notify", &key);
                    if let Err(e) = w.handler.notify(&key, payload).instrument(span).await {
                        warn!(job = %key, error = %e, "notification handler failed");
                    }
                }
                None if hops < 2 => match owner_node(inner, &key) {
                    Some(node) => {
                        inner
                            .send_inbox(
                                &node,
                                &InboxMessage::Notify {
                                    key,
                                    payload,
                                    hops: hops + 1,
                                },
                            )
                            .await
                    }
                    None => warn!(job = %key, "notification dropped: the job has no owner"),
                },
                None => warn!(job = %key, "notification dropped after forwarding"),
            }
        }
        Ok(InboxMessage::Call {
            key,
            payload,
            from,
            waiter,
            deadline_ms,
            trace_parent,
        }) => {
            let call = Incoming {
                key,
                payload,
                deadline: UNIX_EPOCH + Duration::from_millis(deadline_ms),
                trace_parent,
                from,
                waiter,
            };
            handle_call(inner, call);
        }
        Ok(InboxMessage::CallAnswer { waiter, answer }) => inner.calls.resolve(waiter, answer),
        Err(e) => warn!(pool = %inner.pool, error = %e, "ignoring a malformed inbox message"),
    }
}
