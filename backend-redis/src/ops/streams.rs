//! [`StreamOps`]: appends (trim, create and TTL in one `MULTI`), ranges, blocking reads.

use std::time::Duration;

use pulse::async_trait;
use pulse::{
    backend::{
        AddOptions, AddedOnce, DelayInfo, DelayRelease, EntryId, Fields, StreamBatch, StreamEntry,
        StreamInfo, StreamOps, Ttl,
    },
    Error, Result,
};
use redis::{Cmd, Pipeline, Value};

use super::{int_reply, millis};
use crate::{errors::map_err, parse, RedisBackend};

fn xadd(key: &str, fields: &Fields, options: &AddOptions) -> Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key);
    if !options.create {
        cmd.arg("NOMKSTREAM");
    }
    if let Some(n) = options.max_len {
        cmd.arg("MAXLEN").arg("~").arg(n);
    }
    match options.id {
        Some(id) => cmd.arg(id.to_string()),
        None => cmd.arg("*"),
    };
    for (k, v) in fields {
        cmd.arg(k).arg(v.as_ref());
    }
    cmd
}

fn pexpire(key: &str, ttl: Ttl) -> Cmd {
    let mut cmd = redis::cmd("PEXPIRE");
    cmd.arg(key).arg(ttl.millis());
    if matches!(ttl, Ttl::Absolute(_)) {
        cmd.arg("NX");
    }
    cmd
}

/// The TTL arguments of the append scripts: milliseconds (`""` for none) and the mode
/// (`abs` keeps an existing expiry, as `PEXPIRE … NX` does for [`pexpire`]).
fn ttl_args(options: &AddOptions) -> (String, &'static str) {
    match options.ttl {
        None => (String::new(), ""),
        Some(t @ Ttl::Absolute(_)) => (t.millis().to_string(), "abs"),
        Some(t @ Ttl::Sliding(_)) => (t.millis().to_string(), "slide"),
    }
}

/// A due time from a script (`false`: none): `None` when it is not one.
fn due_reply(v: &Value) -> Option<Option<u64>> {
    match v {
        Value::Nil => Some(None),
        v => parse::text(v.clone())
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|due| due.is_finite() && *due >= 0.0)
            .map(|due| Some(due as u64)),
    }
}

fn check_fields(fields: &Fields) -> Result<()> {
    if fields.is_empty() {
        return Err(Error::InvalidArgument(
            "a stream entry needs at least one field".into(),
        ));
    }
    Ok(())
}

fn id_reply(v: Value) -> Result<Option<EntryId>> {
    match v {
        Value::Nil => Ok(None),
        v => parse::entry_id(v).map(Some),
    }
}

impl RedisBackend {
    /// Appends entries and applies the TTL; atomic (`MULTI`) when a TTL is given.
    async fn append(
        &self,
        key: &str,
        entries: &[Fields],
        options: &AddOptions,
    ) -> Result<Vec<Option<EntryId>>> {
        entries.iter().try_for_each(check_fields)?;
        let mut pipe = Pipeline::with_capacity(entries.len() + 1);
        if options.ttl.is_some() {
            pipe.atomic();
        }
        for fields in entries {
            pipe.add_command(xadd(key, fields, options));
        }
        if let Some(ttl) = options.ttl {
            pipe.add_command(pexpire(key, ttl)).ignore();
        }
        let replies = self
            .inner
            .commands
            .pipe(&pipe)
            .await
            .map_err(|e| e.map(|e| map_err("XADD", key, e)))?;
        replies
            .into_iter()
            .take(entries.len())
            .map(id_reply)
            .collect()
    }
}

#[async_trait]
impl StreamOps for RedisBackend {
    async fn stream_add(
        &self,
        key: &str,
        fields: Fields,
        options: &AddOptions,
    ) -> Result<Option<EntryId>> {
        if options.ttl.is_none() {
            check_fields(&fields)?;
            return id_reply(self.run("XADD", key, &xadd(key, &fields, options)).await?);
        }
        Ok(self
            .append(key, std::slice::from_ref(&fields), options)
            .await?
            .pop()
            .flatten())
    }

    async fn stream_add_batch(
        &self,
        key: &str,
        entries: Vec<Fields>,
        options: &AddOptions,
    ) -> Result<Vec<Option<EntryId>>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        if options.id.is_some() && entries.len() > 1 {
            return Err(Error::InvalidArgument(
                "an explicit ID is for a single append, not a batch".into(),
            ));
        }
        self.append(key, &entries, options).await
    }

    async fn stream_range(
        &self,
        key: &str,
        start: EntryId,
        end: EntryId,
        count: Option<usize>,
    ) -> Result<Vec<StreamEntry>> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(key).arg(start.to_string()).arg(end.to_string());
        if let Some(n) = count {
            cmd.arg("COUNT").arg(n);
        }
        parse::entries(self.run("XRANGE", key, &cmd).await?)
    }

    async fn stream_info(&self, key: &str) -> Result<Option<StreamInfo>> {
        let cmd = redis::cmd("XINFO").arg("STREAM").arg(key).clone();
        let v = match self.run_on_key("XINFO STREAM", key, &cmd).await {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.map(|e| map_err("XINFO STREAM", key, e))),
        };
        let mut info = StreamInfo {
            length: 0,
            first_id: None,
            last_id: EntryId::ZERO,
        };
        for (k, v) in parse::pairs("XINFO STREAM", v)? {
            match k.as_str() {
                "length" => info.length = int_reply("XINFO length", &v)?.max(0) as u64,
                "first-entry" => info.first_id = parse::entry(v)?.map(|e| e.id),
                "last-generated-id" => info.last_id = parse::entry_id(v)?,
                _ => {}
            }
        }
        Ok(Some(info))
    }

    async fn stream_remove(&self, key: &str, ids: &[EntryId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XDEL");
        cmd.arg(key);
        for id in ids {
            cmd.arg(id.to_string());
        }
        Ok(int_reply("XDEL", &self.run("XDEL", key, &cmd).await?)?.max(0) as u64)
    }

    async fn stream_add_once(
        &self,
        key: &str,
        dedup: &str,
        window: Duration,
        fields: Fields,
        options: &AddOptions,
    ) -> Result<AddedOnce> {
        check_fields(&fields)?;
        let mut inv = self.inner.scripts.stream_add_once.prepare_invoke();
        let (ttl, mode) = ttl_args(options);
        inv.key(key)
            .key(dedup)
            .arg(millis(window))
            .arg(if options.create { "1" } else { "0" })
            .arg(options.max_len.map(|n| n.to_string()).unwrap_or_default())
            .arg(ttl)
            .arg(mode);
        for (name, value) in &fields {
            inv.arg(name).arg(value.as_ref());
        }
        let reply = self.run_script("stream_add_once", key, &inv).await?;
        let bad = || crate::errors::unexpected("stream_add_once", &reply);
        let Value::Array(parts) = &reply else {
            return Err(bad());
        };
        let (Some(id), Some(added)) = (parts.first(), parts.get(1)) else {
            return Err(bad());
        };
        Ok(AddedOnce {
            id: id_reply(id.clone())?,
            added: parse::int(added) == Some(1),
        })
    }

    async fn delay_add(
        &self,
        index: &str,
        data: &str,
        id: &str,
        due_ms: u64,
        fields: Fields,
    ) -> Result<Option<u64>> {
        check_fields(&fields)?;
        let mut inv = self.inner.scripts.delay_add.prepare_invoke();
        inv.key(index)
            .key(data)
            .arg(id)
            .arg(due_ms)
            .arg(pulse::backend::pack_fields(&fields));
        let reply = self.run_script("delay_add", index, &inv).await?;
        due_reply(&reply).ok_or_else(|| crate::errors::unexpected("delay_add", &reply))
    }

    async fn delay_release(
        &self,
        key: &str,
        index: &str,
        data: &str,
        limit: usize,
        options: &AddOptions,
    ) -> Result<DelayRelease> {
        if limit == 0 {
            return Err(Error::InvalidArgument("limit must be at least 1".into()));
        }
        let (ttl, mode) = ttl_args(options);
        let mut inv = self.inner.scripts.delay_release.prepare_invoke();
        inv.key(key)
            .key(index)
            .key(data)
            .arg(limit)
            .arg(options.max_len.map(|n| n.to_string()).unwrap_or_default())
            .arg(ttl)
            .arg(mode);
        let reply = self.run_script("delay_release", key, &inv).await?;
        let bad = || crate::errors::unexpected("delay_release", &reply);
        let Value::Array(parts) = &reply else {
            return Err(bad());
        };
        let [ids, next, now, unreadable] = parts.as_slice() else {
            return Err(bad());
        };
        let released = match ids {
            Value::Array(ids) => ids
                .iter()
                .cloned()
                .map(parse::entry_id)
                .collect::<Result<Vec<_>>>()?,
            _ => return Err(bad()),
        };
        let unreadable = match unreadable {
            Value::Array(ids) => ids
                .iter()
                .map(|id| parse::text(id.clone()).ok_or_else(bad))
                .collect::<Result<Vec<_>>>()?,
            _ => return Err(bad()),
        };
        Ok(DelayRelease {
            released,
            next_due_ms: due_reply(next).ok_or_else(bad)?,
            now_ms: parse::int(now).ok_or_else(bad)?.max(0) as u64,
            unreadable,
        })
    }

    async fn delay_info(&self, index: &str) -> Result<DelayInfo> {
        let mut inv = self.inner.scripts.delay_info.prepare_invoke();
        inv.key(index);
        let reply = self.run_script("delay_info", index, &inv).await?;
        let bad = || crate::errors::unexpected("delay_info", &reply);
        let Value::Array(parts) = &reply else {
            return Err(bad());
        };
        let [count, next] = parts.as_slice() else {
            return Err(bad());
        };
        Ok(DelayInfo {
            count: parse::int(count).ok_or_else(bad)?.max(0) as u64,
            next_due_ms: due_reply(next).ok_or_else(bad)?,
        })
    }

    async fn delay_cancel(&self, index: &str, data: &str, id: &str) -> Result<bool> {
        let mut inv = self.inner.scripts.delay_cancel.prepare_invoke();
        inv.key(index).key(data).arg(id);
        let reply = self.run_script("delay_cancel", index, &inv).await?;
        Ok(int_reply("delay_cancel", &reply)? == 1)
    }

    async fn stream_move(
        &self,
        from: &str,
        id: EntryId,
        to: &str,
        fields: Fields,
    ) -> Result<Option<EntryId>> {
        check_fields(&fields)?;
        let mut inv = self.inner.scripts.stream_move.prepare_invoke();
        inv.key(from).key(to).arg(id.to_string());
        for (name, value) in &fields {
            inv.arg(name).arg(value.as_ref());
        }
        id_reply(self.run_script("stream_move", from, &inv).await?)
    }

    async fn stream_read(
        &self,
        streams: &[(String, EntryId)],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<StreamBatch>> {
        if streams.is_empty() {
            return Err(Error::InvalidArgument("no streams to read".into()));
        }
        if count == 0 {
            return Err(Error::InvalidArgument("count must be at least 1".into()));
        }
        if self.is_cluster() {
            let groups = crate::cluster::by_slot(streams, |(key, _)| key);
            if groups.len() > 1 {
                let backend = self.clone();
                return super::read_across_slots(groups, block, move |group, block| {
                    let backend = backend.clone();
                    async move { backend.read_one_slot(&group, count, block).await }
                })
                .await;
            }
        }
        self.read_one_slot(streams, count, block).await
    }
}

impl RedisBackend {
    /// `XREAD` over streams that share one slot (all of them, on a single server).
    async fn read_one_slot(
        &self,
        streams: &[(String, EntryId)],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<StreamBatch>> {
        let build = |block: Option<Duration>| {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(count);
            if let Some(d) = block {
                cmd.arg("BLOCK").arg(millis(d));
            }
            cmd.arg("STREAMS");
            for (k, _) in streams {
                cmd.arg(k);
            }
            for (_, id) in streams {
                cmd.arg(id.to_string());
            }
            cmd
        };
        let key = &streams[0].0;
        // A non-blocking read shares the command connection; a blocking one never does.
        let Some(block) = block.filter(|d| !d.is_zero()) else {
            return parse::batches(self.run("XREAD", key, &build(None)).await?);
        };
        if self.inner.share_reads {
            // While a merged read is under way, entries already there are read without
            // blocking on a pooled connection (the pool keeps few: such reads return at
            // once), so readers that keep finding entries neither end the merged read of
            // the idle ones nor queue behind one another on one socket. With no merged
            // read under way, the merged read itself returns at once when entries are there.
            if !self.inner.reads.is_idle() {
                let v = self
                    .inner
                    .blocking
                    .cmd(key, &build(None))
                    .await
                    .map_err(|e| e.map(|e| map_err("XREAD", key, e)))?;
                let ready = parse::batches(v)?;
                if !ready.is_empty() {
                    return Ok(ready);
                }
            }
            return crate::readmux::read(&self.inner, streams, count, block).await;
        }
        // Unshared: a dedicated connection in one round trip (it returns at once when data
        // is there), so concurrent readers also parse their replies on separate connections.
        let v = self
            .inner
            .blocking
            .cmd(key, &build(Some(block)))
            .await
            .map_err(|e| e.map(|e| map_err("XREAD", key, e)))?;
        parse::batches(v)
    }
}
