//! The local copy of a map and the rules for applying notices to it.
//!
//! Invariants:
//! - the replica only moves forward within a generation: a notice is applied only if it is
//!   the next revision of the replica's epoch;
//! - anything else that is not an old duplicate — a gap (missed notice), a regression or a
//!   foreign epoch (the hash was re-created after expiry, flush or restart) — requires a
//!   resync from a snapshot instead of being ignored forever (fixes rmap W2);
//! - content is an `Arc` so whole-map snapshots are O(1); a write copies the map only while
//!   a snapshot taken before it is still alive.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;

use super::events::{EventKind, MapEvent};
use crate::{
    backend::Revision,
    codec::{MapChange, MapNotice},
};

/// Bookkeeping fields of the map's hash.
pub(crate) const EPOCH: &str = "=epoch";
pub(crate) const REV: &str = "=rev";
pub(crate) const KIND: &str = "=kind";

/// A bookkeeping field's value as a number: ASCII decimal (see the backend contract);
/// `None` for anything else.
pub(crate) fn decimal(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A consistent view of a map: content and the revision it reflects.
#[derive(Clone, Debug, Default)]
pub(crate) struct Replica {
    pub(crate) content: Arc<HashMap<String, Bytes>>,
    pub(crate) revision: Revision,
}

/// What a notice did to the replica.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// An old duplicate: nothing changed.
    Stale,
    /// Applied; subscribers get this event.
    Event(MapEvent),
    /// The replica cannot apply it; reload a snapshot.
    Resync,
}

impl Replica {
    /// A replica from a snapshot of the whole hash (bookkeeping fields removed). Also
    /// returns the hash's recorded last kind (`set`, `del`, `reset`, `destroy`).
    pub(crate) fn from_snapshot(fields: Vec<(String, Bytes)>) -> (Self, Option<String>) {
        let mut content = HashMap::with_capacity(fields.len());
        let mut revision = Revision::default();
        let mut kind = None;
        for (k, v) in fields {
            match k.as_str() {
                EPOCH => revision.epoch = decimal(&v).unwrap_or(0),
                REV => revision.rev = decimal(&v).unwrap_or(0),
                KIND => kind = Some(String::from_utf8_lossy(&v).into_owned()),
                _ if k.starts_with('=') => {}
                _ => {
                    content.insert(k, v);
                }
            }
        }
        if revision.epoch == 0 {
            // A hash without a generation (foreign writer) cannot be tracked by notices.
            revision.rev = 0;
        }
        (
            Replica {
                content: Arc::new(content),
                revision,
            },
            kind,
        )
    }

    /// Applies one notice.
    pub(crate) fn apply(&mut self, n: MapNotice) -> Applied {
        if matches!(n.change, MapChange::Changed { .. }) {
            // Its value must be read first (see `notices`); applied as is it would be lost.
            return Applied::Resync;
        }
        let fresh_generation = self.revision.epoch == 0 && n.rev == 1;
        if n.epoch != self.revision.epoch && !fresh_generation {
            return Applied::Resync;
        }
        if !fresh_generation {
            if n.rev <= self.revision.rev {
                return Applied::Stale;
            }
            if n.rev != self.revision.rev + 1 {
                return Applied::Resync;
            }
        }
        self.revision = Revision {
            epoch: n.epoch,
            rev: n.rev,
        };
        let content = Arc::make_mut(&mut self.content);
        let (kind, key) = match n.change {
            MapChange::Set { key, value } => {
                content.insert(key.clone(), value);
                (EventKind::Change, Some(key))
            }
            MapChange::Delete { key } => {
                content.remove(&key);
                (EventKind::Delete, Some(key))
            }
            MapChange::Reset => {
                content.clear();
                (EventKind::Reset, None)
            }
            MapChange::Destroy => {
                // The hash is gone: the next write starts a new generation.
                content.clear();
                self.revision = Revision::default();
                (EventKind::Reset, None)
            }
            // Not reached: returned above before anything changed.
            MapChange::Changed { key } => (EventKind::Change, Some(key)),
        };
        Applied::Event(MapEvent {
            kind,
            key,
            revision: self.revision,
        })
    }

    /// The events that turn `self` into `next` (after a resync).
    ///
    /// A different generation, or a reset recorded in the snapshot since our revision, is
    /// one `Reset`; otherwise one event per key that differs.
    pub(crate) fn diff(&self, next: &Replica, next_kind: Option<&str>) -> Vec<MapEvent> {
        let revision = next.revision;
        let reset = MapEvent {
            kind: EventKind::Reset,
            key: None,
            revision,
        };
        if next.revision.epoch != self.revision.epoch {
            return if self.content.is_empty() && next.content.is_empty() && self.revision.epoch == 0
            {
                Vec::new()
            } else {
                vec![reset]
            };
        }
        let advanced = next.revision.rev > self.revision.rev;
        if advanced && matches!(next_kind, Some("reset") | Some("destroy")) {
            return vec![reset];
        }
        let mut events = Vec::new();
        for (k, v) in next.content.iter() {
            if self.content.get(k) != Some(v) {
                events.push(MapEvent {
                    kind: EventKind::Change,
                    key: Some(k.clone()),
                    revision,
                });
            }
        }
        for k in self.content.keys() {
            if !next.content.contains_key(k) {
                events.push(MapEvent {
                    kind: EventKind::Delete,
                    key: Some(k.clone()),
                    revision,
                });
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(epoch: u64, rev: u64, key: &str, value: &str) -> MapNotice {
        MapNotice {
            epoch,
            rev,
            change: MapChange::Set {
                key: key.into(),
                value: Bytes::copy_from_slice(value.as_bytes()),
            },
        }
    }

    fn snapshot(
        epoch: u64,
        rev: u64,
        kind: &str,
        kv: &[(&str, &str)],
    ) -> (Replica, Option<String>) {
        let mut fields: Vec<(String, Bytes)> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), Bytes::copy_from_slice(v.as_bytes())))
            .collect();
        fields.push((EPOCH.into(), Bytes::from(epoch.to_string())));
        fields.push((REV.into(), Bytes::from(rev.to_string())));
        fields.push((KIND.into(), Bytes::copy_from_slice(kind.as_bytes())));
        Replica::from_snapshot(fields)
    }

    #[test]
    fn next_revision_applies_old_ones_are_stale() {
        let (mut r, _) = snapshot(7, 3, "set", &[("a", "1")]);
        assert_eq!(r.apply(set(7, 3, "a", "old")), Applied::Stale);
        assert!(matches!(
            r.apply(set(7, 4, "b", "2")),
            Applied::Event(MapEvent {
                kind: EventKind::Change,
                ..
            })
        ));
        assert_eq!(r.content.get("b"), Some(&Bytes::from("2")));
        assert_eq!(r.revision, Revision { epoch: 7, rev: 4 });
    }

    #[test]
    fn gaps_regressions_and_foreign_epochs_need_a_resync() {
        let (mut r, _) = snapshot(7, 3, "set", &[]);
        assert_eq!(r.apply(set(7, 5, "a", "1")), Applied::Resync, "gap");
        assert_eq!(
            r.apply(set(8, 1, "a", "1")),
            Applied::Resync,
            "new generation"
        );
        assert_eq!(r.revision.rev, 3, "nothing applied");
    }

    #[test]
    fn a_missing_map_accepts_a_new_generation_from_revision_one() {
        let mut r = Replica::default();
        assert!(matches!(r.apply(set(9, 1, "a", "1")), Applied::Event(_)));
        assert_eq!(r.revision, Revision { epoch: 9, rev: 1 });
        let mut r = Replica::default();
        assert_eq!(
            r.apply(set(9, 2, "a", "1")),
            Applied::Resync,
            "missed revision 1"
        );
    }

    #[test]
    fn destroy_forgets_the_generation() {
        let (mut r, _) = snapshot(7, 3, "set", &[("a", "1")]);
        let d = MapNotice {
            epoch: 7,
            rev: 4,
            change: MapChange::Destroy,
        };
        assert!(matches!(
            r.apply(d),
            Applied::Event(MapEvent {
                kind: EventKind::Reset,
                ..
            })
        ));
        assert_eq!((r.revision, r.content.len()), (Revision::default(), 0));
        assert!(
            matches!(r.apply(set(8, 1, "b", "2")), Applied::Event(_)),
            "new generation accepted"
        );
    }

    #[test]
    fn snapshots_drop_bookkeeping_fields() {
        let (r, kind) = snapshot(5, 2, "reset", &[("k", "v")]);
        assert_eq!(r.content.len(), 1);
        assert_eq!(kind.as_deref(), Some("reset"));
    }

    #[test]
    fn resync_diff_reports_keys_or_a_reset() {
        let (old, _) = snapshot(1, 2, "set", &[("a", "1"), ("b", "2")]);
        let (new, kind) = snapshot(1, 4, "set", &[("a", "1"), ("b", "3"), ("c", "4")]);
        let mut keys: Vec<_> = old
            .diff(&new, kind.as_deref())
            .into_iter()
            .map(|e| (e.kind, e.key.unwrap()))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                (EventKind::Change, "b".to_string()),
                (EventKind::Change, "c".to_string())
            ]
        );
        let (gone, kind) = snapshot(1, 5, "del", &[("a", "1")]);
        assert_eq!(old.diff(&gone, kind.as_deref())[0].kind, EventKind::Delete);
        let (reset, kind) = snapshot(1, 3, "reset", &[]);
        assert_eq!(old.diff(&reset, kind.as_deref())[0].kind, EventKind::Reset);
        let (regen, kind) = snapshot(2, 1, "set", &[("a", "1")]);
        assert_eq!(old.diff(&regen, kind.as_deref())[0].kind, EventKind::Reset);
    }
}
