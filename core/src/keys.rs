//! Name validation and the key layout in the backend.
//!
//! Every key Pulse writes lives under one configurable prefix (default `pulse`) and carries a
//! Redis Cluster *hash tag* (`{…}`) so that everything one atomic operation touches hashes to
//! the same slot:
//!
//! | Thing | Key |
//! |---|---|
//! | map `orders` content | `pulse:map:{orders}` |
//! | map `orders` change channel | `pulse:map:{orders}:notices` |
//! | stream `events` | `pulse:stream:{events}` |
//! | part `jobs` of pool `p` | `pulse:pool:{p}:jobs` |
//!
//! Names are validated before any key is built, so a name can never break out of its tag.
//!
//! Two rules, on purpose:
//!
//! | Rule | Applies to | Allows | Why |
//! |---|---|---|---|
//! | [`validate_name`] | names of maps, streams, pools, sinks, workers; event topics (which are also dotted subjects, see [`validate_subject`](crate::streaming::validate_subject)) | 1–512 bytes; no whitespace, control characters, `* ? [ ] { }` | a name goes into backend keys inside a hash tag and a topic is matched by filters, so glob, tag and separator characters must never be part of one |
//! | [`validate_map_key`] | keys inside a map; job keys (checked at dispatch, `Error::InvalidKey`) | 1–65,536 bytes, anything but `=` | a key is data — a tenant id, a URL, a file path with spaces — only ever compared for equality and hashed, never part of a backend key or matched by a pattern; `=` marks the map's own bookkeeping fields |
//!
//! So a job key with a space is valid, and a topic built from it is not: to publish events
//! about a job under a topic, derive the topic from a name you control (or check it with
//! [`validate_name`]`("topic", …)` first).

use crate::error::{Error, Result};

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 512;
/// Longest accepted map key, in bytes.
pub const MAX_KEY_LEN: usize = 64 * 1024;
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "pulse";

/// Checks a user-chosen name (map, stream, pool, sink, …).
///
/// A valid name is 1–512 bytes and contains no whitespace, no control character and none of
/// `*` `?` `[` `]` (glob characters) or `{` `}` (Redis Cluster hash tags).
///
/// ```
/// assert!(pulse::keys::validate_name("map", "orders:eu-1").is_ok());
/// assert!(pulse::keys::validate_name("map", "bad*name").is_err());
/// ```
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_name(what, name, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid_name(what, name, "longer than 512 bytes"));
    }
    if let Some(c) = name.chars().find(|c| is_forbidden(*c)) {
        return Err(Error::invalid_name(
            what,
            name,
            if c.is_whitespace() || c.is_control() {
                "contains whitespace or a control character"
            } else {
                "contains one of * ? [ ] { }"
            },
        ));
    }
    Ok(())
}

fn is_forbidden(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '[' | ']' | '{' | '}')
}

/// Checks a key of a replicated map (a field of its hash).
///
/// A valid key is 1–65,536 bytes and contains no `=`: the `=` namespace is reserved for the
/// map's own bookkeeping fields (`=rev`, `=epoch`, `=kind`).
///
/// ```
/// assert!(pulse::keys::validate_map_key("job-17").is_ok());
/// assert!(pulse::keys::validate_map_key("a=b").is_err());
/// ```
pub fn validate_map_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_key(key, "must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid_key(key, "longer than 65536 bytes"));
    }
    if key.contains('=') {
        return Err(Error::invalid_key(key, "must not contain '='"));
    }
    Ok(())
}

/// The keys of one replicated map: its hash and its change-notice channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapKeys {
    /// The hash holding the map's content and bookkeeping fields.
    pub hash: String,
    /// The pub/sub channel carrying the map's change notices.
    pub channel: String,
}

/// Number of hash slots of a Redis Cluster.
pub const CLUSTER_SLOTS: u16 = 16384;

/// The Redis Cluster hash slot of `key`: CRC-16 (XMODEM) of its hash tag — the part between
/// the first `{` and the next `}`, when that part is not empty — or of the whole key, modulo
/// 16384. Every key Pulse builds has a tag, so the keys of one map, one stream (with its
/// sinks' bookkeeping) and one pool share a slot.
///
/// ```
/// use pulse::keys::{hash_slot, Keyspace};
/// assert_eq!(hash_slot("123456789"), 12739);
/// let ks = Keyspace::default();
/// let map = ks.map("orders")?;
/// assert_eq!(hash_slot(&map.hash), hash_slot(&map.channel));
/// # Ok::<(), pulse::Error>(())
/// ```
pub fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(bytes)) % CLUSTER_SLOTS
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster uses.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Builds every backend key from validated names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyspace {
    prefix: String,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Keyspace {
    /// A keyspace under `prefix`, validated like a name (so it cannot contain a hash tag).
    ///
    /// ```
    /// let ks = pulse::keys::Keyspace::new("app1")?;
    /// assert_eq!(ks.stream("events")?, "app1:stream:{events}");
    /// # Ok::<(), pulse::Error>(())
    /// ```
    pub fn new(prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        validate_name("key prefix", &prefix)?;
        Ok(Keyspace { prefix })
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Keys of the standalone map `name`.
    pub fn map(&self, name: &str) -> Result<MapKeys> {
        validate_name("map", name)?;
        let hash = format!("{}:map:{{{}}}", self.prefix, name);
        let channel = format!("{hash}:notices");
        Ok(MapKeys { hash, channel })
    }

    /// Key of the standalone stream `name`.
    pub fn stream(&self, name: &str) -> Result<String> {
        validate_name("stream", name)?;
        Ok(format!("{}:stream:{{{}}}", self.prefix, name))
    }

    /// A key belonging to pool `pool`; `part` is a fixed suffix chosen by the pool code.
    pub fn pool(&self, pool: &str, part: &str) -> Result<String> {
        validate_name("pool", pool)?;
        Ok(format!("{}:pool:{{{}}}:{}", self.prefix, pool, part))
    }

    /// Keys of a map that belongs to pool `pool` (same hash tag as the pool).
    pub fn pool_map(&self, pool: &str, part: &str) -> Result<MapKeys> {
        let hash = self.pool(pool, &format!("map:{part}"))?;
        let channel = format!("{hash}:notices");
        Ok(MapKeys { hash, channel })
    }

    /// The names of the maps, streams or pools that exist in this keyspace, sorted, the
    /// first `limit` of them. A stream or map exists once written to (and until deleted
    /// or expired); a pool once a worker joined or a job was dispatched. Not a snapshot
    /// and not cheap: see [`KeyOps::keys_matching`](crate::backend::KeyOps::keys_matching),
    /// which this calls (pools: twice).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> pulse::Result<()> {
    /// use std::sync::Arc;
    /// use pulse::{keys::{Family, Keyspace}, streaming::Stream, Backend};
    ///
    /// let backend: Arc<dyn Backend> = Arc::new(pulse_memory::MemoryBackend::new());
    /// for name in ["b", "a"] {
    ///     let stream = Stream::new(backend.clone(), name, Default::default())?;
    ///     stream.add("hello", "payload").await?;
    /// }
    /// let ks = Keyspace::default();
    /// assert_eq!(ks.list(backend.as_ref(), Family::Streams, 10).await?, ["a", "b"]);
    /// assert!(ks.list(backend.as_ref(), Family::Maps, 10).await?.is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// Errors: those of the backend call.
    pub async fn list(
        &self,
        backend: &dyn crate::Backend,
        family: Family,
        limit: usize,
    ) -> Result<Vec<String>> {
        let (word, suffixes): (&str, &[&str]) = match family {
            Family::Maps => ("map", &["}"]),
            Family::Streams => ("stream", &["}"]),
            Family::Pools => ("pool", &["}:map:workers", "}:map:jobs"]),
        };
        let prefix = format!("{}:{word}:{{", self.prefix);
        let mut names = std::collections::BTreeSet::new();
        for suffix in suffixes {
            // Keys of other things can match too (a dedup key ending in `}`); they are
            // dropped here, so ask again for more until `limit` names or no more keys.
            let mut want = limit;
            loop {
                let keys = backend.keys_matching(&prefix, suffix, want).await?;
                let full = keys.len() == want;
                let found: Vec<&str> = keys
                    .iter()
                    .map(|k| &k[prefix.len()..k.len() - suffix.len()])
                    .filter(|n| !n.contains(['{', '}']))
                    .collect();
                if found.len() >= limit || !full {
                    names.extend(found.into_iter().take(limit).map(str::to_owned));
                    break;
                }
                want = want.saturating_mul(2);
            }
        }
        Ok(names.into_iter().take(limit).collect())
    }
}

/// What [`Keyspace::list`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Standalone maps ([`Map`](crate::rmap::Map)).
    Maps,
    /// Standalone streams ([`Stream`](crate::streaming::Stream)).
    Streams,
    /// Worker pools ([`Node`](crate::pool::Node)).
    Pools,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rules() {
        for bad in [
            "", "a b", "a*", "a?", "a[", "a]", "a{", "a}", "a\0", "tab\t", "nl\n",
        ] {
            assert!(
                matches!(
                    validate_name("map", bad),
                    Err(Error::InvalidName { what: "map", .. })
                ),
                "{bad:?} should be rejected"
            );
        }
        assert!(validate_name("map", &"x".repeat(512)).is_ok());
        assert!(validate_name("map", &"x".repeat(513)).is_err());
        assert!(validate_name("map", "ok:name-1_ü").is_ok());
    }

    #[test]
    fn map_keys_reject_reserved_and_empty() {
        assert!(matches!(
            validate_map_key(""),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            validate_map_key("=rev"),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            validate_map_key("foo=2"),
            Err(Error::InvalidKey { .. })
        ));
        assert!(validate_map_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(validate_map_key("foo").is_ok());
    }

    #[test]
    fn keys_share_a_hash_tag_per_map_and_per_pool() {
        let ks = Keyspace::default();
        let m = ks.map("orders").unwrap();
        assert_eq!(m.hash, "pulse:map:{orders}");
        assert_eq!(m.channel, "pulse:map:{orders}:notices");
        let jobs = ks.pool_map("p1", "jobs").unwrap();
        let stream = ks.pool("p1", "stream").unwrap();
        assert!(jobs.hash.contains("{p1}") && stream.contains("{p1}"));
        assert!(Keyspace::new("bad{prefix}").is_err());
        assert!(ks.map("a}b").is_err());
    }

    #[test]
    fn hash_slots_follow_the_cluster_rules() {
        assert_eq!(hash_slot("123456789"), 12739); // the spec's test vector
        assert_eq!(
            hash_slot("{user1000}.following"),
            hash_slot("{user1000}.followers")
        );
        assert_eq!(hash_slot("foo{}{bar}"), hash_slot("foo{}{bar}")); // empty tag: whole key
        assert_ne!(hash_slot("foo{}{bar}"), hash_slot("bar"));
        assert_eq!(hash_slot("foo{{bar}}zap"), hash_slot("{bar"));
        assert_eq!(hash_slot("foo{bar}{zap}"), hash_slot("bar"));
        assert_eq!(hash_slot("no tag"), crc16(b"no tag") % CLUSTER_SLOTS);
    }

    /// Everything one operation touches is in one slot: a map's hash and channel; a
    /// stream and its sinks' liveness and reclaim keys (`Stream::sub_key` appends after the
    /// key, so after its tag); a pool's maps, their channels, worker liveness keys and
    /// ticker leases. A pool node's inbox is a stream of its own, used alone.
    #[test]
    fn every_key_of_one_thing_is_in_one_slot() {
        for ks in [Keyspace::default(), Keyspace::new("app-1:eu").unwrap()] {
            for name in ["orders", "a", "x:y:z", "ü-1", "with.dots", &"n".repeat(512)] {
                let map = ks.map(name).unwrap();
                assert_eq!(hash_slot(&map.hash), hash_slot(&map.channel), "{name}");
                let stream = ks.stream(name).unwrap();
                for part in [
                    "sink:billing:alive:01J0000000000000000000000",
                    "sink:billing:reclaimer",
                ] {
                    assert_eq!(hash_slot(&stream), hash_slot(&format!("{stream}:{part}")));
                }
                let pool = hash_slot(&ks.pool(name, "x").unwrap());
                for part in [
                    "jobs",
                    "owners",
                    "workers",
                    "control",
                    "tickers",
                    "schedule:s",
                ] {
                    let m = ks.pool_map(name, part).unwrap();
                    assert_eq!(hash_slot(&m.hash), pool, "{name} {part}");
                    assert_eq!(hash_slot(&m.channel), pool, "{name} {part}");
                }
                for part in ["alive:w1#3", "tick:t1:lease"] {
                    assert_eq!(
                        hash_slot(&ks.pool(name, part).unwrap()),
                        pool,
                        "{name} {part}"
                    );
                }
                // The tag is the name itself, whatever the prefix.
                assert_eq!(hash_slot(&map.hash), hash_slot(name));
            }
        }
    }

    /// Different maps, streams and pools spread over the slots (so over the masters).
    #[test]
    fn different_things_spread_over_slots() {
        let ks = Keyspace::default();
        let slots: std::collections::HashSet<u16> = (0..1000)
            .map(|i| hash_slot(&ks.stream(&format!("stream-{i}")).unwrap()))
            .collect();
        assert!(
            slots.len() > 950,
            "{} distinct slots of 1000 streams",
            slots.len()
        );
        // A 3-master cluster splits the slots in thirds: each third gets its share.
        let mut thirds = [0usize; 3];
        for i in 0..999 {
            let slot = hash_slot(&ks.map(&format!("map-{i}")).unwrap().hash);
            thirds[usize::from(slot) * 3 / usize::from(CLUSTER_SLOTS)] += 1;
        }
        assert!(thirds.iter().all(|&n| n > 250), "{thirds:?}");
    }
}
