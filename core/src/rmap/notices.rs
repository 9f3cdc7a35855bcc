//! Notices whose value did not travel: reading big values from the hash.
//!
//! A set whose value is over the notice budget
//! ([`NOTICE_VALUE_BUDGET`](crate::codec::NOTICE_VALUE_BUDGET)) is published as
//! [`MapChange::Changed`] (key only) so a frame never approaches what a pub/sub connection
//! can buffer. Before a replica applies such a frame it reads those keys, with the hash's
//! epoch, in one atomic read and turns each into a plain set (or a delete, if the key is
//! gone by then).
//!
//! The value read may be newer than the notice (a later write landed first); the later
//! write's own notice follows and re-applies it, so the replica converges, and it never
//! shows a value that was not committed. A read from another generation (the hash was
//! re-created meanwhile) cannot be applied at all: the caller resyncs.

use super::replica::{decimal, EPOCH};
use crate::{
    codec::{MapChange, MapNotice},
    Backend, Result,
};

/// `frame` with every [`MapChange::Changed`] replaced by the key's current value; `None`
/// when that value belongs to another generation of the map (resync instead). Frames
/// without one are returned as they are, without a backend call.
pub(crate) async fn complete(
    backend: &dyn Backend,
    hash: &str,
    mut frame: Vec<MapNotice>,
) -> Result<Option<Vec<MapNotice>>> {
    let missing: Vec<&str> = frame
        .iter()
        .filter_map(|n| match &n.change {
            MapChange::Changed { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    if missing.is_empty() {
        return Ok(Some(frame));
    }
    let mut fields = missing.clone();
    fields.push(EPOCH);
    let mut values = backend.hash_get_fields(hash, &fields).await?;
    let epoch = values
        .pop()
        .flatten()
        .and_then(|v| decimal(&v))
        .unwrap_or(0);
    let mut values = values.into_iter();
    for notice in &mut frame {
        let MapChange::Changed { key } = &mut notice.change else {
            continue;
        };
        if notice.epoch != epoch {
            return Ok(None);
        }
        let key = std::mem::take(key);
        notice.change = match values.next().flatten() {
            Some(value) => MapChange::Set { key, value },
            None => MapChange::Delete { key },
        };
    }
    Ok(Some(frame))
}
