//! Mapping of `redis` errors into [`pulse::Error`], by error *code*, never by message text.
//!
//! | Redis failure | Pulse error |
//! |---|---|
//! | I/O, dropped, timed out | [`Error::Connection`] |
//! | `WRONGPASS`, a failed `AUTH` on connecting | [`Error::Denied`], [`Denial::WrongCredentials`] |
//! | `NOAUTH` | [`Error::Denied`], [`Denial::NoCredentials`] |
//! | `NOPERM` | [`Error::Denied`], [`Denial::NoPermission`] |
//! | `-ERR max number of clients reached` on connecting (see `conn::connect_error`) | [`Error::Refused`], [`Refusal::TooManyClients`] |
//! | `OOM` | [`Error::Refused`], [`Refusal::OutOfMemory`] |
//! | `READONLY`, `NOREPLICAS`, `MISCONF` | [`Error::Refused`], [`Refusal::ReadOnly`] |
//! | `BUSY`, `LOADING`, `MASTERDOWN` | [`Error::Refused`], [`Refusal::Busy`] |
//! | `WRONGTYPE` | [`Error::WrongType`] |
//! | `NOGROUP`, `UNBLOCKED` (stream deleted under a blocked group read) | [`Error::NoGroup`] |
//! | `PULSE_INVALID` (raised by our Lua scripts) | [`Error::InvalidValue`] |
//! | `PULSE_TOO_LARGE <size> <limit>` (our list edit's result check) | [`Error::PayloadTooLarge`] |
//! | `CLUSTERDOWN`, `TRYAGAIN`, `MOVED`, `ASK` still answered when the cluster connection stopped resending (`cluster`) | [`Error::Connection`] (not applied; worth retrying) |
//! | anything else | [`Error::Backend`] |
//!
//! The code of a pipeline or transaction failure is the code of its first failed command;
//! a `MULTI` discarded by `EXECABORT` carries the code that made the server discard it
//! (an `OOM` while queueing, say), so it maps like that command alone.
//!
//! Why a refusal means "not applied": Redis checks memory, permissions, replication and
//! loading state *before* running a command, a `MULTI` with a refused command is discarded
//! as a whole, and a script is refused for memory only at its first write. Two cases do not
//! keep that promise and are therefore not `Refused`: a pipeline (or an `EXEC`) of which
//! some commands were refused and others applied (see `conn::Commands::pipe`:
//! `Connection`), and an ACL denial *inside* a script, which Redis 7 reports as `ERR`,
//! possibly after some of the script's writes (`Backend`).
//!
//! A server at `maxclients` has no code of its own (`-ERR max number of clients reached`,
//! written before the handshake); `conn::connect_error` recognises that one line.

use pulse::{error::Refusal, Denial, Error};
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

/// The server's error code and detail: of the error itself, or of the first failed command
/// of a pipeline or of a discarded transaction (whose own code is `EXECABORT`).
fn server_error(e: &RedisError) -> Option<(String, String)> {
    let errors = e.clone().into_server_errors()?;
    let (_, first) = errors.first()?;
    Some((
        first.code().to_owned(),
        first.details().unwrap_or_default().trim().to_owned(),
    ))
}

/// The refusal a Redis error code stands for, if it is one.
pub(crate) fn refusal(code: &str) -> Option<Refusal> {
    Some(match code {
        "OOM" => Refusal::OutOfMemory,
        "READONLY" | "NOREPLICAS" | "MISCONF" => Refusal::ReadOnly,
        "BUSY" | "LOADING" | "MASTERDOWN" => Refusal::Busy,
        _ => return None,
    })
}

/// The denial `e` stands for, if it is one: credentials refused or missing, or an ACL.
pub(crate) fn denial(e: &RedisError) -> Option<Denial> {
    if matches!(e.kind(), ErrorKind::AuthenticationFailed) {
        return Some(Denial::WrongCredentials);
    }
    let (code, _) = server_error(e)?;
    Some(match code.as_str() {
        "WRONGPASS" => Denial::WrongCredentials,
        "NOAUTH" => Denial::NoCredentials,
        "NOPERM" => Denial::NoPermission,
        _ => return None,
    })
}

/// [`Error::Denied`] when `e` is a denial by the server, for `op`.
pub(crate) fn denied(op: &'static str, e: &RedisError) -> Option<Error> {
    let reason = denial(e)?;
    let message = match server_error(e) {
        Some((code, detail)) => format!("{code} {detail}"),
        None => "the server did not accept the user name and password".to_owned(),
    };
    Some(Error::Denied {
        op,
        reason,
        message,
    })
}

/// [`Error::Refused`] when `e` is a refusal by the server, for `op`.
pub(crate) fn refused(op: &'static str, e: &RedisError) -> Option<Error> {
    let (code, detail) = server_error(e)?;
    Some(Error::Refused {
        op,
        reason: refusal(&code)?,
        message: format!("{code} {detail}"),
    })
}

/// True when `e` is a refusal or a denial by the server (see [`refused`], [`denied`]):
/// an answer that promises the command was not applied.
pub(crate) fn is_refusal(e: &RedisError) -> bool {
    server_error(e).is_some_and(|(code, _)| refusal(&code).is_some()) || denial(e).is_some()
}

/// Maps a failure of `op` on `key`.
pub(crate) fn map_err(op: &'static str, key: &str, e: RedisError) -> Error {
    if let Some(denied) = denied(op, &e) {
        return denied;
    }
    if is_connection_failure(&e) {
        return Error::Connection {
            message: format!("{op} failed: {e}"),
            source: Some(Box::new(e)),
        };
    }
    if let Some(refused) = refused(op, &e) {
        return refused;
    }
    let (code, detail) = server_error(&e).unzip();
    match code.as_deref() {
        Some(code @ ("CLUSTERDOWN" | "TRYAGAIN" | "MOVED" | "ASK")) => Error::Connection {
            message: format!(
                "{op} was not applied: the cluster answered {code} until the command timeout \
                 (a node down or a slot moving); retry later"
            ),
            source: Some(Box::new(e)),
        },
        Some("WRONGTYPE") => Error::WrongType {
            key: key.to_owned(),
        },
        // XADD with an explicit ID not above the stream's top (or 0-0).
        Some("ERR")
            if detail.as_deref().is_some_and(|d| {
                d.contains("equal or smaller than the target stream top item")
                    || d.contains("must be greater than 0-0")
            }) =>
        {
            Error::InvalidArgument(
                "an explicit ID must be greater than the stream's last ID".into(),
            )
        }
        Some("PULSE_INVALID") => Error::InvalidValue {
            key: key.to_owned(),
            reason: detail
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "invalid value".to_owned()),
        },
        Some("PULSE_TOO_LARGE") => {
            let mut n = detail
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(|n| n.parse::<usize>().unwrap_or(usize::MAX));
            Error::PayloadTooLarge {
                size: n.next().unwrap_or(usize::MAX),
                limit: n.next().unwrap_or(0),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, detail: &str) -> RedisError {
        redis::make_extension_error(code.to_owned(), Some(detail.to_owned()))
    }

    #[test]
    fn refusals_are_typed_by_code() {
        for (code, reason) in [
            ("OOM", Refusal::OutOfMemory),
            ("READONLY", Refusal::ReadOnly),
            ("BUSY", Refusal::Busy),
            ("LOADING", Refusal::Busy),
            ("MASTERDOWN", Refusal::Busy),
        ] {
            let e = map_err("op", "k", server(code, "no"));
            assert!(
                matches!(e, Error::Refused { reason: r, op: "op", .. } if r == reason),
                "{code}: {e:?}"
            );
        }
        for (code, reason) in [
            ("WRONGPASS", Denial::WrongCredentials),
            ("NOAUTH", Denial::NoCredentials),
            ("NOPERM", Denial::NoPermission),
        ] {
            let e = map_err("op", "k", server(code, "no"));
            assert!(
                matches!(e, Error::Denied { reason: r, op: "op", .. } if r == reason),
                "{code}: {e:?}"
            );
            assert!(!e.is_retryable());
        }
        assert!(matches!(
            map_err("op", "k", server("BUSYKEY", "exists")),
            Error::Backend { .. }
        ));
        for code in ["CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK"] {
            let e = map_err("op", "k", server(code, "1 127.0.0.1:7000"));
            assert!(
                matches!(&e, Error::Connection { message, .. } if message.contains(code)),
                "{code}: {e:?}"
            );
            assert!(e.is_retryable());
        }
        assert!(matches!(
            map_err("op", "k", server("WRONGTYPE", "no")),
            Error::WrongType { .. }
        ));
        assert!(matches!(
            map_err("op", "k", server("PULSE_INVALID", "not a list")),
            Error::InvalidValue { reason, .. } if reason == "not a list"
        ));
        assert!(matches!(
            map_err("op", "k", server("PULSE_TOO_LARGE", "20 16")),
            Error::PayloadTooLarge {
                size: 20,
                limit: 16
            }
        ));
    }
}
