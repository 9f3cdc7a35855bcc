//! Options of a replicated map.

use std::time::Duration;

use crate::{backend::Ttl, keys::Keyspace};

/// How a map is joined. Defaults are documented on each field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MapOptions {
    /// Where the map's keys live. Default: prefix `pulse`.
    pub keyspace: Keyspace,
    /// Expiry of the whole map, applied inside every write. Default `None` (never expires).
    /// With [`Ttl::Absolute`] the window starts at the first write (or the first write after
    /// a reset); with [`Ttl::Sliding`] every write restarts it.
    pub ttl: Option<Ttl>,
    /// How often the replica compares its revision with the backend's, to notice an expired
    /// or re-created map, or missed notices, without waiting for the next write.
    /// Default 5 s.
    pub check_interval: Duration,
    /// Events queued per subscriber before they are collapsed into one. Default 1024.
    pub event_buffer: usize,
    /// Largest value accepted by writes, in bytes. Default 16 MiB.
    pub max_value_size: usize,
    /// First delay before retrying a failed resync (doubling up to 5 s). Default 100 ms.
    pub resync_delay: Duration,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            keyspace: Keyspace::default(),
            ttl: None,
            check_interval: Duration::from_secs(5),
            event_buffer: 1024,
            max_value_size: 16 * 1024 * 1024,
            resync_delay: Duration::from_millis(100),
        }
    }
}

impl MapOptions {
    /// Sets [`MapOptions::keyspace`].
    pub fn with_keyspace(mut self, keyspace: Keyspace) -> Self {
        self.keyspace = keyspace;
        self
    }
    /// Sets [`MapOptions::ttl`].
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Sets [`MapOptions::check_interval`] (at least 1 ms).
    pub fn with_check_interval(mut self, d: Duration) -> Self {
        self.check_interval = d.max(Duration::from_millis(1));
        self
    }
    /// Sets [`MapOptions::event_buffer`] (at least 1).
    pub fn with_event_buffer(mut self, n: usize) -> Self {
        self.event_buffer = n.max(1);
        self
    }
    /// Sets [`MapOptions::max_value_size`].
    pub fn with_max_value_size(mut self, n: usize) -> Self {
        self.max_value_size = n;
        self
    }
    /// Sets [`MapOptions::resync_delay`].
    pub fn with_resync_delay(mut self, d: Duration) -> Self {
        self.resync_delay = d.max(Duration::from_millis(1));
        self
    }
}
