//! The trait implementations, one file per capability family, over the helpers here.

mod atomic;
mod groups;
mod keys;
mod streams;

use std::time::Instant;

use pulse::{Error, Result};
use redis::{Cmd, Value};

use crate::{
    conn::{CmdError, Commands},
    errors::map_err,
    PubSub, RedisBackend,
};

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

    /// Runs `cmd`, one of the commands that answer a generic `ERR` when `key` is missing
    /// (`XINFO`, `XGROUP CREATE`, the group reads): `Ok(None)` when the key is missing,
    /// the reply otherwise. A key created between the failed command and the existence
    /// check (a concurrent first add) is asked again, so that race reads as the key's
    /// state, never as an error; a second generic `ERR` on an existing key is returned.
    pub(crate) async fn run_on_key(
        &self,
        op: &'static str,
        key: &str,
        cmd: &Cmd,
    ) -> std::result::Result<Option<Value>, CmdError> {
        let mut asked = 0;
        loop {
            match self.run_raw(op, cmd).await {
                Ok(v) => return Ok(Some(v)),
                Err(CmdError::Redis(e)) if crate::errors::is_generic_err(&e) => {
                    if !self.key_exists(key).await.map_err(CmdError::Pulse)? {
                        return Ok(None);
                    }
                    asked += 1;
                    if asked == 2 {
                        return Err(CmdError::Redis(e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs a script invocation on the shared connection.
    pub(crate) async fn run_script(
        &self,
        op: &'static str,
        key: &str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<Value> {
        self.invoke(op, inv, |e| map_err(op, key, e)).await
    }

    /// Runs a script about `group` on stream `key`: like [`RedisBackend::run_script`], with
    /// `NOGROUP` (raised by a group command inside the script) mapped to `NoGroup`.
    pub(crate) async fn run_group_script(
        &self,
        op: &'static str,
        key: &str,
        group: &str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<Value> {
        self.invoke(op, inv, |e| crate::errors::map_group_err(op, key, group, e))
            .await
    }

    async fn invoke(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
        map: impl FnOnce(redis::RedisError) -> Error,
    ) -> Result<Value> {
        let started = Instant::now();
        let out = async {
            let mut conn = self.inner.commands.get().await?;
            inv.invoke_async::<Value>(&mut conn).await.map_err(|e| {
                self.inner.commands.invalidate(&e);
                map(e)
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
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload.as_ref());
        // On a cluster, to the master of the channel's slot, where its subscriptions are
        // (`crate::lanes`): the count covers them and the channel keeps its order.
        if let (Commands::Cluster(link), PubSub::Cluster(lanes)) =
            (&self.inner.commands, &self.inner.pubsub)
        {
            if let Some(node) = lanes.node_for(channel) {
                let started = Instant::now();
                let out = link.clone().on_node(node, &cmd).await;
                if !matches!(&out, Err(e) if e.kind() == redis::ErrorKind::ClusterConnectionNotFound)
                {
                    let out = out.map_err(|e| map_err("PUBLISH", channel, e));
                    self.inner
                        .metrics
                        .record("PUBLISH", started, out.as_ref().err());
                    return Ok(int_reply("PUBLISH", &out?)?.max(0) as u64);
                }
            }
        }
        let v = self.run("PUBLISH", channel, &cmd).await?;
        Ok(int_reply("PUBLISH", &v)?.max(0) as u64)
    }

    async fn subscribe(&self, channels: &[String]) -> Result<pulse::backend::Subscription> {
        match &self.inner.pubsub {
            PubSub::Server(hub) => hub.subscribe(channels).await,
            PubSub::Cluster(lanes) => lanes.subscribe(channels).await,
        }
    }
}

/// Reads over streams in several slots of a cluster (one `XREAD`/`XREADGROUP` cannot span
/// slots): each slot's streams are read without blocking in turn, and when none had
/// entries and `block` is set, every slot's read blocks at once on its own connection; the
/// first to find entries answers, with any other that finished by then, and the rest are
/// cancelled (a cancelled read closes its connection; a group read cancelled after the
/// server answered leaves its entries pending, redelivered after the sink's grace period).
pub(crate) async fn read_across_slots<T, F, Fut>(
    groups: Vec<Vec<T>>,
    block: Option<std::time::Duration>,
    read: F,
) -> Result<Vec<pulse::backend::StreamBatch>>
where
    T: Clone,
    F: Fn(Vec<T>, Option<std::time::Duration>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<pulse::backend::StreamBatch>>> + Send + 'static,
{
    let mut found = Vec::new();
    for group in &groups {
        found.extend(read(group.clone(), None).await?);
    }
    let Some(block) = block.filter(|d| !d.is_zero()) else {
        return Ok(found);
    };
    if !found.is_empty() {
        return Ok(found);
    }
    let mut reads = tokio::task::JoinSet::new();
    for group in groups {
        reads.spawn(read(group, Some(block)));
    }
    let lost = |e: tokio::task::JoinError| Error::connection(format!("a slot's read failed: {e}"));
    while let Some(done) = reads.join_next().await {
        let batches = done.map_err(lost)??;
        if batches.is_empty() {
            continue;
        }
        found.extend(batches);
        // Others that finished meanwhile; a failed one is read again next time.
        while let Some(done) = reads.try_join_next() {
            if let Ok(Ok(batches)) = done {
                found.extend(batches);
            }
        }
        return Ok(found);
    }
    Ok(found)
}
