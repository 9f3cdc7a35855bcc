//! A sink instance's liveness and the reclaiming of events held by instances that died.
//!
//! - Each instance renews a lease `<stream key>:sink:<name>:alive:<consumer>` every
//!   `ack_grace / 4`, expiring after `ack_grace` by the backend's clock, in its own task
//!   (so a slow subscriber never makes its instance look dead). A failed renewal is
//!   repeated next period: three may fail in a row before the lease lapses.
//! - Per stream, one instance per `check_interval` (elected by the lease
//!   `<stream key>:sink:<name>:reclaimer`) claims (a) every pending event of instances whose
//!   liveness lapsed, deleting such a consumer only once nothing is pending on it, and
//!   (b) events pending on any instance for longer than `ack_grace`. A failed pass is
//!   repeated at the next interval.
//!
//! Contract with `sink`: it starts these loops per instance and delivers what they claim
//! through [`SinkInner::deliver`].

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{sink::SinkInner, Stream};
use crate::{backend::EntryId, Error, Result};

pub(super) fn alive_key(stream: &Stream, sink: &str, consumer: &str) -> String {
    stream.sub_key(&format!("sink:{sink}:alive:{consumer}"))
}

fn reclaim_key(stream: &Stream, sink: &str) -> String {
    stream.sub_key(&format!("sink:{sink}:reclaimer"))
}

pub(super) async fn keepalive(inner: Arc<SinkInner>, mut shutdown: watch::Receiver<bool>) {
    let period = (inner.options.ack_grace / 4).max(Duration::from_millis(1));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        for m in inner.members() {
            let key = alive_key(&m.stream, &inner.name, &inner.consumer);
            match inner
                .backend
                .lease_acquire(&key, &inner.consumer, inner.options.ack_grace)
                .await
            {
                Ok(true) => {}
                Ok(false) => warn!(sink = %inner.name, "liveness lease held by someone else"),
                Err(e) => warn!(sink = %inner.name, error = %e, "liveness renewal failed"),
            }
        }
    }
}

pub(super) async fn reclaim_loop(inner: Arc<SinkInner>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(inner.options.check_interval) => {}
        }
        if !inner.subscribers.any() {
            continue;
        }
        for m in inner.members() {
            match reclaim_stream(&inner, &m.stream, &mut shutdown).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(Error::NoGroup { .. }) => {}
                Err(e) => {
                    debug!(sink = %inner.name, stream = %m.stream.name, error = %e, "reclaim pass failed")
                }
            }
        }
    }
}

/// One reclaim pass on one stream, if this instance holds the stream's reclaim lease.
/// Returns false when shut down meanwhile.
async fn reclaim_stream(
    inner: &SinkInner,
    stream: &Stream,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<bool> {
    let b = &inner.backend;
    let (name, me) = (&inner.name, &inner.consumer);
    if !b
        .lease_acquire(&reclaim_key(stream, name), me, inner.options.check_interval)
        .await?
    {
        return Ok(true);
    }
    // (a) Instances whose liveness lapsed: take everything they hold, then delete them.
    for c in b.group_consumers(&stream.key, name).await? {
        if c.name == *me || b.exists(&alive_key(stream, name, &c.name)).await? {
            continue;
        }
        loop {
            let pending = b
                .group_pending(&stream.key, name, Some(&c.name), EntryId::ZERO, 100)
                .await?;
            if pending.is_empty() {
                break;
            }
            let ids: Vec<EntryId> = pending.iter().map(|p| p.id).collect();
            let claimed = b
                .group_claim(&stream.key, name, me, Duration::ZERO, &ids)
                .await?;
            info!(sink = %name, stream = %stream.name, from = %c.name, count = claimed.len(), "reclaimed events of a dead instance");
            if !inner.deliver(stream, claimed, shutdown).await {
                return Ok(false);
            }
        }
        if b.group_pending(&stream.key, name, Some(&c.name), EntryId::ZERO, 1)
            .await?
            .is_empty()
        {
            b.group_delete_consumer(&stream.key, name, &c.name).await?;
            debug!(sink = %name, stream = %stream.name, consumer = %c.name, "deleted a dead instance");
        }
    }
    // (b) Events unacknowledged for longer than the grace period, on any instance.
    let mut cursor = EntryId::ZERO;
    loop {
        let claim = b
            .group_claim_idle(&stream.key, name, me, inner.options.ack_grace, cursor, 100)
            .await?;
        if !claim.deleted.is_empty() {
            warn!(sink = %name, stream = %stream.name, lost = claim.deleted.len(), "pending events were trimmed or deleted before being acknowledged");
        }
        if !inner.deliver(stream, claim.entries, shutdown).await {
            return Ok(false);
        }
        if claim.next == EntryId::ZERO {
            return Ok(true);
        }
        cursor = claim.next;
    }
}
