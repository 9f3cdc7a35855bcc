//! [`KeyOps`] and [`HashOps`].

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pulse::async_trait;
use pulse::{
    backend::{HashChunk, HashOps, KeyExpiry, KeyOps, Ttl},
    Error, Result,
};

use redis::Value;

use super::{int_reply, millis};
use crate::{
    conn::{Commands, Dedicated},
    errors::map_err,
    parse, RedisBackend,
};

#[async_trait]
impl KeyOps for RedisBackend {
    async fn exists(&self, key: &str) -> Result<bool> {
        self.key_exists(key).await
    }

    async fn delete(&self, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let v = self
            .run("UNLINK", &keys[0], redis::cmd("UNLINK").arg(keys))
            .await?;
        // UNLINK, not DEL: a big stream or hash is freed off the server's main thread.
        Ok(int_reply("UNLINK", &v)?.max(0) as u64)
    }

    async fn expire(&self, key: &str, ttl: Ttl) -> Result<bool> {
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(key).arg(millis(ttl.duration()));
        if matches!(ttl, Ttl::Absolute(_)) {
            cmd.arg("NX");
        }
        Ok(int_reply("PEXPIRE", &self.run("PEXPIRE", key, &cmd).await?)? == 1)
    }

    async fn expiry(&self, key: &str) -> Result<KeyExpiry> {
        let ms = int_reply(
            "PTTL",
            &self.run("PTTL", key, redis::cmd("PTTL").arg(key)).await?,
        )?;
        Ok(match ms {
            -2 => KeyExpiry::Missing,
            -1 => KeyExpiry::Persistent,
            ms => KeyExpiry::In(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    /// `SCAN … MATCH <prefix>*<suffix>` (escaped) to the end on the server, or on every
    /// master of a cluster, keeping the `limit` smallest keys seen.
    async fn keys_matching(&self, prefix: &str, suffix: &str, limit: usize) -> Result<Vec<String>> {
        let pattern = format!("{}*{}", glob_escape(prefix), glob_escape(suffix));
        let nodes = match (&self.inner.commands, &self.inner.blocking) {
            (Commands::Cluster(link), Dedicated::Cluster(topology)) => topology
                .masters()
                .into_iter()
                .map(|n| Some((link.clone(), n)))
                .collect(),
            _ => vec![None],
        };
        let mut found = BTreeSet::new();
        for node in nodes {
            let mut cursor = String::from("0");
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(&cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let v = match &node {
                    None => self.run("SCAN", prefix, &cmd).await?,
                    Some((link, addr)) => {
                        let started = Instant::now();
                        let out = link.clone().on_node(addr.clone(), &cmd).await;
                        let out = out.map_err(|e| map_err("SCAN", prefix, e));
                        self.inner
                            .metrics
                            .record("SCAN", started, out.as_ref().err());
                        out?
                    }
                };
                let (next, keys) = scan_reply(v)?;
                for key in keys.into_iter().filter(|k| {
                    k.len() >= prefix.len() + suffix.len()
                        && k.starts_with(prefix)
                        && k.ends_with(suffix)
                }) {
                    found.insert(key);
                    if found.len() > limit {
                        found.pop_last();
                    }
                }
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(found.into_iter().collect())
    }
}

/// Keys `SCAN` examines per call: large enough to cross a big keyspace in few round trips,
/// small enough that one call never holds the server for long.
const SCAN_COUNT: usize = 1000;

/// `text` with the glob characters `* ? [ ] \` escaped, for `MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The next cursor and the keys of one `SCAN` reply (keys that are not UTF-8 are skipped:
/// Pulse never writes one).
fn scan_reply(v: Value) -> Result<(String, Vec<String>)> {
    let mut parts = parse::array("SCAN", v)?.into_iter();
    let (Some(next), Some(keys), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::malformed("SCAN reply", "not a [cursor, keys] pair"));
    };
    let next =
        parse::text(next).ok_or_else(|| Error::malformed("SCAN reply", "cursor is not text"))?;
    let keys = parse::array("SCAN", keys)?
        .into_iter()
        .filter_map(parse::text)
        .collect();
    Ok((next, keys))
}

#[async_trait]
impl HashOps for RedisBackend {
    async fn hash_get(&self, key: &str, field: &str) -> Result<Option<Bytes>> {
        Ok(parse::bytes(
            self.run("HGET", key, redis::cmd("HGET").arg(key).arg(field))
                .await?,
        ))
    }

    async fn hash_get_all(&self, key: &str) -> Result<Vec<(String, Bytes)>> {
        let v = self
            .run("HGETALL", key, redis::cmd("HGETALL").arg(key))
            .await?;
        Ok(parse::pairs("HGETALL", v)?
            .into_iter()
            .filter_map(|(k, v)| parse::bytes(v).map(|v| (k, v)))
            .collect())
    }

    async fn hash_get_fields(&self, key: &str, fields: &[&str]) -> Result<Vec<Option<Bytes>>> {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        let v = self
            .run("HMGET", key, redis::cmd("HMGET").arg(key).arg(fields))
            .await?;
        let values = parse::array("HMGET", v)?;
        if values.len() != fields.len() {
            return Err(Error::malformed(
                "HMGET reply",
                format!("{} values for {} fields", values.len(), fields.len()),
            ));
        }
        Ok(values.into_iter().map(parse::bytes).collect())
    }

    async fn hash_scan(&self, key: &str, cursor: Option<&str>, count: usize) -> Result<HashChunk> {
        let cursor = cursor.unwrap_or("0");
        if cursor.is_empty() || !cursor.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidArgument(format!(
                "{cursor:?} is not a hash scan cursor of this backend"
            )));
        }
        let v = self
            .run(
                "HSCAN",
                key,
                redis::cmd("HSCAN")
                    .arg(key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(count.max(1)),
            )
            .await?;
        let mut parts = parse::array("HSCAN", v)?.into_iter();
        let (Some(next), Some(pairs), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::malformed(
                "HSCAN reply",
                "not a [cursor, fields] pair",
            ));
        };
        let next = parse::text(next)
            .ok_or_else(|| Error::malformed("HSCAN reply", "cursor is not text"))?;
        let fields = parse::pairs("HSCAN", pairs)?
            .into_iter()
            .filter_map(|(k, v)| parse::bytes(v).map(|v| (k, v)))
            .collect();
        Ok(HashChunk {
            next: (next != "0").then_some(next),
            fields,
        })
    }

    async fn hash_exists(&self, key: &str, field: &str) -> Result<bool> {
        let v = self
            .run("HEXISTS", key, redis::cmd("HEXISTS").arg(key).arg(field))
            .await?;
        Ok(int_reply("HEXISTS", &v)? == 1)
    }

    async fn hash_len(&self, key: &str) -> Result<u64> {
        Ok(int_reply(
            "HLEN",
            &self.run("HLEN", key, redis::cmd("HLEN").arg(key)).await?,
        )?
        .max(0) as u64)
    }
}
