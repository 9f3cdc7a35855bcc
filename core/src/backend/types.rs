//! Plain data types exchanged with backends: stream entry IDs, entries, options, outcomes.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use bytes::Bytes;

use crate::error::{Error, Result};

/// Expiry of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// Expire this long after the key first got an expiry; later writes do not extend it
    /// (Redis `PEXPIRE … NX`). A key re-created after it expired starts a new window.
    Absolute(Duration),
    /// Expire this long after the latest write; every write resets the timer.
    Sliding(Duration),
}

impl Ttl {
    /// The duration, whatever the mode.
    pub fn duration(&self) -> Duration {
        match self {
            Ttl::Absolute(d) | Ttl::Sliding(d) => *d,
        }
    }

    /// Milliseconds, at least 1 (a zero TTL would delete the key at once).
    pub fn millis(&self) -> u64 {
        (self.duration().as_millis() as u64).max(1)
    }
}

/// What a key's expiry currently is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyExpiry {
    /// The key does not exist.
    Missing,
    /// The key exists and never expires.
    Persistent,
    /// The key expires after this much time.
    In(Duration),
}

/// The ID of a stream entry: the store's wall-clock milliseconds when it was added and a
/// sequence number within that millisecond, ordered (see the backend contract in
/// [`crate::backend`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Milliseconds part (the server's clock when the entry was added).
    pub ms: u64,
    /// Sequence number within the millisecond.
    pub seq: u64,
}

impl EntryId {
    /// `0-0`, smaller than every real entry ID.
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };
    /// The largest possible ID.
    pub const MAX: EntryId = EntryId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// Builds an ID.
    pub const fn new(ms: u64, seq: u64) -> Self {
        EntryId { ms, seq }
    }

    /// The smallest ID greater than this one, if any.
    pub fn next(self) -> Option<EntryId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(EntryId { ms: self.ms, seq }),
            None => self.ms.checked_add(1).map(|ms| EntryId { ms, seq: 0 }),
        }
    }

    /// The largest ID smaller than this one, if any. Useful for inclusive starts:
    /// reading *after* `id.prev()` includes `id`.
    pub fn prev(self) -> Option<EntryId> {
        match self.seq.checked_sub(1) {
            Some(seq) => Some(EntryId { ms: self.ms, seq }),
            None => self
                .ms
                .checked_sub(1)
                .map(|ms| EntryId { ms, seq: u64::MAX }),
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = Error;

    /// Parses `ms-seq` or `ms` (sequence 0).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::malformed("stream entry id", format!("{s:?}"));
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(bad());
        }
        Ok(EntryId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// One stream entry: its ID and its fields in insertion order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry's ID.
    pub id: EntryId,
    /// Field name / value pairs. Names are text; values are bytes. Shared: cloning an entry
    /// (a backend handing one stored entry to many readers) copies no field.
    pub fields: Arc<[(String, Bytes)]>,
}

impl StreamEntry {
    /// An entry with these fields.
    pub fn new(id: EntryId, fields: Vec<(String, Bytes)>) -> StreamEntry {
        StreamEntry {
            id,
            fields: fields.into(),
        }
    }

    /// The value of the first field called `name`.
    pub fn field(&self, name: &str) -> Option<&Bytes> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Entries read from one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamBatch {
    /// The stream key.
    pub stream: String,
    /// Entries in ID order.
    pub entries: Vec<StreamEntry>,
}

/// Options of an append.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AddOptions {
    /// Trim the stream to about this many entries, dropping the oldest (approximate, like
    /// `MAXLEN ~`): at least the newest `max_len` entries are always kept, and at most a
    /// bounded number more — Redis trims whole nodes of 100 entries; the suite allows up to
    /// `max_len + 290`. `None`: never trim. Default `None`.
    pub max_len: Option<u64>,
    /// Create the stream if it does not exist. Default `true`. When `false` and the stream is
    /// missing, nothing is written and the append returns `None`.
    pub create: bool,
    /// Expiry applied to the stream key in the same atomic step as the append. Default `None`.
    pub ttl: Option<Ttl>,
    /// Append with this ID instead of a new one (restoring a dump): it must be greater than
    /// the stream's last ID (`InvalidArgument` otherwise, nothing appended). For single
    /// appends ([`StreamOps::stream_add`](super::StreamOps::stream_add)); a batch with an ID
    /// is `InvalidArgument`. Default `None`: the store makes the ID.
    pub id: Option<EntryId>,
}

impl Default for AddOptions {
    fn default() -> Self {
        AddOptions {
            max_len: None,
            create: true,
            ttl: None,
            id: None,
        }
    }
}

impl AddOptions {
    /// Sets [`AddOptions::max_len`].
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = Some(max_len);
        self
    }
    /// Sets [`AddOptions::create`].
    pub fn with_create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
    /// Sets [`AddOptions::ttl`].
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Sets [`AddOptions::id`].
    pub fn with_id(mut self, id: EntryId) -> Self {
        self.id = Some(id);
        self
    }
}

/// Length, first entry and last generated ID of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// Number of entries.
    pub length: u64,
    /// The ID of the oldest entry still in the stream; `None` when it is empty.
    pub first_id: Option<EntryId>,
    /// The last ID ever generated in the stream (even if that entry was since deleted);
    /// `0-0` for a stream that never had an entry.
    pub last_id: EntryId,
}

/// Where a new consumer group starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupStart {
    /// After the stream's last entry at creation time (`$`).
    Newest,
    /// After this ID (`0-0` = from the oldest entry).
    After(EntryId),
}

/// Result of claiming idle pending entries (`XAUTOCLAIM`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoClaim {
    /// Where to continue scanning; `0-0` when the scan is complete.
    pub next: EntryId,
    /// Claimed entries that still exist, now owned by the claiming consumer.
    pub entries: Vec<StreamEntry>,
    /// Pending IDs whose entries no longer exist in the stream (trimmed or deleted); they
    /// were removed from the pending list and are lost.
    pub deleted: Vec<EntryId>,
}

/// Summary of a group's pending entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingSummary {
    /// Number of pending (delivered, unacknowledged) entries.
    pub count: u64,
    /// Smallest pending ID.
    pub min: Option<EntryId>,
    /// Largest pending ID.
    pub max: Option<EntryId>,
    /// Pending count per consumer (consumers with none are omitted), sorted by name.
    pub consumers: Vec<(String, u64)>,
}

/// One consumer group of a stream, as [`GroupOps::group_list`](super::GroupOps::group_list)
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// Number of consumers.
    pub consumers: u64,
    /// Entries delivered to it and not acknowledged.
    pub pending: u64,
    /// The last entry delivered to the group (its cursor).
    pub last_delivered: EntryId,
    /// Entries after the cursor that the group has not been given yet; `None` when the
    /// store cannot tell cheaply (Redis after entries in the middle of the stream were
    /// deleted).
    pub lag: Option<u64>,
}

/// One pending entry of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry ID.
    pub id: EntryId,
    /// The consumer it was last delivered to.
    pub consumer: String,
    /// Time since it was last delivered.
    pub idle: Duration,
    /// How many times it was delivered.
    pub deliveries: u64,
}

/// One consumer of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Consumer name.
    pub name: String,
    /// Its number of pending entries.
    pub pending: u64,
    /// Time since it last read or claimed.
    pub idle: Duration,
}

/// The identity of a map generation and its revision within it.
///
/// `epoch == 0` means the map's hash does not exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// Generation of the map's hash (see [`crate::codec::MapNotice`]).
    pub epoch: u64,
    /// Revision within the generation.
    pub rev: u64,
}

/// One step of [`HashOps::hash_scan`](super::HashOps::hash_scan).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HashChunk {
    /// The cursor to pass to the next step; `None` when the iteration is complete.
    pub next: Option<String>,
    /// The fields this step returned, in no particular order.
    pub fields: Vec<(String, Bytes)>,
}
