//! Mapping of `redis` errors into [`pulse::Error`], by error *code*, never by message text.
//!
//! | Redis failure | Pulse error |
//! |---|---|
//! | I/O, refused, dropped, timed out, authentication | [`Error::Connection`] |
//! | `WRONGTYPE` | [`Error::WrongType`] |
//! | `NOGROUP`, `UNBLOCKED` (stream deleted under a blocked group read) | [`Error::NoGroup`] |
//! | `PULSE_INVALID` (raised by our Lua scripts) | [`Error::InvalidValue`] |
//! | anything else | [`Error::Backend`] |

use pulse::Error;
use redis::{ErrorKind, RedisError};

/// True when the error means the connection is unusable and should be replaced.
pub(crate) fn is_connection_failure(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(e.kind(), ErrorKind::AuthenticationFailed)
}

/// Maps a failure of `op` on `key`.
pub(crate) fn map_err(op: &'static str, key: &str, e: RedisError) -> Error {
    if is_connection_failure(&e) {
        return Error::Connection {
            message: format!("{op} failed: {e}"),
            source: Some(Box::new(e)),
        };
    }
    match e.code() {
        Some("WRONGTYPE") => Error::WrongType {
            key: key.to_owned(),
        },
        Some("PULSE_INVALID") => Error::InvalidValue {
            key: key.to_owned(),
            reason: e.detail().unwrap_or("invalid value").trim().to_owned(),
        },
        _ => Error::Backend {
            op,
            message: e.to_string(),
            source: Some(Box::new(e)),
        },
    }
}

/// Like [`map_err`], mapping `NOGROUP`/`UNBLOCKED` to [`Error::NoGroup`].
pub(crate) fn map_group_err(op: &'static str, key: &str, group: &str, e: RedisError) -> Error {
    match e.code() {
        Some("NOGROUP") | Some("UNBLOCKED") => no_group(key, group),
        _ => map_err(op, key, e),
    }
}

/// [`Error::NoGroup`] for `key` and `group`.
pub(crate) fn no_group(key: &str, group: &str) -> Error {
    Error::NoGroup {
        stream: key.to_owned(),
        group: group.to_owned(),
    }
}

/// The server's `ERR` code (generic error), used with an existence check.
pub(crate) fn is_generic_err(e: &RedisError) -> bool {
    e.code() == Some("ERR")
}

/// A reply that does not have the documented shape.
pub(crate) fn unexpected(what: &'static str, v: &redis::Value) -> Error {
    Error::malformed(what, format!("unexpected reply {v:?}"))
}
