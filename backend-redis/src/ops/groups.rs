//! [`GroupOps`]. Missing streams and groups are reported as `NoGroup` by error code
//! (`NOGROUP`, `UNBLOCKED`) or, for the generic `ERR` some group commands answer on a
//! missing key, by checking the key's existence — never by matching message text.

use std::time::Duration;

use pulse::async_trait;
use pulse::{
    backend::{
        AutoClaim, ConsumerInfo, EntryId, Fields, GroupInfo, GroupOps, GroupStart, PendingEntry,
        PendingSummary, StreamBatch, StreamEntry,
    },
    Error, Result,
};
use redis::{Cmd, Value};

use super::{int_reply, millis};
use crate::{
    conn::CmdError,
    errors::{map_group_err, no_group},
    parse, RedisBackend,
};

impl RedisBackend {
    /// Runs a group command; `NOGROUP`, `UNBLOCKED`, and `ERR` on a missing key are `NoGroup`.
    async fn group_cmd(
        &self,
        op: &'static str,
        key: &str,
        group: &str,
        cmd: &Cmd,
    ) -> Result<Value> {
        match self.run_on_key(op, key, cmd).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(no_group(key, group)),
            Err(e) => Err(e.map(|e| map_group_err(op, key, group, e))),
        }
    }

    /// Checks the group exists (XINFO CONSUMERS answers `ERR` on a missing key and
    /// `NOGROUP` on a missing group).
    async fn consumers_raw(&self, key: &str, group: &str) -> Result<Value> {
        self.group_cmd(
            "XINFO CONSUMERS",
            key,
            group,
            redis::cmd("XINFO").arg("CONSUMERS").arg(key).arg(group),
        )
        .await
    }
}

#[async_trait]
impl GroupOps for RedisBackend {
    async fn group_create(
        &self,
        key: &str,
        group: &str,
        start: GroupStart,
        create_stream: bool,
    ) -> Result<bool> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE").arg(key).arg(group);
        match start {
            GroupStart::Newest => cmd.arg("$"),
            GroupStart::After(id) => cmd.arg(id.to_string()),
        };
        if create_stream {
            cmd.arg("MKSTREAM");
        }
        match self.run_on_key("XGROUP CREATE", key, &cmd).await {
            Ok(Some(_)) => Ok(true),
            Ok(None) => Err(no_group(key, group)),
            Err(CmdError::Redis(e)) if e.code() == Some("BUSYGROUP") => Ok(false),
            Err(e) => Err(e.map(|e| map_group_err("XGROUP CREATE", key, group, e))),
        }
    }

    async fn group_read(
        &self,
        group: &str,
        consumer: &str,
        keys: &[String],
        count: usize,
        block: Option<Duration>,
        no_ack: bool,
    ) -> Result<Vec<StreamBatch>> {
        if keys.is_empty() {
            return Err(Error::InvalidArgument("no streams to read".into()));
        }
        if count == 0 {
            return Err(Error::InvalidArgument("count must be at least 1".into()));
        }
        if self.is_cluster() {
            let groups = crate::cluster::by_slot(keys, |key| key);
            if groups.len() > 1 {
                let (backend, group, consumer) =
                    (self.clone(), group.to_owned(), consumer.to_owned());
                return super::read_across_slots(groups, block, move |keys, block| {
                    let (backend, group, consumer) =
                        (backend.clone(), group.clone(), consumer.clone());
                    async move {
                        backend
                            .group_read_one_slot(&group, &consumer, &keys, count, block, no_ack)
                            .await
                    }
                })
                .await;
            }
        }
        self.group_read_one_slot(group, consumer, keys, count, block, no_ack)
            .await
    }

    async fn group_ack(&self, key: &str, group: &str, ids: &[EntryId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(key).arg(group);
        for id in ids {
            cmd.arg(id.to_string());
        }
        match self.run_raw("XACK", &cmd).await {
            Ok(v) => Ok(int_reply("XACK", &v)?.max(0) as u64),
            // Acking in a missing group is a no-op by contract.
            Err(CmdError::Redis(e)) if e.code() == Some("NOGROUP") => Ok(0),
            Err(e) => Err(e.map(|e| map_group_err("XACK", key, group, e))),
        }
    }

    async fn group_claim_idle(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        start: EntryId,
        count: usize,
    ) -> Result<AutoClaim> {
        if count == 0 {
            return Err(Error::InvalidArgument("count must be at least 1".into()));
        }
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(key)
            .arg(group)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .arg(start.to_string())
            .arg("COUNT")
            .arg(count);
        let mut parts = parse::array(
            "XAUTOCLAIM",
            self.group_cmd("XAUTOCLAIM", key, group, &cmd).await?,
        )?
        .into_iter();
        let next = parts
            .next()
            .map(parse::entry_id)
            .transpose()?
            .unwrap_or(EntryId::ZERO);
        let entries = parse::entries(parts.next().unwrap_or(Value::Nil))?;
        let deleted = parse::array("XAUTOCLAIM deleted", parts.next().unwrap_or(Value::Nil))?
            .into_iter()
            .map(parse::entry_id)
            .collect::<Result<_>>()?;
        Ok(AutoClaim {
            next,
            entries,
            deleted,
        })
    }

    async fn group_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        ids: &[EntryId],
    ) -> Result<Vec<StreamEntry>> {
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(key)
            .arg(group)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64);
        if ids.is_empty() {
            // XCLAIM needs an ID; still check the group exists as the contract says.
            self.consumers_raw(key, group).await?;
            return Ok(Vec::new());
        }
        for id in ids {
            cmd.arg(id.to_string());
        }
        parse::entries(self.group_cmd("XCLAIM", key, group, &cmd).await?)
    }

    async fn group_set_idle(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        ids: &[EntryId],
        idle: Duration,
    ) -> Result<Vec<EntryId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(key).arg(group).arg(consumer).arg(0);
        for id in ids {
            cmd.arg(id.to_string());
        }
        cmd.arg("IDLE").arg(idle.as_millis() as u64).arg("JUSTID");
        let v = self.group_cmd("XCLAIM", key, group, &cmd).await?;
        match v {
            Value::Array(items) => items.into_iter().map(parse::entry_id).collect(),
            other => Err(crate::errors::unexpected("XCLAIM JUSTID", &other)),
        }
    }

    async fn group_dead_letter(
        &self,
        key: &str,
        group: &str,
        id: EntryId,
        dead: &str,
        fields: Fields,
    ) -> Result<Option<EntryId>> {
        let mut inv = self.inner.scripts.group_dead_letter.prepare_invoke();
        inv.key(key).key(dead).arg(group).arg(id.to_string());
        for (name, value) in &fields {
            inv.arg(name).arg(value.as_ref());
        }
        match self
            .run_group_script("group_dead_letter", key, group, &inv)
            .await?
        {
            Value::Nil => Ok(None),
            v => parse::entry_id(v).map(Some),
        }
    }

    async fn group_pending_summary(&self, key: &str, group: &str) -> Result<PendingSummary> {
        let v = self
            .group_cmd(
                "XPENDING",
                key,
                group,
                redis::cmd("XPENDING").arg(key).arg(group),
            )
            .await?;
        parse::pending_summary(v)
    }

    async fn group_pending(
        &self,
        key: &str,
        group: &str,
        consumer: Option<&str>,
        start: EntryId,
        count: usize,
    ) -> Result<Vec<PendingEntry>> {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(key)
            .arg(group)
            .arg(start.to_string())
            .arg("+")
            .arg(count.max(1));
        if let Some(c) = consumer {
            cmd.arg(c);
        }
        if count == 0 {
            self.consumers_raw(key, group).await?;
            return Ok(Vec::new());
        }
        parse::pending_entries(self.group_cmd("XPENDING", key, group, &cmd).await?)
    }

    async fn group_consumers(&self, key: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
        parse::consumers(self.consumers_raw(key, group).await?)
    }

    async fn group_list(&self, key: &str) -> Result<Vec<GroupInfo>> {
        let cmd = redis::cmd("XINFO").arg("GROUPS").arg(key).clone();
        let v = match self.run_on_key("XINFO GROUPS", key, &cmd).await {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(Vec::new()),
            Err(e) => return Err(e.map(|e| crate::errors::map_err("XINFO GROUPS", key, e))),
        };
        parse::groups(v)
    }

    async fn group_create_consumer(&self, key: &str, group: &str, consumer: &str) -> Result<bool> {
        let cmd = redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(key)
            .arg(group)
            .arg(consumer)
            .clone();
        Ok(int_reply(
            "XGROUP CREATECONSUMER",
            &self
                .group_cmd("XGROUP CREATECONSUMER", key, group, &cmd)
                .await?,
        )? == 1)
    }

    async fn group_delete_consumer(&self, key: &str, group: &str, consumer: &str) -> Result<u64> {
        let cmd = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(key)
            .arg(group)
            .arg(consumer)
            .clone();
        Ok(int_reply(
            "XGROUP DELCONSUMER",
            &self
                .group_cmd("XGROUP DELCONSUMER", key, group, &cmd)
                .await?,
        )?
        .max(0) as u64)
    }

    async fn group_destroy(&self, key: &str, group: &str) -> Result<bool> {
        let cmd = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(key)
            .arg(group)
            .clone();
        match self.group_cmd("XGROUP DESTROY", key, group, &cmd).await {
            Ok(v) => Ok(int_reply("XGROUP DESTROY", &v)? == 1),
            Err(Error::NoGroup { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl RedisBackend {
    /// `XREADGROUP` over streams that share one slot (all of them, on a single server).
    async fn group_read_one_slot(
        &self,
        group: &str,
        consumer: &str,
        keys: &[String],
        count: usize,
        block: Option<Duration>,
        no_ack: bool,
    ) -> Result<Vec<StreamBatch>> {
        let build = |block: Option<Duration>| {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count);
            if let Some(d) = block {
                cmd.arg("BLOCK").arg(millis(d));
            }
            if no_ack {
                cmd.arg("NOACK");
            }
            cmd.arg("STREAMS").arg(keys);
            for _ in keys {
                cmd.arg(">");
            }
            cmd
        };
        let key = &keys[0];
        // Non-blocking: the shared connection; blocking: one round trip on a dedicated one.
        let Some(block) = block.filter(|d| !d.is_zero()) else {
            return parse::batches(
                self.group_cmd("XREADGROUP", key, group, &build(None))
                    .await?,
            );
        };
        let v = self
            .inner
            .blocking
            .cmd(key, &build(Some(block)))
            .await
            .map_err(|e| e.map(|e| map_group_err("XREADGROUP", key, group, e)))?;
        parse::batches(v)
    }
}
