//! Reading a Redis URL into connection settings, with an error that names what is wrong:
//! the scheme, the host, the port, the database path. `redis` checks the same things but
//! reports most of them as "Redis URL did not parse".
//!
//! A cluster URL, `redis+cluster://[user:password@]host:port[,host:port…][/]` (or
//! `rediss+cluster://`), lists seed nodes that share the user information; each seed is
//! checked like a single-server URL.
//!
//! Contract: every error is [`Error::Config`] and its message never contains the URL or any
//! part of its user information (a password may be there); it may name the scheme, which
//! the user wrote before any secret.

use pulse::{Error, Result};
use redis::{ConnectionInfo, IntoConnectionInfo};

/// What a URL points at.
#[derive(Debug)]
pub(crate) enum Target {
    /// One server.
    Server(Box<ConnectionInfo>),
    /// The seed nodes of a Redis Cluster, in the URL's order (at least one).
    Cluster(Vec<ConnectionInfo>),
}

/// Reads `url`: a cluster URL (see the module doc) or a single-server one
/// ([`connection_info`]).
pub(crate) fn target(url: &str) -> Result<Target> {
    let bad = |what: &str| Error::Config(format!("invalid Redis URL: {what}"));
    let (base, rest) = match url.split_once("://") {
        Some(("redis+cluster", rest)) => ("redis", rest),
        Some(("rediss+cluster", rest)) => ("rediss", rest),
        _ => return connection_info(url).map(|info| Target::Server(Box::new(info))),
    };
    // The seeds end at the path; user information (which may hold a `,`) ends at the last
    // `@` before it.
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !matches!(path, "" | "/" | "/0") {
        return Err(bad(
            "a cluster URL has no database path or query (a cluster has database 0 only): \
             expected redis+cluster://host:port[,host:port…]/",
        ));
    }
    let (user, seeds) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    let infos = seeds
        .split(',')
        .map(|seed| {
            if seed.is_empty() {
                return Err(bad(
                    "an empty seed in the cluster node list (host:port,host:port)",
                ));
            }
            connection_info(&format!("{base}://{user}{seed}/"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Target::Cluster(infos))
}

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
                "unsupported scheme {other:?}: use redis://, rediss:// (TLS), redis+unix:// \
                 or redis+cluster:// (rediss+cluster://) for a Redis Cluster"
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

    fn cluster_message(url: &str) -> String {
        match target(url) {
            Err(Error::Config(m)) => m,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn cluster_urls_list_seeds_that_share_the_login() {
        let Ok(Target::Cluster(seeds)) = target("rediss+cluster://al,ice:p@ss@h1:7000,h2:7001/")
        else {
            panic!("not a cluster target");
        };
        assert_eq!(seeds.len(), 2);
        for (seed, port) in seeds.iter().zip([7000, 7001]) {
            assert_eq!(seed.redis_settings().username(), Some("al,ice"));
            assert_eq!(seed.redis_settings().password(), Some("p@ss"));
            assert!(
                matches!(seed.addr(), redis::ConnectionAddr::TcpTls { port: p, .. } if *p == port)
            );
        }
        assert!(matches!(target("redis+cluster://h:1"), Ok(Target::Cluster(s)) if s.len() == 1));
        assert!(matches!(target("redis://h:1/2"), Ok(Target::Server(_))));
        for (url, says) in [
            ("redis+cluster://:hunter2@h:1/3", "no database path"),
            ("redis+cluster://:hunter2@h:1/?x=1", "no database path"),
            ("redis+cluster://:hunter2@h:1,,h:2/", "empty seed"),
            ("redis+cluster://:hunter2@h:99999/", "invalid port number"),
            ("redis+cluster://:hunter2@/", "empty seed"),
        ] {
            let m = cluster_message(url);
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
