//! What the pool stores and sends, encoded with the versioned codec.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A job's durable record, in the `jobs` map under its key. Its existence *is* the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub(crate) payload: Bytes,
    pub(crate) created_ms: u64,
    /// Who waits for the first start's outcome: (node, dispatch id).
    pub(crate) dispatch: Option<(String, u64)>,
}

/// A worker's record, in the `workers` map under its ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WorkerRecord {
    pub(crate) node: String,
    pub(crate) created_ms: u64,
    /// The worker's current ownership generation (see `LocalWorker::tag`).
    pub(crate) generation: u64,
}

/// The worker ID part of an owner tag (`<worker>#<generation>`).
pub(crate) fn worker_of(tag: &str) -> &str {
    tag.rsplit_once('#').map_or(tag, |(id, _)| id)
}

/// Messages to a node's inbox stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum InboxMessage {
    /// The outcome of a dispatched job's first start.
    Started {
        key: String,
        dispatch_id: u64,
        error: Option<String>,
    },
    /// A notification for the owner of `key`; `hops` counts forwards.
    Notify {
        key: String,
        payload: Bytes,
        hops: u8,
    },
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
