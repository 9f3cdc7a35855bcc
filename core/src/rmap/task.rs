//! The replica's background task: applies notices in order (a batch frame's in turn),
//! resyncs when it must, and probes the backend's revision periodically.
//!
//! It holds only a weak reference to the map, so dropping every handle stops it; `close`
//! stops it explicitly. Its subscription is dropped with it (no leak).
//!
//! A resync reads the map in bounded steps, consistent with the notices (see
//! [`snapshot`]); a frame with a value too big to travel has it read first
//! (see [`notices`]).
//!
//! When it resyncs:
//! - after the backend reports the subscription `Restored` (notices may have been missed
//!   while it was down: fixes rmap W1);
//! - when a notice is not the next revision of the replica's generation (gap, regression,
//!   re-created map: W2);
//! - when the periodic probe finds the hash gone (TTL expiry: W3), of another generation, or
//!   ahead of the replica twice in a row (a notice was lost).

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{notices, snapshot, MapInner};
use crate::{
    backend::{PubSubEvent, Revision, Subscription},
    codec::MapNotice,
};

pub(crate) async fn run(
    map: Weak<MapInner>,
    mut sub: Subscription,
    mut shutdown: watch::Receiver<bool>,
    check_interval: Duration,
) {
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + check_interval, check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = true;
    let mut suspect: Option<u64> = None;
    loop {
        // A resync that saw the shutdown returned early, and the change is seen by then:
        // `changed()` below would wait for another one.
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            event = sub.recv() => {
                let Some(event) = event else { return };
                let Some(map) = map.upgrade() else { return };
                match event {
                    PubSubEvent::Message { payload, .. } => match MapNotice::decode_all(&payload) {
                        Ok(frame) => {
                            let needs_resync = match notices::complete(&*map.backend, &map.target.hash, frame).await {
                                Ok(Some(frame)) => map.apply(frame),
                                Ok(None) => true,
                                Err(e) => {
                                    warn!(map = %map.name, error = %e, "reading a changed value failed; resyncing");
                                    true
                                }
                            };
                            if needs_resync {
                                resync(&map, &mut sub, &mut shutdown).await;
                            }
                        }
                        Err(e) => warn!(map = %map.name, error = %e, "ignoring a malformed notice"),
                    },
                    PubSubEvent::Lost => {
                        warn!(map = %map.name, "disconnected: notices may be missed until resync");
                        connected = false;
                    }
                    PubSubEvent::Restored => {
                        info!(map = %map.name, "reconnected: resyncing");
                        connected = true;
                        resync(&map, &mut sub, &mut shutdown).await;
                    }
                }
            }
            _ = ticker.tick() => {
                let Some(map) = map.upgrade() else { return };
                if connected && probe(&map, &mut suspect).await {
                    resync(&map, &mut sub, &mut shutdown).await;
                }
            }
        }
    }
}

/// Reloads the replica, retrying with back-off until it works or the map closes.
async fn resync(map: &Arc<MapInner>, sub: &mut Subscription, shutdown: &mut watch::Receiver<bool>) {
    map.metrics.resyncs.increment(1);
    let mut delay = map.options.resync_delay;
    loop {
        let patience = snapshot::patience(map.options.check_interval);
        match snapshot::load(&*map.backend, &map.target.hash, sub, patience).await {
            Ok(Some(loaded)) => {
                map.replace(loaded.replica, loaded.kind.as_deref());
                debug!(map = %map.name, revision = ?map.revision(), "resynced");
                return;
            }
            Ok(None) => debug!(map = %map.name, "map changed under the resync; again"),
            Err(e) => warn!(map = %map.name, error = %e, ?delay, "resync failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Compares the backend's revision with the replica's (one read); true when a resync is
/// needed.
async fn probe(map: &MapInner, suspect: &mut Option<u64>) -> bool {
    let Revision { epoch, rev } = match snapshot::header(&*map.backend, &map.target.hash).await {
        Ok(header) => header.revision,
        Err(e) => {
            debug!(map = %map.name, error = %e, "revision probe failed");
            return false;
        }
    };
    let local: Revision = map.revision();
    let behind = if epoch == local.epoch {
        rev.saturating_sub(local.rev)
    } else {
        0
    };
    map.metrics.lag.set(behind as f64);
    if epoch != local.epoch {
        // Gone (expired, flushed) or re-created: the replica is of another generation.
        return epoch != 0 || local.epoch != 0 || !map.is_locally_empty();
    }
    if rev < local.rev {
        return true;
    }
    if rev > local.rev {
        // Notices may simply be queued: only a lag that persists across two probes counts.
        let lagging = suspect.is_some_and(|seen| local.rev < seen);
        *suspect = if lagging { None } else { Some(rev) };
        return lagging;
    }
    *suspect = None;
    false
}
