//! The trait implementations, one file per capability family, over the helpers here.

mod atomic;
mod groups;
mod keys;
mod streams;

use std::time::Instant;

use pulse::{Error, Result};
use redis::{Cmd, Value};

use crate::{conn::CmdError, errors::map_err, RedisBackend};

impl RedisBackend {
    /// Runs a command on the shared connection, mapping errors for `key`.
    pub(crate) async fn run(&self, op: &'static str, key: &str, cmd: &Cmd) -> Result<Value> {
        let started = Instant::now();
        let out = self
            .inner
            .commands
            .cmd(cmd)
            .await
            .map_err(|e| e.map(|e| map_err(op, key, e)));
        self.inner.metrics.record(op, started, out.as_ref().err());
        out
    }

    /// Runs command `op` on the shared connection, keeping the raw Redis error for the
    /// caller to classify (an error reply may be an expected answer, so only failures to
    /// get a reply count as errors here).
    pub(crate) async fn run_raw(
        &self,
        op: &'static str,
        cmd: &Cmd,
    ) -> std::result::Result<Value, CmdError> {
        let started = Instant::now();
        let out = self.inner.commands.cmd(cmd).await;
        let failed = match &out {
            Err(CmdError::Pulse(e)) => Some(e),
            _ => None,
        };
        self.inner.metrics.record(op, started, failed);
        out
    }

    /// Runs a script invocation on the shared connection.
    pub(crate) async fn run_script(
        &self,
        op: &'static str,
        key: &str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<Value> {
        let started = Instant::now();
        let out = async {
            let mut conn = self.inner.commands.get().await?;
            inv.invoke_async::<Value>(&mut conn).await.map_err(|e| {
                self.inner.commands.invalidate(&e);
                map_err(op, key, e)
            })
        }
        .await;
        self.inner.metrics.record(op, started, out.as_ref().err());
        out
    }

    /// True when `key` exists; used to classify generic `ERR` replies of group commands.
    pub(crate) async fn key_exists(&self, key: &str) -> Result<bool> {
        let v = self
            .run("EXISTS", key, redis::cmd("EXISTS").arg(key))
            .await?;
        Ok(crate::parse::int(&v).unwrap_or(0) > 0)
    }
}

/// Milliseconds for a Redis argument, at least 1.
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

/// An integer reply or a malformed-reply error.
pub(crate) fn int_reply(what: &'static str, v: &Value) -> Result<i64> {
    crate::parse::int(v)
        .ok_or_else(|| Error::malformed(what, format!("expected an integer, got {v:?}")))
}

#[pulse::async_trait]
impl pulse::backend::PubSubOps for RedisBackend {
    async fn publish(&self, channel: &str, payload: bytes::Bytes) -> Result<u64> {
        let v = self
            .run(
                "PUBLISH",
                channel,
                redis::cmd("PUBLISH").arg(channel).arg(payload.as_ref()),
            )
            .await?;
        Ok(int_reply("PUBLISH", &v)?.max(0) as u64)
    }

    async fn subscribe(&self, channels: &[String]) -> Result<pulse::backend::Subscription> {
        self.inner.hub.subscribe(channels).await
    }
}
