//! Worker groups: named sets of workers, each assigned a range of job keys at runtime.
//!
//! A range is a set of **key prefixes** (`tenant-42:`, `eu/`): a job belongs to the group
//! whose range has a prefix of its key, and to the [default group](DEFAULT_GROUP) when no
//! range has one. Prefixes, not hash ranges, because the question an operator asks is
//! "these tenants' keys go to that group" — a hash range cannot say it, and spreading load
//! inside a group is what rendezvous hashing already does (add workers to the group).
//! Ranges of different groups never overlap (no prefix of one group is a prefix of
//! another group's), so a key belongs to one group whatever the order of the ranges.
//!
//! Contract with the pool: every node computes the same assignment from the same replicas —
//! the ranges record (one value, `ranges`, in the pool's `groups` map, changed by
//! compare-and-set so the overlap check holds against concurrent changes) and the workers
//! map (each worker's record names its group). Within a group, a job goes to the
//! rendezvous choice among the group's live workers; a group without one holds its jobs
//! (waiting, not run elsewhere). So adding or removing a worker moves only jobs of its
//! group, and changing a range moves only the jobs whose group changes; moves follow the
//! usual stop-then-release protocol, never two runs at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::node::Node;
use crate::{
    backend::SetCondition,
    codec,
    keys::{validate_name, MAX_KEY_LEN},
    Error, Result,
};

/// The group of workers added without one, and of job keys no range claims.
pub const DEFAULT_GROUP: &str = "default";

/// Most prefixes in all ranges together.
pub const MAX_PREFIXES: usize = 10_000;

/// The key of the ranges record in the `groups` map.
pub(crate) const RANGES: &str = "ranges";

/// Every group's range: group name → its key prefixes (sorted, no duplicates, none a
/// prefix of another of its group: such a one adds nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ranges {
    pub(crate) groups: BTreeMap<String, Vec<String>>,
    /// Every prefix → its group, for lookups in O(log prefixes): ranges never overlap, so
    /// the only prefix that can match a key is the greatest one not above it.
    #[serde(skip)]
    index: BTreeMap<String, String>,
}

impl Ranges {
    /// The ranges as stored (foreign or garbled data: none, with a warning).
    pub(crate) fn decode(stored: Option<&[u8]>) -> Ranges {
        let mut ranges = match stored {
            None => Ranges::default(),
            Some(bytes) => codec::decode("group ranges", bytes).unwrap_or_else(|e| {
                warn!(error = %e, "ignoring a malformed group ranges record: every key is in the default group");
                Ranges::default()
            }),
        };
        ranges.reindex();
        ranges
    }

    fn reindex(&mut self) {
        self.index = self
            .groups
            .iter()
            .flat_map(|(g, ps)| ps.iter().map(move |p| (p.clone(), g.clone())))
            .collect();
    }

    /// The group `key` belongs to.
    pub(crate) fn group_of(&self, key: &str) -> &str {
        use std::ops::Bound;
        self.index
            .range::<str, _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .filter(|(p, _)| key.starts_with(p.as_str()))
            .map_or(DEFAULT_GROUP, |(_, g)| g.as_str())
    }

    /// These ranges with `group`'s replaced by `prefixes` (removed when empty); refused
    /// when a prefix overlaps another group's.
    fn with(&self, group: &str, prefixes: &[String]) -> Result<Ranges> {
        let mut mine: Vec<String> = prefixes.to_vec();
        mine.sort();
        mine.dedup();
        // A prefix extending another of the same group adds nothing (and would break the
        // index's one-match rule).
        let mut kept: Vec<String> = Vec::with_capacity(mine.len());
        for p in mine {
            if !kept.last().is_some_and(|q| p.starts_with(q.as_str())) {
                kept.push(p);
            }
        }
        let mine = kept;
        for (other, theirs) in self.groups.iter().filter(|(g, _)| g.as_str() != group) {
            for p in &mine {
                if let Some(q) = theirs
                    .iter()
                    .find(|q| p.starts_with(q.as_str()) || q.starts_with(p.as_str()))
                {
                    return Err(Error::InvalidArgument(format!(
                        "prefix {p:?} overlaps {q:?} of group {other:?}"
                    )));
                }
            }
        }
        let mut next = self.clone();
        if mine.is_empty() {
            next.groups.remove(group);
        } else {
            next.groups.insert(group.to_owned(), mine);
        }
        let total: usize = next.groups.values().map(Vec::len).sum();
        if total > MAX_PREFIXES {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_PREFIXES} prefixes in all ranges together"
            )));
        }
        next.reindex();
        Ok(next)
    }
}

/// Checks a group name (the rules of every name, see [`validate_name`]).
pub(crate) fn validate_group(group: &str) -> Result<()> {
    validate_name("group", group)
}

fn check_prefix(p: &str) -> Result<()> {
    if p.is_empty() || p.len() > MAX_KEY_LEN || p.contains('=') {
        return Err(Error::InvalidArgument(format!(
            "a key prefix is 1 to {MAX_KEY_LEN} bytes without '=': {:?}",
            p.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

impl Node {
    /// Assigns `prefixes` as the range of job keys of worker group `group`, replacing its
    /// range (an empty list removes it: its keys go back to the default group). Jobs whose
    /// group changes move to a worker of their new group — or wait there, not lost and
    /// not run elsewhere, while it has no live worker; no other job moves. Any node may
    /// change any range; concurrent changes are serialised.
    ///
    /// Errors: `InvalidName` (group), `InvalidArgument` (the default group, which has no
    /// range of its own; an empty or invalid prefix; a prefix overlapping another group's;
    /// more than [`MAX_PREFIXES`] in all), `Closed`, backend errors.
    pub async fn set_group_range(&self, group: &str, prefixes: &[&str]) -> Result<()> {
        self.check_open()?;
        validate_group(group)?;
        if group == DEFAULT_GROUP {
            return Err(Error::InvalidArgument(
                "the default group takes every key no range claims; it has no range".into(),
            ));
        }
        for p in prefixes {
            check_prefix(p)?;
        }
        let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
        let groups = &self.inner.groups;
        let mut current = groups.get(RANGES);
        loop {
            let next = Ranges::decode(current.as_deref()).with(group, &prefixes)?;
            let encoded = codec::encode(&next)?;
            let condition = match &current {
                None => SetCondition::IfAbsent,
                Some(v) => SetCondition::IfEqual(v.clone()),
            };
            let out = groups.set_if(RANGES, encoded, condition).await?;
            if out.written {
                self.inner.mark(None);
                return Ok(());
            }
            current = out.previous; // changed meanwhile: check against what is there now
        }
    }

    /// Every group's range (local replica): group name → key prefixes.
    pub fn group_ranges(&self) -> BTreeMap<String, Vec<String>> {
        self.inner.ranges().groups
    }

    /// The group job `key` belongs to (local replica of the ranges).
    pub fn group_of(&self, key: &str) -> String {
        self.inner.ranges().group_of(key).to_owned()
    }
}

impl super::node::NodeInner {
    /// The ranges, from the local replica.
    pub(crate) fn ranges(&self) -> Ranges {
        Ranges::decode(self.groups.get(RANGES).as_deref())
    }

    /// How many jobs of each group wait because the group has no live worker (from a full
    /// reconcile pass): said once each time it changes.
    pub(crate) fn report_starving(&self, starving: BTreeMap<String, usize>) {
        let mut last = self.starving.lock().unwrap_or_else(|p| p.into_inner());
        if *last == starving {
            return;
        }
        if starving.is_empty() {
            tracing::info!(pool = %self.pool, "every group with jobs has a live worker again");
        } else {
            warn!(pool = %self.pool, groups = ?starving, "jobs wait for a worker of their group (none is alive): add one, or change the range");
        }
        for (group, count) in &starving {
            self.events.emit(super::PoolEvent::JobsWaiting {
                group: group.clone(),
                count: *count,
            });
        }
        *last = starving;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(pairs: &[(&str, &[&str])]) -> Ranges {
        let mut r = Ranges::default();
        for (g, ps) in pairs {
            let ps: Vec<String> = ps.iter().map(|p| (*p).to_owned()).collect();
            r = r.with(g, &ps).unwrap();
        }
        r
    }

    #[test]
    fn keys_go_to_the_group_whose_range_has_a_prefix_of_them() {
        let r = ranges(&[("premium", &["tenant-42:", "tenant-7:"]), ("eu", &["eu/"])]);
        assert_eq!(r.group_of("tenant-42:feed"), "premium");
        assert_eq!(r.group_of("tenant-7:x"), "premium");
        assert_eq!(r.group_of("tenant-4:x"), DEFAULT_GROUP);
        assert_eq!(r.group_of("eu/paris"), "eu");
        assert_eq!(r.group_of("us/nyc"), DEFAULT_GROUP);
    }

    #[test]
    fn overlapping_prefixes_of_different_groups_are_refused() {
        let r = ranges(&[("a", &["tenant-"])]);
        for p in ["tenant-42:", "ten", "tenant-"] {
            let e = r.with("b", &[p.to_owned()]).unwrap_err();
            assert!(
                matches!(e, Error::InvalidArgument(ref m) if m.contains("overlaps")),
                "{p}: {e:?}"
            );
        }
        // Within one group, overlap is harmless; replacing a group's own range is fine.
        let r2 = r
            .with("a", &["tenant-".to_owned(), "tenant-4".to_owned()])
            .unwrap();
        assert_eq!(r2.groups["a"], ["tenant-"], "tenant-4 adds nothing");
        assert_eq!(r2.group_of("tenant-5x"), "a");
        assert!(
            r.with("a", &[]).unwrap().groups.is_empty(),
            "an empty range removes it"
        );
    }

    #[test]
    fn lookups_match_a_scan_of_every_prefix() {
        let r = ranges(&[
            ("a", &["m", "ab", "x/y/"]),
            ("b", &["ac-", "b", "x/z"]),
            ("c", &["aa", "zz"]),
        ]);
        for key in [
            "", "a", "aa", "aab", "ab", "abc", "ac-1", "ac", "abd", "b", "bz", "c", "m", "mm",
            "x/y", "x/y/1", "x/z", "x/za", "zz", "zzz", "zy",
        ] {
            let scan = r
                .groups
                .iter()
                .find(|(_, ps)| ps.iter().any(|p| key.starts_with(p.as_str())))
                .map_or(DEFAULT_GROUP, |(g, _)| g.as_str());
            assert_eq!(r.group_of(key), scan, "{key:?}");
        }
    }

    #[test]
    fn garbled_records_mean_no_ranges() {
        assert_eq!(Ranges::decode(Some(b"\x01\xff\xff")), Ranges::default());
        assert_eq!(Ranges::decode(None), Ranges::default());
    }
}
