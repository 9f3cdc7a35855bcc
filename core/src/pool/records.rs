//! What the pool stores and sends, encoded with the versioned codec.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A job's durable record, in the `jobs` map under its key. Its existence *is* the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub(crate) payload: Bytes,
    pub(crate) created_ms: u64,
    /// The dispatch that admitted the job.
    pub(crate) dispatch: Option<Dispatch>,
}

/// Who admitted a job and waits for its first start's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dispatch {
    /// The dispatching node (its inbox gets the outcome).
    pub(crate) node: String,
    /// The waiter on that node.
    pub(crate) waiter: u64,
    /// The dispatch ID: the caller's, or a unique one (see `DispatchOptions::with_id`).
    pub(crate) id: String,
}

/// The record layout before dispatch IDs (a trailing field of the dispatch), still read.
#[derive(Deserialize)]
struct JobRecordV1 {
    payload: Bytes,
    created_ms: u64,
    dispatch: Option<(String, u64)>,
}

impl JobRecord {
    /// Decodes a stored job record, of this layout or the one before it.
    pub(crate) fn decode(bytes: &[u8]) -> crate::Result<JobRecord> {
        match crate::codec::decode::<JobRecord>("job record", bytes) {
            Ok(r) => Ok(r),
            Err(e) => match crate::codec::decode::<JobRecordV1>("job record", bytes) {
                Ok(old) => Ok(JobRecord {
                    payload: old.payload,
                    created_ms: old.created_ms,
                    dispatch: old.dispatch.map(|(node, waiter)| Dispatch {
                        node,
                        waiter,
                        id: String::new(),
                    }),
                }),
                Err(_) => Err(e),
            },
        }
    }

    /// The dispatch ID that admitted the job, if it has one.
    pub(crate) fn dispatch_id(&self) -> Option<&str> {
        self.dispatch
            .as_ref()
            .map(|d| d.id.as_str())
            .filter(|id| !id.is_empty())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_the_previous_layout_still_decode() {
        #[derive(Serialize)]
        struct V1 {
            payload: Bytes,
            created_ms: u64,
            dispatch: Option<(String, u64)>,
        }
        let old = crate::codec::encode(&V1 {
            payload: Bytes::from("p"),
            created_ms: 7,
            dispatch: Some(("node-a".into(), 3)),
        })
        .unwrap();
        let r = JobRecord::decode(&old).unwrap();
        assert_eq!(r.payload, Bytes::from("p"));
        assert_eq!(r.dispatch.as_ref().map(|d| d.waiter), Some(3));
        assert_eq!(r.dispatch_id(), None);
        let new = JobRecord {
            dispatch: Some(Dispatch {
                node: "n".into(),
                waiter: 1,
                id: "order-17".into(),
            }),
            ..r
        };
        let back = JobRecord::decode(&crate::codec::encode(&new).unwrap()).unwrap();
        assert_eq!(back, new);
        assert_eq!(back.dispatch_id(), Some("order-17"));
        assert!(JobRecord::decode(b"\x01garbage").is_err());
    }
}
