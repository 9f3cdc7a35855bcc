//! A sink instance's liveness and the reclaiming of events held by instances that died.
//!
//! - Each instance renews a lease `<stream key>:sink:<name>:alive:<consumer>` every
//!   `ack_grace / 4`, expiring after `ack_grace` by the backend's clock, in its own task
//!   (so a slow subscriber never makes its instance look dead). The key names the
//!   consumer, so a renewal is one expiry reset (`PEXPIRE`); a lapsed lease is taken
//!   again. A failed renewal is repeated next period: three may fail in a row before the
//!   lease lapses.
//! - Per stream, one instance per `check_interval` (elected by the lease
//!   `<stream key>:sink:<name>:reclaimer`) claims (a) every pending event of instances whose
//!   liveness lapsed, deleting such a consumer only once nothing is pending on it, and
//!   (b) events pending on any instance for longer than `ack_grace`. A failed pass is
//!   repeated at the next interval. A pass starts with one read of the group's pending count
//!   and lag, and stops there when nothing is pending; the reclaimer then waits `ack_grace / 2` (at
//!   least `check_interval`) before its next pass, since nothing delivered after an empty
//!   pass can be due sooner, and holds the lease that long. Dead instances that hold
//!   nothing are deleted every twelfth pass. Leaving releases the lease.
//!
//! Contract with `sink`: it starts these loops per instance and delivers what they claim
//! through [`SinkInner::deliver`].

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{
    dead_letters::move_to_dead_letters,
    redelivery::{judge, Verdict},
    sink::{Member, SinkInner},
    Stream,
};
use crate::{
    backend::{EntryId, Ttl},
    Error, Result,
};

pub(super) fn alive_key(stream: &Stream, sink: &str, consumer: &str) -> String {
    stream.sub_key(&format!("sink:{sink}:alive:{consumer}"))
}

pub(super) fn reclaim_key(stream: &Stream, sink: &str) -> String {
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
            let b = &inner.backend;
            let grace = inner.options.ack_grace;
            // The key is this instance's alone (it names the consumer), so a renewal is a
            // plain expiry reset; only a lease that lapsed is taken again.
            let renewed = match b.expire(&key, Ttl::Sliding(grace)).await {
                Ok(true) => Ok(true),
                Ok(false) => b.lease_acquire(&key, &inner.consumer, grace).await,
                Err(e) => Err(e),
            };
            match renewed {
                Ok(true) => {}
                Ok(false) => warn!(sink = %inner.name, "liveness lease held by someone else"),
                Err(e) => warn!(sink = %inner.name, error = %e, "liveness renewal failed"),
            }
        }
    }
}

/// What one reclaim pass on one stream found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Another instance holds the reclaim lease.
    NotMine,
    /// Nothing was pending on the stream's group.
    Idle,
    /// Events were pending (and what was due is reclaimed).
    Busy,
    /// Shut down meanwhile.
    Stopped,
}

/// How long a reclaimer that found nothing pending may wait before its next pass: an
/// event delivered after that pass cannot be due (idle past `ack_grace`, or held by an
/// instance whose liveness lapsed) sooner than `ack_grace` later, so half of it keeps
/// the redelivery bound.
fn idle_delay(inner: &SinkInner) -> Duration {
    inner
        .options
        .check_interval
        .max(inner.options.ack_grace / 2)
}

pub(super) async fn reclaim_loop(inner: Arc<SinkInner>, mut shutdown: watch::Receiver<bool>) {
    let mut pass = 0u64;
    let mut delay = inner.options.check_interval;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = inner.options.check_interval;
        if !inner.subscribers.any() {
            continue;
        }
        pass += 1;
        let mut all_idle = true;
        for m in inner.members() {
            match reclaim_stream(&inner, &m, pass, &mut shutdown).await {
                Ok(Pass::Stopped) => return,
                Ok(p) => all_idle &= p == Pass::Idle,
                Err(Error::NoGroup { .. }) => all_idle = false,
                Err(e) => {
                    all_idle = false;
                    debug!(sink = %inner.name, stream = %m.stream.name, error = %e, "reclaim pass failed")
                }
            }
        }
        if all_idle {
            delay = idle_delay(&inner);
        }
    }
}

/// Every how many passes a reclaimer also deletes dead instances that hold nothing (the
/// other passes only look at instances with pending events: one read when idle).
const FULL_PASS_EVERY: u64 = 12;

/// One reclaim pass on one stream, if this instance holds the stream's reclaim lease
/// (held until just after its next pass, however long it waits).
async fn reclaim_stream(
    inner: &SinkInner,
    member: &Member,
    pass: u64,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Pass> {
    let stream = &member.stream;
    let b = &inner.backend;
    let (name, me) = (&inner.name, &inner.consumer);
    let hold = idle_delay(inner) + inner.options.check_interval;
    if !b
        .lease_acquire(&reclaim_key(stream, name), me, hold)
        .await?
    {
        return Ok(Pass::NotMine);
    }
    // One read gives the pending count and the lag (an idle pass costs this and the
    // lease); the per-consumer summary is read only when something is pending.
    let listed = b
        .group_list(&stream.key)
        .await?
        .into_iter()
        .find(|g| g.name == *name);
    let pending = match &listed {
        Some(g) => g.pending,
        // Not listed: the summary reports why (`NoGroup`), or the group just appeared.
        None => b.group_pending_summary(&stream.key, name).await?.count,
    };
    member.metrics.pending.set(pending as f64);
    if let Some(lag) = listed.and_then(|g| g.lag) {
        member.metrics.lag.set(lag as f64);
    }
    let full = pass.is_multiple_of(FULL_PASS_EVERY);
    if pending == 0 && !full {
        return Ok(Pass::Idle);
    }
    let holders: Vec<String> = if full {
        b.group_consumers(&stream.key, name)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect()
    } else {
        b.group_pending_summary(&stream.key, name)
            .await?
            .consumers
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    };
    // (a) Instances whose liveness lapsed: take everything they hold, then delete them.
    for c in holders {
        if c == *me || b.exists(&alive_key(stream, name, &c)).await? {
            continue;
        }
        loop {
            let mut pending = b
                .group_pending(&stream.key, name, Some(&c), EntryId::ZERO, 100)
                .await?;
            if pending.is_empty() {
                break;
            }
            // Those that had their last delivery go to the dead letters, not to us.
            if let Some(max) = inner.options.max_deliveries {
                for p in pending.iter().filter(|p| p.deliveries >= max) {
                    move_to_dead_letters(inner, member, p.id, p.deliveries, None).await?;
                }
                pending.retain(|p| p.deliveries < max);
                if pending.is_empty() {
                    continue;
                }
            }
            let ids: Vec<EntryId> = pending.iter().map(|p| p.id).collect();
            let claimed = b
                .group_claim(&stream.key, name, me, Duration::ZERO, &ids)
                .await?;
            info!(sink = %name, stream = %stream.name, from = %c, count = claimed.len(), "reclaimed events of a dead instance");
            member.metrics.redelivered.increment(claimed.len() as u64);
            // The claim counted one more delivery than the pending list showed.
            let counts: HashMap<EntryId, u64> =
                pending.iter().map(|p| (p.id, p.deliveries + 1)).collect();
            if !inner
                .deliver(member, claimed, Some(&counts), shutdown)
                .await
            {
                return Ok(Pass::Stopped);
            }
        }
        if b.group_pending(&stream.key, name, Some(&c), EntryId::ZERO, 1)
            .await?
            .is_empty()
        {
            b.group_delete_consumer(&stream.key, name, &c).await?;
            debug!(sink = %name, stream = %stream.name, consumer = %c, "deleted a dead instance");
        }
    }
    if pending == 0 {
        return Ok(Pass::Idle);
    }
    // (b) Events unacknowledged for longer than the grace period, on any instance.
    if inner.options.has_policy() {
        return reclaim_due(inner, member, shutdown).await;
    }
    let mut cursor = EntryId::ZERO;
    loop {
        let claim = b
            .group_claim_idle(&stream.key, name, me, inner.options.ack_grace, cursor, 100)
            .await?;
        if !claim.deleted.is_empty() {
            warn!(sink = %name, stream = %stream.name, lost = claim.deleted.len(), "pending events were trimmed or deleted before being acknowledged");
        }
        member
            .metrics
            .redelivered
            .increment(claim.entries.len() as u64);
        let counts = delivery_counts(inner, stream, &claim.entries).await;
        if !inner
            .deliver(member, claim.entries, Some(&counts), shutdown)
            .await
        {
            return Ok(Pass::Stopped);
        }
        if claim.next == EntryId::ZERO {
            return Ok(Pass::Busy);
        }
        cursor = claim.next;
    }
}

/// Part (b) under a redelivery policy: reads the pending list (IDs, counts, idle times)
/// in pages, moves the spent events that are due to the dead letters and claims and
/// delivers the others that are due (`redelivery::judge`).
async fn reclaim_due(
    inner: &SinkInner,
    member: &Member,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Pass> {
    let stream = &member.stream;
    let b = &inner.backend;
    let mut start = EntryId::ZERO;
    loop {
        let page = b
            .group_pending(&stream.key, &inner.name, None, start, 100)
            .await?;
        let (full, last) = (page.len() == 100, page.last().map(|p| p.id));
        let mut claim = Vec::new();
        let mut counts = HashMap::new();
        for p in &page {
            match judge(inner, p.deliveries, p.idle) {
                None => {}
                Some(Verdict::DeadLetter) => {
                    move_to_dead_letters(inner, member, p.id, p.deliveries, None).await?;
                }
                Some(Verdict::Redeliver) => {
                    claim.push(p.id);
                    counts.insert(p.id, p.deliveries + 1);
                }
            }
        }
        if !claim.is_empty() {
            // At least `ack_grace` idle: an event acknowledged or taken meanwhile is skipped.
            let claimed = b
                .group_claim(
                    &stream.key,
                    &inner.name,
                    &inner.consumer,
                    inner.options.ack_grace,
                    &claim,
                )
                .await?;
            member.metrics.redelivered.increment(claimed.len() as u64);
            if !inner
                .deliver(member, claimed, Some(&counts), shutdown)
                .await
            {
                return Ok(Pass::Stopped);
            }
        }
        match last.and_then(EntryId::next) {
            Some(next) if full => start = next,
            _ => return Ok(Pass::Busy),
        }
    }
}

/// The delivery counts of entries this instance just claimed (the claim counted the
/// delivery), read from its pending list in pages from the first claimed ID; empty on a
/// failed read (the events are then delivered with a lower bound, see `deliver`).
async fn delivery_counts(
    inner: &SinkInner,
    stream: &Stream,
    claimed: &[crate::backend::StreamEntry],
) -> HashMap<EntryId, u64> {
    let (Some(first), Some(last)) = (claimed.first(), claimed.last()) else {
        return HashMap::new();
    };
    let wanted: std::collections::HashSet<EntryId> = claimed.iter().map(|e| e.id).collect();
    let mut counts = HashMap::new();
    let mut start = first.id;
    loop {
        let page = match inner
            .backend
            .group_pending(&stream.key, &inner.name, Some(&inner.consumer), start, 100)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                debug!(sink = %inner.name, stream = %stream.name, error = %e, "reading delivery counts failed");
                return counts;
            }
        };
        let Some(end) = page.last().map(|p| p.id) else {
            return counts;
        };
        counts.extend(
            page.into_iter()
                .filter(|p| wanted.contains(&p.id))
                .map(|p| (p.id, p.deliveries)),
        );
        match end.next() {
            Some(next) if end < last.id && counts.len() < wanted.len() => start = next,
            _ => return counts,
        }
    }
}
