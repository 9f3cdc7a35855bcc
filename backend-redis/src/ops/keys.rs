//! [`KeyOps`] and [`HashOps`].

use std::time::Duration;

use bytes::Bytes;
use pulse::async_trait;
use pulse::{
    backend::{HashChunk, HashOps, KeyExpiry, KeyOps, Ttl},
    Error, Result,
};

use super::{int_reply, millis};
use crate::{parse, RedisBackend};

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
