//! # pulse-connect
//!
//! Opens a Pulse backend from a URL, the one way every tool of the workspace (the `pulse`
//! command and its gateway, the examples, the bench, the chaos harness) names a store:
//!
//! | URL | Backend |
//! |---|---|
//! | `memory:` | a new in-process [`MemoryBackend`](pulse_memory::MemoryBackend) (nothing shared with other processes) |
//! | `redis://[user:password@]host[:port][/db]`, `rediss://…` | one Redis server ([`RedisBackend`](pulse_redis::RedisBackend)), TLS with `rediss` |
//! | `redis+cluster://host:port[,host:port…]/`, `rediss+cluster://…` | a Redis Cluster from its seeds |
//! | `redb:path/to/file.redb`, `redb:///absolute/path.redb`, `…?durability=eventual` | a file of the persistent embedded backend ([`RedbBackend`](pulse_redb::RedbBackend)), created when missing; one process owns it |
//!
//! Errors never repeat the URL (it may hold a password): an unknown scheme is a
//! [`Error::Config`] naming the scheme only, and [`describe`] gives a form safe to print.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> pulse::Result<()> {
//! let backend = pulse_connect::open("memory:").await?;
//! assert_eq!(backend.kind(), "memory");
//! assert!(pulse_connect::open("mongodb://x").await.is_err());
//! assert_eq!(pulse_connect::describe("redis://user:secret@db.example:6380/2"), "redis://db.example:6380/2");
//! # Ok(()) }
//! ```

use std::sync::Arc;

use pulse::{Backend, Error, Result};

/// The environment variable the tools read a backend URL from.
pub const BACKEND_ENV: &str = "PULSE_BACKEND";

/// Opens the backend `url` names (see the crate docs for the forms).
///
/// Errors: `Config` (an unknown scheme, or a URL the backend refuses), and what the
/// backend's connect returns (`Connection`, `Denied`, …).
pub async fn open(url: &str) -> Result<Arc<dyn Backend>> {
    match scheme(url) {
        Some("memory") => Ok(Arc::new(pulse_memory::MemoryBackend::new())),
        Some("redb") => open_redb(url).await,
        Some("redis" | "rediss" | "redis+cluster" | "rediss+cluster") => {
            Ok(Arc::new(pulse_redis::RedisBackend::connect(url).await?))
        }
        Some(other) => Err(Error::Config(format!(
            "unknown backend scheme {other:?}: use memory:, redb:, redis://, rediss://, redis+cluster:// or rediss+cluster://"
        ))),
        None => Err(Error::Config(
            "a backend URL starts with a scheme: memory:, redb:, redis://, rediss://, redis+cluster:// or rediss+cluster://".into(),
        )),
    }
}

/// `redb:<path>[?durability=immediate|eventual]` (`redb://` before the path is dropped, so
/// `redb:///abs` is `/abs`).
async fn open_redb(url: &str) -> Result<Arc<dyn Backend>> {
    let rest = url.strip_prefix("redb:").unwrap_or_default();
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(Error::Config(
            "redb: needs a file, e.g. redb:data.redb".into(),
        ));
    }
    let mut options = pulse_redb::RedbOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        options.durability = match pair {
            "durability=immediate" => pulse_redb::Durability::Immediate,
            "durability=eventual" => pulse_redb::Durability::Eventual,
            other => {
                return Err(Error::Config(format!(
                    "unknown redb option {other:?}: durability=immediate or durability=eventual"
                )))
            }
        };
    }
    Ok(Arc::new(
        pulse_redb::RedbBackend::open(path, options).await?,
    ))
}

/// The backend named by `PULSE_BACKEND`, else by `PULSE_REDIS_URL` (the examples' older
/// variable), else `default`.
pub fn url_from_env(default: &str) -> String {
    std::env::var(BACKEND_ENV)
        .or_else(|_| std::env::var("PULSE_REDIS_URL"))
        .unwrap_or_else(|_| default.to_owned())
}

/// `url` without its credentials, safe to print or log.
pub fn describe(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return scheme(url).map_or_else(|| "(invalid URL)".to_owned(), |s| format!("{s}:"));
    };
    let rest = match rest.split_once('@') {
        // Credentials end at the last '@' before the host part.
        Some(_) => rest.rsplit_once('@').map_or(rest, |(_, host)| host),
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// The scheme of `url`: what comes before the first `:`, when it is a scheme.
fn scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let valid = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_hold_credentials() {
        for (url, safe) in [
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/"),
            ("redis://:pw@h:1/0", "redis://h:1/0"),
            ("rediss://user:p@ss@h:1", "rediss://h:1"),
            ("redis+cluster://u:p@a:1,b:2/", "redis+cluster://a:1,b:2/"),
            ("memory:", "memory:"),
            ("redb:data.redb", "redb:"),
            ("nonsense", "(invalid URL)"),
        ] {
            assert_eq!(describe(url), safe, "{url}");
        }
    }

    #[tokio::test]
    async fn unknown_schemes_are_config_errors_without_the_url() {
        for url in ["postgres://u:secret@h/db", "no scheme here", ""] {
            let e = match open(url).await {
                Err(e) => e,
                Ok(_) => panic!("{url} opened"),
            };
            assert!(matches!(e, Error::Config(_)), "{e:?}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[tokio::test]
    async fn redb_urls_open_a_file_that_keeps_its_data() {
        let dir = std::env::temp_dir().join(format!("pulse-connect-redb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data.redb");
        let url = format!("redb://{}?durability=eventual", path.display());
        let backend = open(&url).await.unwrap();
        assert_eq!(backend.kind(), "redb");
        drop(backend);
        assert!(path.exists());
        for bad in ["redb:", "redb:x.redb?fsync=never"] {
            match open(bad).await {
                Err(Error::Config(_)) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
