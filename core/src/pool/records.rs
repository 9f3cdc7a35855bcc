//! What the pool stores and sends, encoded with the versioned codec.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A job's durable record, in the `jobs` map under its key. Its existence *is* the job.
///
/// A record without a trace parent is written in the layout before trace parents
/// ([`JobRecordV2`]), byte for byte: only traced dispatches write the new layout, which
/// nodes of earlier releases cannot read (upgrade every node before tracing dispatches).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub(crate) payload: Bytes,
    pub(crate) created_ms: u64,
    /// The dispatch that admitted the job.
    pub(crate) dispatch: Option<Dispatch>,
    /// The W3C `traceparent` of the dispatching span (feature `opentelemetry`).
    pub(crate) trace_parent: Option<String>,
}

/// The record layout before trace parents, still read and still written for untraced jobs.
#[derive(Serialize, Deserialize)]
struct JobRecordV2 {
    payload: Bytes,
    created_ms: u64,
    dispatch: Option<Dispatch>,
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
    /// Encodes the record: in the layout before trace parents when it has none.
    pub(crate) fn encode(&self) -> crate::Result<Vec<u8>> {
        match self.trace_parent {
            Some(_) => crate::codec::encode(self),
            None => crate::codec::encode(&JobRecordV2 {
                payload: self.payload.clone(),
                created_ms: self.created_ms,
                dispatch: self.dispatch.clone(),
            }),
        }
    }

    /// Decodes a stored job record, of this layout or one before it.
    pub(crate) fn decode(bytes: &[u8]) -> crate::Result<JobRecord> {
        let e = match crate::codec::decode::<JobRecord>("job record", bytes) {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        if let Ok(v2) = crate::codec::decode::<JobRecordV2>("job record", bytes) {
            return Ok(JobRecord {
                payload: v2.payload,
                created_ms: v2.created_ms,
                dispatch: v2.dispatch,
                trace_parent: None,
            });
        }
        match crate::codec::decode::<JobRecordV1>("job record", bytes) {
            Ok(old) => Ok(JobRecord {
                payload: old.payload,
                created_ms: old.created_ms,
                dispatch: old.dispatch.map(|(node, waiter)| Dispatch {
                    node,
                    waiter,
                    id: String::new(),
                }),
                trace_parent: None,
            }),
            Err(_) => Err(e),
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
///
/// A worker of the default group is written in the layout before groups
/// ([`WorkerRecordV1`]), byte for byte, so nodes of earlier releases still read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WorkerRecord {
    pub(crate) node: String,
    pub(crate) created_ms: u64,
    /// The worker's current ownership generation (see `LocalWorker::tag`).
    pub(crate) generation: u64,
    /// Its worker group (module `groups`).
    pub(crate) group: String,
}

/// The worker record layout before groups, still read and still written for workers of the
/// default group.
#[derive(Serialize, Deserialize)]
struct WorkerRecordV1 {
    node: String,
    created_ms: u64,
    generation: u64,
}

impl WorkerRecord {
    /// Encodes the record: in the layout before groups when in the default group.
    pub(crate) fn encode(&self) -> crate::Result<Vec<u8>> {
        if self.group == super::groups::DEFAULT_GROUP {
            return crate::codec::encode(&WorkerRecordV1 {
                node: self.node.clone(),
                created_ms: self.created_ms,
                generation: self.generation,
            });
        }
        crate::codec::encode(self)
    }

    /// Decodes a stored worker record, of this layout or the one before.
    pub(crate) fn decode(bytes: &[u8]) -> crate::Result<WorkerRecord> {
        let e = match crate::codec::decode::<WorkerRecord>("worker record", bytes) {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        match crate::codec::decode::<WorkerRecordV1>("worker record", bytes) {
            Ok(v1) => Ok(WorkerRecord {
                node: v1.node,
                created_ms: v1.created_ms,
                generation: v1.generation,
                group: super::groups::DEFAULT_GROUP.to_owned(),
            }),
            Err(_) => Err(e),
        }
    }
}

/// The value of an owner record: the owner's tag `<worker>#<generation>`, then (since
/// worker groups) when its run started (ms since the epoch) and how often the job moved
/// before it — `<tag> <since_ms> <moves>`; or, for a job released for a move,
/// `~released <released_ms> <moves>`. Records of earlier releases (the bare tag, the bare
/// `~released`) still parse, with no time and no moves. Nodes of earlier releases cannot
/// read the new layout: upgrade every node of a pool together.
pub(crate) fn owner_value(tag: &str, since_ms: u64, moves: u32) -> String {
    format!("{tag} {since_ms} {moves}")
}

/// The owner value of a job released for a move now, keeping its count of moves.
pub(crate) fn released_value(moves: u32) -> String {
    format!("{RELEASED} {} {moves}", now_ms())
}

/// The tag part of an owner value (`~released` for a released job).
pub(crate) fn owner_tag(value: &str) -> &str {
    value.split_once(' ').map_or(value, |(tag, _)| tag)
}

/// True for the value of a job released for a move.
pub(crate) fn is_released(value: &str) -> bool {
    owner_tag(value) == RELEASED
}

/// When the run an owner value names started (or the job was released), if it says.
pub(crate) fn owner_since_ms(value: &str) -> Option<u64> {
    let mut parts = value.split(' ');
    let _tag = parts.next();
    let since = parts.next()?;
    parts.next()?; // the moves
    since.parse().ok()
}

/// How often the job moved before the run an owner value names (0 when it does not say).
pub(crate) fn owner_moves(value: &str) -> u32 {
    value
        .rsplit_once(' ')
        .and_then(|(_, m)| m.parse().ok())
        .unwrap_or(0)
}

/// The worker ID in an owner value or tag (`<worker>#<generation>`).
pub(crate) fn worker_of(value: &str) -> &str {
    let tag = owner_tag(value);
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
    /// A job call for the worker running `key` ([`super::Node::call`]); the answer goes
    /// to node `from`'s inbox for its `waiter`.
    Call {
        key: String,
        payload: Bytes,
        from: String,
        waiter: u64,
        deadline_ms: u64,
        trace_parent: Option<String>,
    },
    /// The answer to a [`InboxMessage::Call`].
    CallAnswer {
        waiter: u64,
        answer: super::call::CallAnswer,
    },
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Owner-record value of a job released for a move, in the layout before move counts
/// (the next start is a requeue).
pub(crate) const RELEASED: &str = "~released";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_values_of_both_layouts_parse() {
        let v = owner_value("01W#3", 1_700_000_000_000, 4);
        assert_eq!(owner_tag(&v), "01W#3");
        assert_eq!(worker_of(&v), "01W");
        assert_eq!(owner_since_ms(&v), Some(1_700_000_000_000));
        assert_eq!(owner_moves(&v), 4);
        assert!(!is_released(&v));
        for old in ["01W#3", "01W"] {
            assert_eq!(owner_tag(old), old);
            assert_eq!(worker_of(old), "01W");
            assert_eq!((owner_since_ms(old), owner_moves(old)), (None, 0));
        }
        let r = released_value(5);
        assert!(is_released(&r) && is_released(RELEASED));
        assert!(owner_since_ms(&r).is_some_and(|ms| ms > 0));
        assert_eq!(owner_moves(&r), 5);
        assert_eq!(owner_since_ms(RELEASED), None);
        assert_eq!(owner_moves(RELEASED), 0);
    }

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
        let untraced = new.encode().unwrap();
        let back = JobRecord::decode(&untraced).unwrap();
        assert_eq!(back, new);
        assert_eq!(back.dispatch_id(), Some("order-17"));
        // Untraced records keep the layout before trace parents, byte for byte.
        let v2 = JobRecordV2 {
            payload: new.payload.clone(),
            created_ms: new.created_ms,
            dispatch: new.dispatch.clone(),
        };
        assert_eq!(untraced, crate::codec::encode(&v2).unwrap());
        let traced = JobRecord {
            trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..new.clone()
        };
        assert_ne!(traced.encode().unwrap(), untraced);
        assert_eq!(
            JobRecord::decode(&traced.encode().unwrap()).unwrap(),
            traced
        );
        assert!(JobRecord::decode(b"\x01garbage").is_err());
    }
}
