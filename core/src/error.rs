//! The one public error type of Pulse.
//!
//! Every fallible call in the library and in every backend returns [`Error`]. Variants carry
//! the context a caller needs to act (which name, which key, which stream) and, where there
//! is one, the underlying cause as `source`. Expected outcomes of conditional operations
//! (a failed test-and-set, a claim lost to another caller) are *return values*, never errors.
//!
//! Backends map their own failures into these variants; the mapping is part of each backend
//! method's contract (see [`crate::backend`]) and is checked by the conformance suite.

use std::error::Error as StdError;

/// A boxed error used as the `source` of wrapped failures.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Shorthand for `std::result::Result<T, pulse::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Pulse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name (map, stream, pool, key prefix, …) failed validation. Nothing was sent anywhere.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// What kind of name it was ("map", "stream", "key prefix", …).
        what: &'static str,
        /// The rejected name (truncated to 64 bytes for display).
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A key inside a map (or a job key) failed validation. Nothing was sent anywhere.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key (truncated to 64 bytes for display).
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// An argument other than a name or key is out of range (e.g. a zero count).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The backend could not be configured (bad URL, unsupported scheme, bad option).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A store that one process owns (an embedded database file) is open in another
    /// process; nothing was read or written.
    #[error("{path} is in use by another process")]
    InUse {
        /// The file (or other resource) that is taken.
        path: String,
    },

    /// The handle (map, stream reader, sink, node, backend) was closed; the call did nothing.
    #[error("{what} is closed")]
    Closed {
        /// What was closed, e.g. `map "orders"`.
        what: String,
    },

    /// The backend could not be reached or the connection was lost during the call.
    /// The operation may or may not have been applied.
    #[error("connection to the backend failed: {message}")]
    Connection {
        /// Human-readable description (never contains credentials).
        message: String,
        /// Underlying cause, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// A key exists but holds a different data type than the operation needs
    /// (for instance a foreign writer put a string where a stream was expected).
    #[error("key {key:?} holds a value of the wrong type")]
    WrongType {
        /// The key.
        key: String,
    },

    /// A consumer-group operation addressed a stream or group that does not exist.
    #[error("consumer group {group:?} on stream {stream:?} does not exist")]
    NoGroup {
        /// The stream key.
        stream: String,
        /// The group name.
        group: String,
    },

    /// A stored value cannot be used by the operation (e.g. increment of a non-integer,
    /// list edit of a value that is not a list, integer overflow). The value was left as is.
    #[error("value of {key:?} cannot be used: {reason}")]
    InvalidValue {
        /// The map key (field) holding the value.
        key: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// Data read from the backend or a peer could not be decoded (foreign writer, corruption,
    /// incompatible version).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why decoding failed.
        reason: String,
    },

    /// A payload is larger than the configured limit. Nothing was written.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Size of the rejected payload.
        size: usize,
        /// The limit in force.
        limit: usize,
    },

    /// A job with this key already exists (running, or dispatched and not yet started).
    #[error("job {key:?} already exists")]
    JobExists {
        /// The job key.
        key: String,
        /// The ID of the dispatch that admitted the existing job, when known (see
        /// [`Error::is_admitted_by`]).
        dispatch_id: Option<String>,
    },

    /// The worker's `start` failed for a newly dispatched job; the job does not exist.
    #[error("job {key:?} failed to start: {message}")]
    JobFailed {
        /// The job key.
        key: String,
        /// The handler's error, as text.
        message: String,
    },

    /// A bounded wait ran out. What it waited for may still happen later.
    #[error("timed out: {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
    },

    /// A responder answered a request ([`Stream::request`](crate::streaming::Stream::request))
    /// with an error ([`Sink::reply_error`](crate::streaming::Sink::reply_error)).
    #[error("the responder answered {code}: {message}")]
    Remote {
        /// The responder's error code (application-defined, e.g. `not_found`).
        code: String,
        /// The responder's message.
        message: String,
    },

    /// A wait was given up early because what it waited on stopped showing signs of life
    /// (a responder that accepted a request stopped sending heartbeats: it died or hangs).
    /// The work may or may not have been done.
    #[error("aborted: {what}")]
    Aborted {
        /// What was given up.
        what: String,
    },

    /// A job call ([`Node::call`](crate::pool::Node::call)) found no worker running the job:
    /// it was never dispatched, was stopped, or is between two owners (moving, or
    /// waiting for a worker) past the call's deadline. The call reached no handler.
    #[error("job {key:?} has no running worker")]
    NotRunning {
        /// The job key.
        key: String,
    },

    /// The pool is shutting down (or was shut down less than its shutdown TTL ago).
    #[error("pool {pool:?} is shutting down")]
    ShuttingDown {
        /// The pool name.
        pool: String,
    },

    /// The store answered with a refusal: the operation was *not* applied, and the same call
    /// may succeed later without anyone changing anything (the store frees memory, finishes
    /// loading, gets a primary back). A refused connection attempt is reported the same way
    /// (`op` is `"connect"`).
    #[error("the backend refused {op} ({reason}): {message}")]
    Refused {
        /// The operation that was refused.
        op: &'static str,
        /// Why, as the store classified it.
        reason: Refusal,
        /// The store's own message (never contains credentials).
        message: String,
    },

    /// The store does not accept our credentials, wants credentials we did not give, or
    /// does not let them run this operation (an ACL). Nothing was applied, and trying again
    /// cannot help until someone changes the credentials or the permissions: never
    /// retryable. A failed login is reported with `op` `"connect"`.
    #[error("access denied for {op} ({reason}): {message}")]
    Denied {
        /// The operation that was denied.
        op: &'static str,
        /// Why, as the store classified it.
        reason: Denial,
        /// The store's own message (never contains credentials).
        message: String,
    },

    /// The backend answered with an error not covered by another variant.
    #[error("backend error in {op}: {message}")]
    Backend {
        /// The operation that failed.
        op: &'static str,
        /// The backend's message.
        message: String,
        /// Underlying cause, if any.
        #[source]
        source: Option<BoxError>,
    },
}

/// Why a store refused an operation ([`Error::Refused`]). In every case nothing was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The store is at its memory limit and does not evict (Redis `OOM`).
    OutOfMemory,
    /// The store accepts no more connections (Redis `maxclients`).
    TooManyClients,
    /// The store accepts no writes at the moment: a replica (Redis `READONLY`), a primary
    /// without enough replicas in sync (`NOREPLICAS`) or failing to persist (`MISCONF`).
    ReadOnly,
    /// The store is busy: running a long script (Redis `BUSY`), loading its data set
    /// (`LOADING`), or a replica that lost its primary (`MASTERDOWN`).
    Busy,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::OutOfMemory => "out of memory",
            Refusal::TooManyClients => "too many clients",
            Refusal::ReadOnly => "read-only",
            Refusal::Busy => "busy",
        })
    }
}

/// Why a store denied access ([`Error::Denied`]). In every case nothing was applied and
/// only a change of credentials or permissions helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Denial {
    /// The user name or password is wrong (Redis `WRONGPASS`, a failed `AUTH`).
    WrongCredentials,
    /// The store requires credentials and none were given (Redis `NOAUTH`).
    NoCredentials,
    /// The credentials may not run this command or touch this key or channel (Redis ACL,
    /// `NOPERM`).
    NoPermission,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Denial::WrongCredentials => "wrong credentials",
            Denial::NoCredentials => "credentials required",
            Denial::NoPermission => "no permission",
        })
    }
}

impl Error {
    /// Builds [`Error::InvalidName`], truncating the name for display.
    pub fn invalid_name(what: &'static str, name: &str, reason: &'static str) -> Self {
        Error::InvalidName {
            what,
            name: truncate(name),
            reason,
        }
    }

    /// Builds [`Error::InvalidKey`], truncating the key for display.
    pub fn invalid_key(key: &str, reason: &'static str) -> Self {
        Error::InvalidKey {
            key: truncate(key),
            reason,
        }
    }

    /// Builds [`Error::Malformed`].
    pub fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            reason: reason.into(),
        }
    }

    /// Builds [`Error::Connection`] without a source.
    pub fn connection(message: impl Into<String>) -> Self {
        Error::Connection {
            message: message.into(),
            source: None,
        }
    }

    /// Builds [`Error::Backend`] without a source.
    pub fn backend(op: &'static str, message: impl Into<String>) -> Self {
        Error::Backend {
            op,
            message: message.into(),
            source: None,
        }
    }

    /// The same error for another waiter of one shared call (a batch of writes, a batch
    /// of acks): every variant and field is kept, so a `Connection` stays a `Connection`;
    /// only the `source` chain is flattened into the message. Backends use it to answer
    /// every caller of one merged command.
    pub fn for_each_waiter(&self) -> Error {
        match self {
            Error::InvalidName { what, name, reason } => Error::InvalidName {
                what,
                name: name.clone(),
                reason,
            },
            Error::InvalidKey { key, reason } => Error::InvalidKey {
                key: key.clone(),
                reason,
            },
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Config(m) => Error::Config(m.clone()),
            Error::Closed { what } => Error::Closed { what: what.clone() },
            Error::Connection { message, source } => Error::Connection {
                message: with_source(message, source),
                source: None,
            },
            Error::WrongType { key } => Error::WrongType { key: key.clone() },
            Error::NoGroup { stream, group } => Error::NoGroup {
                stream: stream.clone(),
                group: group.clone(),
            },
            Error::InvalidValue { key, reason } => Error::InvalidValue {
                key: key.clone(),
                reason: reason.clone(),
            },
            Error::Malformed { what, reason } => Error::malformed(what, reason.clone()),
            Error::PayloadTooLarge { size, limit } => Error::PayloadTooLarge {
                size: *size,
                limit: *limit,
            },
            Error::JobExists { key, dispatch_id } => Error::JobExists {
                key: key.clone(),
                dispatch_id: dispatch_id.clone(),
            },
            Error::JobFailed { key, message } => Error::JobFailed {
                key: key.clone(),
                message: message.clone(),
            },
            Error::Remote { code, message } => Error::Remote {
                code: code.clone(),
                message: message.clone(),
            },
            Error::Aborted { what } => Error::Aborted { what: what.clone() },
            Error::NotRunning { key } => Error::NotRunning { key: key.clone() },
            Error::Timeout { what } => Error::Timeout { what: what.clone() },
            Error::ShuttingDown { pool } => Error::ShuttingDown { pool: pool.clone() },
            Error::InUse { path } => Error::InUse { path: path.clone() },
            Error::Refused {
                op,
                reason,
                message,
            } => Error::Refused {
                op,
                reason: *reason,
                message: message.clone(),
            },
            Error::Denied {
                op,
                reason,
                message,
            } => Error::Denied {
                op,
                reason: *reason,
                message: message.clone(),
            },
            Error::Backend {
                op,
                message,
                source,
            } => Error::Backend {
                op,
                message: with_source(message, source),
                source: None,
            },
        }
    }

    /// True when the failure is about reaching the backend (worth retrying later).
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::Connection { .. })
    }

    /// True when sending the same call again, later, may succeed without anyone changing
    /// anything; what to do about each variant:
    ///
    /// | variant | retryable | why |
    /// |---|---|---|
    /// | [`Connection`](Error::Connection) | yes | the store was unreachable or the reply was lost (the call may have been applied: retry only what is idempotent or protected) |
    /// | [`Timeout`](Error::Timeout) | yes | a wait ran out; the awaited thing may still happen |
    /// | [`Aborted`](Error::Aborted) | yes | what was awaited stopped showing signs of life (a responder died); it may have done the work |
    /// | [`Refused`](Error::Refused) | yes | the store refused for a reason of its own (full, busy, too many clients, read-only while failing over); nothing was applied |
    /// | [`Denied`](Error::Denied) | no | credentials or permissions must change first |
    /// | [`Config`](Error::Config), [`InvalidName`](Error::InvalidName), [`InvalidKey`](Error::InvalidKey), [`InvalidArgument`](Error::InvalidArgument), [`PayloadTooLarge`](Error::PayloadTooLarge) | no | the call itself is wrong |
    /// | [`WrongType`](Error::WrongType), [`InvalidValue`](Error::InvalidValue), [`Malformed`](Error::Malformed), [`NoGroup`](Error::NoGroup) | no | the stored data is not what the call needs |
    /// | [`Closed`](Error::Closed), [`ShuttingDown`](Error::ShuttingDown) | no | the handle or pool is going away |
    /// | [`InUse`](Error::InUse) | no | another process owns the store |
    /// | [`JobExists`](Error::JobExists), [`JobFailed`](Error::JobFailed), [`Remote`](Error::Remote), [`NotRunning`](Error::NotRunning) | no | an answer, not a failure to get one (a job between owners runs again once placed: call again if you know it exists) |
    /// | [`Backend`](Error::Backend) | no | an error nobody classified: look at it |
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Connection { .. }
                | Error::Timeout { .. }
                | Error::Aborted { .. }
                | Error::Refused { .. }
        )
    }

    /// A short, stable name of the variant (`"connection"`, `"timeout"`, `"denied"`, …):
    /// the `error` label of Pulse's metrics and the `error.type` of its spans. Never
    /// holds data from the error itself, so it is safe as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidName { .. } => "invalid_name",
            Error::InvalidKey { .. } => "invalid_key",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Config(_) => "config",
            Error::Closed { .. } => "closed",
            Error::Connection { .. } => "connection",
            Error::WrongType { .. } => "wrong_type",
            Error::NoGroup { .. } => "no_group",
            Error::InvalidValue { .. } => "invalid_value",
            Error::Malformed { .. } => "malformed",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::JobExists { .. } => "job_exists",
            Error::JobFailed { .. } => "job_failed",
            Error::Timeout { .. } => "timeout",
            Error::Remote { .. } => "remote",
            Error::Aborted { .. } => "aborted",
            Error::NotRunning { .. } => "not_running",
            Error::ShuttingDown { .. } => "shutting_down",
            Error::InUse { .. } => "in_use",
            Error::Refused { .. } => "refused",
            Error::Denied { .. } => "denied",
            Error::Backend { .. } => "backend",
        }
    }

    /// True for [`Error::JobExists`] when the existing job was admitted by the dispatch
    /// with ID `dispatch_id`: a retried dispatch whose earlier attempt was applied.
    pub fn is_admitted_by(&self, dispatch_id: &str) -> bool {
        matches!(self, Error::JobExists { dispatch_id: Some(id), .. } if id == dispatch_id)
    }
}

fn with_source(message: &str, source: &Option<BoxError>) -> String {
    match source {
        Some(cause) => format!("{message}: {cause}"),
        None => message.to_owned(),
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant against the table in [`Error::is_retryable`]'s documentation.
    #[test]
    fn retryable_per_variant() {
        let s = || "x".to_owned();
        let cases = [
            (Error::connection("down"), true),
            (Error::Timeout { what: s() }, true),
            (
                Error::Refused {
                    op: "op",
                    reason: Refusal::Busy,
                    message: s(),
                },
                true,
            ),
            (
                Error::Denied {
                    op: "connect",
                    reason: Denial::WrongCredentials,
                    message: s(),
                },
                false,
            ),
            (Error::Config(s()), false),
            (Error::invalid_name("map", "a b", "no spaces"), false),
            (
                Error::InvalidKey {
                    key: s(),
                    reason: "empty",
                },
                false,
            ),
            (Error::InvalidArgument(s()), false),
            (Error::PayloadTooLarge { size: 2, limit: 1 }, false),
            (Error::WrongType { key: s() }, false),
            (
                Error::InvalidValue {
                    key: s(),
                    reason: s(),
                },
                false,
            ),
            (Error::malformed("frame", "short"), false),
            (
                Error::NoGroup {
                    stream: s(),
                    group: s(),
                },
                false,
            ),
            (Error::Closed { what: s() }, false),
            (Error::ShuttingDown { pool: s() }, false),
            (
                Error::JobExists {
                    key: s(),
                    dispatch_id: None,
                },
                false,
            ),
            (
                Error::JobFailed {
                    key: s(),
                    message: s(),
                },
                false,
            ),
            (Error::backend("op", "boom"), false),
            (
                Error::Remote {
                    code: s(),
                    message: s(),
                },
                false,
            ),
            (Error::Aborted { what: s() }, true),
            (Error::NotRunning { key: s() }, false),
        ];
        let mut kinds = std::collections::HashSet::new();
        let count = cases.len();
        for (e, retryable) in cases {
            assert_eq!(e.is_retryable(), retryable, "{e:?}");
            assert_eq!(e.for_each_waiter().is_retryable(), retryable, "{e:?}");
            assert_eq!(e.for_each_waiter().kind(), e.kind(), "{e:?}");
            kinds.insert(e.kind());
        }
        // One case per variant, and one kind per variant.
        assert_eq!(kinds.len(), count);
    }

    #[test]
    fn long_names_are_truncated_on_a_char_boundary() {
        let name = "é".repeat(100);
        let Error::InvalidName { name: shown, .. } = Error::invalid_name("map", &name, "x") else {
            panic!("wrong variant");
        };
        assert!(shown.len() <= 64 + "…".len());
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn connection_errors_are_classified() {
        assert!(Error::connection("down").is_connection());
        assert!(!Error::backend("op", "boom").is_connection());
    }

    #[test]
    fn a_shared_failure_keeps_its_variant_for_each_waiter() {
        let e = Error::Connection {
            message: "reset".into(),
            source: Some("by peer".into()),
        };
        let copy = e.for_each_waiter();
        assert!(copy.is_connection());
        assert!(copy.to_string().contains("reset: by peer"));
        let copy = Error::NoGroup {
            stream: "s".into(),
            group: "g".into(),
        }
        .for_each_waiter();
        assert!(matches!(copy, Error::NoGroup { .. }));
    }

    #[test]
    fn a_refusal_names_its_reason_and_survives_sharing() {
        let e = Error::Refused {
            op: "map_set",
            reason: Refusal::OutOfMemory,
            message: "OOM command not allowed".into(),
        };
        assert_eq!(
            e.to_string(),
            "the backend refused map_set (out of memory): OOM command not allowed"
        );
        assert!(matches!(
            e.for_each_waiter(),
            Error::Refused {
                reason: Refusal::OutOfMemory,
                ..
            }
        ));
        assert!(!e.is_connection());
        assert!(e.is_retryable());
    }

    #[test]
    fn an_existing_job_is_told_apart_by_its_dispatch_id() {
        let exists = |id: Option<&str>| Error::JobExists {
            key: "k".into(),
            dispatch_id: id.map(str::to_owned),
        };
        assert!(exists(Some("mine")).is_admitted_by("mine"));
        assert!(!exists(Some("theirs")).is_admitted_by("mine"));
        assert!(!exists(None).is_admitted_by("mine"));
        assert!(!Error::connection("down").is_admitted_by("mine"));
    }
}
