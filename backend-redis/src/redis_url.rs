//! Reading a Redis URL into connection settings, with an error that names what is wrong:
//! the scheme, the host, the port, the database path. `redis` checks the same things but
//! reports most of them as "Redis URL did not parse".
//!
//! Contract: every error is [`Error::Config`] and its message never contains the URL or any
//! part of its user information (a password may be there); it may name the scheme, which
//! the user wrote before any secret.

use pulse::{Error, Result};
use redis::{ConnectionInfo, IntoConnectionInfo};

/// The connection settings for `url`: `redis://` or `rediss://` (TLS) with
/// `[user:password@]host[:port][/db]`, or `redis+unix:///path/to/socket`.
pub(crate) fn connection_info(url: &str) -> Result<ConnectionInfo> {
    let bad = |what: &str| Error::Config(format!("invalid Redis URL: {what}"));
    // `url`'s messages name the problem, never the input ("invalid port number").
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "redis" | "rediss" | "valkey" | "valkeys" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(bad("no host (expected redis://host[:port][/db])"));
            }
            let db = parsed.path().trim_matches('/');
            if !db.is_empty() && db.parse::<u16>().is_err() {
                return Err(bad(
                    "the path selects a database and must be its number (0, 1, …)",
                ));
            }
        }
        "redis+unix" | "unix" | "valkey+unix" => {}
        other => {
            return Err(bad(&format!(
                "unsupported scheme {other:?}: use redis://, rediss:// (TLS) or redis+unix://"
            )))
        }
    }
    // What is left for `redis` to refuse (a wildcard host, a bad `protocol=`) has a
    // message of its own, again without the input.
    parsed
        .into_connection_info()
        .map_err(|e| bad(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(url: &str) -> String {
        match connection_info(url) {
            Err(Error::Config(m)) => m,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn each_problem_is_named_and_no_secret_shows() {
        for (url, says) in [
            (
                "http://user:hunter2@localhost/",
                "unsupported scheme \"http\"",
            ),
            ("localhost:6379", "unsupported scheme \"localhost\""),
            ("not a url", "relative URL without a base"),
            ("redis://:hunter2@localhost:99999/", "invalid port number"),
            ("redis://:hunter2@[::1/", "invalid IPv6 address"),
            ("redis://:hunter2@/", "empty host"),
            ("redis:///0", "no host"),
            ("redis://:hunter2@localhost/abc", "must be its number"),
            ("redis://:hunter2@localhost/-1", "must be its number"),
            ("redis://:hunter2@0.0.0.0/", "wildcard"),
            ("redis://localhost/?protocol=9", "protocol"),
        ] {
            let m = message(url);
            assert!(m.contains(says), "{url}: {m}");
            assert!(!m.contains("hunter2"), "{url}: secret in {m}");
        }
    }

    #[test]
    fn good_urls_pass() {
        for url in [
            "redis://localhost",
            "redis://:pw@127.0.0.1:6379/3",
            "rediss://alice:pw@example.com:6380/",
            "redis+unix:///tmp/redis.sock",
        ] {
            assert!(connection_info(url).is_ok(), "{url}");
        }
    }
}
