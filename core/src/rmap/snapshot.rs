//! Loading a map's whole content in bounded steps, consistent with its notices.
//!
//! A join or a resync must not stall the store for everyone: one `HGETALL` of a 1M-entry
//! hash blocks Redis for ~0.5 s, and a 5M-entry one outlasts the command timeout. So the
//! content is read with [`HashOps::hash_scan`](crate::backend::HashOps::hash_scan) in steps
//! of bounded size, and made consistent with the map's notices:
//!
//! 1. read the bookkeeping (`=epoch`, `=rev`, `=kind`) in one atomic read: revision `r0`;
//! 2. scan every field: each value read is the key's value at some revision in `r0..=r1`;
//! 3. read the bookkeeping again: revision `r1`;
//! 4. same revision: nothing changed during the scan, the content is exact at `r0`.
//!    Another generation: the hash was re-created meanwhile, start over. Otherwise apply
//!    the notices `r0+1..=r1` from the subscription (which was confirmed before step 1, so
//!    none is missed) over the scanned content: a key one of them touched ends as the last
//!    of them left it, and every other key was unchanged during the whole scan, which
//!    therefore returned it exactly (present throughout: returned; absent: not).
//!
//! A scan that completes in one step is atomic, and its own bookkeeping fields are exact.
//! The loader never publishes anything: the caller swaps the result in, so readers never
//! see a half-loaded map.

use std::{collections::HashMap, sync::Arc, time::Duration};

use super::{
    notices,
    replica::{decimal, Applied, Replica, EPOCH, KIND, REV},
};
use crate::{
    backend::{PubSubEvent, Revision, Subscription},
    codec::{MapChange, MapNotice},
    Backend, Error, Result,
};

/// Bytes one scan step aims at: big enough that round trips do not dominate, small enough
/// that one step never holds the store for more than a few milliseconds.
const STEP_BYTES: usize = 512 * 1024;
/// Bounds of the `count` hint of a scan step.
const MIN_STEP: usize = 8;
const MAX_STEP: usize = 2048;
/// First step's hint: a small map (Redis keeps hashes of up to 128 fields compact and
/// returns them whole) is read in one atomic step.
const FIRST_STEP: usize = 256;

/// How long a load waits for the notices that make its read consistent: a map's check
/// interval, at least 1 s (they were published before the load read its last revision).
pub(crate) fn patience(check_interval: Duration) -> Duration {
    check_interval.max(Duration::from_secs(1))
}

/// A loaded map: its content at one revision, and the kind of the last mutation (`set`,
/// `del`, `reset`, `destroy`) when known.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) replica: Replica,
    pub(crate) kind: Option<String>,
}

/// Loads the map in `hash`. `sub` must be the map's confirmed subscription; the notices
/// this consumes from it are applied to the result (those left queued are either older
/// than the result, so stale, or newer, so applied by the caller as usual).
///
/// `Ok(None)`: the map changed in a way the load could not follow (re-created during the
/// scan, a notice missing, the subscription lost): try again. Errors: whatever the backend
/// reports.
pub(crate) async fn load(
    backend: &dyn Backend,
    hash: &str,
    sub: &mut Subscription,
    patience: Duration,
) -> Result<Option<Loaded>> {
    let before = header(backend, hash).await?;
    let mut content = HashMap::new();
    let mut cursor: Option<String> = None;
    let mut count = FIRST_STEP;
    let mut steps = 0usize;
    loop {
        let chunk = backend.hash_scan(hash, cursor.as_deref(), count).await?;
        steps += 1;
        let bytes: usize = chunk.fields.iter().map(|(k, v)| k.len() + v.len()).sum();
        content.extend(chunk.fields);
        match chunk.next {
            None => break,
            next => cursor = next,
        }
        count = if bytes > 2 * STEP_BYTES {
            (count / 2).max(MIN_STEP)
        } else if bytes < STEP_BYTES / 2 {
            (count * 2).min(MAX_STEP)
        } else {
            count
        };
    }
    if steps == 1 {
        // One atomic step: its own bookkeeping is exact.
        let (replica, kind) = Replica::from_snapshot(content.into_iter().collect());
        return Ok(Some(Loaded { replica, kind }));
    }
    let after = header(backend, hash).await?;
    content.retain(|k, _| !k.starts_with('='));
    let mut replica = Replica {
        content: Arc::new(content),
        revision: before.revision,
    };
    if after.revision == before.revision {
        return Ok(Some(Loaded {
            replica,
            kind: before.kind,
        }));
    }
    if after.revision.epoch != before.revision.epoch || after.revision.rev < before.revision.rev {
        return Ok(None);
    }
    let saw_reset = catch_up(backend, hash, &mut replica, after.revision, sub, patience).await?;
    Ok(saw_reset.map(|reset| Loaded {
        replica,
        kind: if reset {
            Some("reset".into())
        } else {
            after.kind
        },
    }))
}

/// The bookkeeping of a map's hash.
pub(super) struct Header {
    pub(super) revision: Revision,
    kind: Option<String>,
}

/// The bookkeeping of the map in `hash`, in one atomic read (also the replica's periodic
/// probe).
pub(super) async fn header(backend: &dyn Backend, hash: &str) -> Result<Header> {
    let values = backend.hash_get_fields(hash, &[EPOCH, REV, KIND]).await?;
    let mut values = values.into_iter();
    let mut next = || values.next().flatten();
    let (epoch, rev, kind) = (next(), next(), next());
    let num = |v: Option<bytes::Bytes>| v.and_then(|v| decimal(&v)).unwrap_or(0);
    let epoch = num(epoch);
    Ok(Header {
        // A hash without a generation (foreign writer) cannot be tracked by notices.
        revision: Revision {
            epoch,
            rev: if epoch == 0 { 0 } else { num(rev) },
        },
        kind: kind.map(|k| String::from_utf8_lossy(&k).into_owned()),
    })
}

/// Applies notices from `sub` to `replica` until it reaches `target`. `Some(true)` when a
/// reset or destroy was among them; `None` when it cannot get there (a gap, a lost
/// subscription, no notice within `patience`).
async fn catch_up(
    backend: &dyn Backend,
    hash: &str,
    replica: &mut Replica,
    target: Revision,
    sub: &mut Subscription,
    patience: Duration,
) -> Result<Option<bool>> {
    let mut saw_reset = false;
    while replica.revision.rev < target.rev {
        let event = match tokio::time::timeout(patience, sub.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => return Err(Error::connection("map subscription ended")),
            Err(_) => return Ok(None),
        };
        let PubSubEvent::Message { payload, .. } = event else {
            return Ok(None);
        };
        let Ok(frame) = MapNotice::decode_all(&payload) else {
            continue;
        };
        let Some(frame) = notices::complete(backend, hash, frame).await? else {
            return Ok(None);
        };
        for notice in frame {
            saw_reset |= matches!(notice.change, MapChange::Reset | MapChange::Destroy);
            match replica.apply(notice) {
                Applied::Stale | Applied::Event(_) => {}
                Applied::Resync => return Ok(None),
            }
        }
    }
    Ok(Some(saw_reset))
}
