//! [`KeyOps`] and [`HashOps`].

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pulse::{
    backend::{HashOps, KeyExpiry, KeyOps, Ttl},
    Result,
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
            .run("DEL", &keys[0], redis::cmd("DEL").arg(keys))
            .await?;
        Ok(int_reply("DEL", &v)?.max(0) as u64)
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
