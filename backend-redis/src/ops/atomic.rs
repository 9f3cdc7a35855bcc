//! [`AtomicOps`]: each operation is one Lua script (see `lua/`). Arguments are validated
//! here before anything is sent; replies are decoded strictly.

use std::time::Duration;

use bytes::Bytes;
use pulse::async_trait;
use pulse::{
    backend::{
        AtomicOps, DeleteCondition, DeleteOutcome, IncrementOutcome, ListEdit, ListOutcome,
        MapTarget, MapWrite, ResetOutcome, Revision, SetCondition, SetOutcome,
    },
    codec,
    keys::validate_map_key,
    Error, Result,
};
use redis::Value;

use super::{int_reply, millis};
use crate::{parse, scripts::map_invocation, RedisBackend};

/// Splits a `{epoch, rev, …}` reply.
fn revision_and_rest(
    what: &'static str,
    v: Value,
) -> Result<(Revision, std::vec::IntoIter<Value>)> {
    let mut parts = parse::array(what, v)?.into_iter();
    let (Some(epoch), Some(rev)) = (parts.next(), parts.next()) else {
        return Err(Error::malformed(what, "missing revision"));
    };
    Ok((revision(what, &epoch, &rev)?, parts))
}

/// A `{epoch, rev}` pair of a script reply.
fn revision(what: &'static str, epoch: &Value, rev: &Value) -> Result<Revision> {
    Ok(Revision {
        epoch: int_reply(what, epoch)?.max(0) as u64,
        rev: int_reply(what, rev)?.max(0) as u64,
    })
}

/// Most writes one `map_set` script call applies: Redis runs a script to completion before
/// serving anyone else, so a large batch is split to keep each call short (~1 ms).
const WRITES_PER_SCRIPT: usize = 256;

impl RedisBackend {
    /// One `map_set` script call applying `writes` in order (keys already validated).
    async fn set_writes(&self, map: &MapTarget, writes: &[MapWrite]) -> Result<Vec<SetOutcome>> {
        let mut inv = map_invocation(&self.inner.scripts.map_set, map);
        for w in writes {
            let (cond, test) = match &w.condition {
                SetCondition::Always => ("always", &b""[..]),
                SetCondition::IfAbsent => ("absent", &b""[..]),
                SetCondition::IfEqual(t) => ("equal", t.as_ref()),
            };
            inv.arg(cond).arg(&w.key).arg(w.value.as_ref()).arg(test);
        }
        let reply = parse::array(
            "map_set",
            self.run_script("map_set", &map.hash, &inv).await?,
        )?;
        if reply.len() != writes.len() * 4 {
            return Err(Error::malformed(
                "map_set",
                format!("{} values for {} writes", reply.len(), writes.len()),
            ));
        }
        let mut parts = reply.into_iter();
        let mut out = Vec::with_capacity(writes.len());
        while let (Some(epoch), Some(rev), Some(written), Some(previous)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            out.push(SetOutcome {
                revision: revision("map_set", &epoch, &rev)?,
                written: flag("map_set", Some(written))?,
                previous: parse::bytes(previous),
            });
        }
        Ok(out)
    }
}

fn flag(what: &'static str, v: Option<Value>) -> Result<bool> {
    Ok(int_reply(what, &v.unwrap_or(Value::Nil))? == 1)
}

#[async_trait]
impl AtomicOps for RedisBackend {
    async fn map_set(
        &self,
        map: &MapTarget,
        key: &str,
        value: Bytes,
        condition: SetCondition,
    ) -> Result<SetOutcome> {
        validate_map_key(key)?;
        let write = MapWrite::new(key, value, condition);
        let mut out = self.set_writes(map, std::slice::from_ref(&write)).await?;
        out.pop()
            .ok_or_else(|| Error::malformed("map_set", "no outcome"))
    }

    async fn map_set_many(
        &self,
        map: &MapTarget,
        writes: Vec<MapWrite>,
    ) -> Result<Vec<SetOutcome>> {
        MapWrite::validate_all(&writes)?;
        let mut out = Vec::with_capacity(writes.len());
        for chunk in writes.chunks(WRITES_PER_SCRIPT) {
            out.extend(self.set_writes(map, chunk).await?);
        }
        Ok(out)
    }

    async fn map_delete(
        &self,
        map: &MapTarget,
        key: &str,
        condition: DeleteCondition,
    ) -> Result<DeleteOutcome> {
        validate_map_key(key)?;
        let mut inv = map_invocation(&self.inner.scripts.map_delete, map);
        match &condition {
            DeleteCondition::Always => inv.arg("always").arg(key),
            DeleteCondition::IfEqual(t) => inv.arg("equal").arg(key).arg(t.as_ref()),
        };
        let (revision, mut rest) = revision_and_rest(
            "map_delete",
            self.run_script("map_delete", &map.hash, &inv).await?,
        )?;
        let deleted = flag("map_delete", rest.next())?;
        let previous = rest.next().and_then(parse::bytes);
        Ok(DeleteOutcome {
            previous,
            deleted,
            revision,
        })
    }

    async fn map_increment(
        &self,
        map: &MapTarget,
        key: &str,
        delta: i64,
    ) -> Result<IncrementOutcome> {
        validate_map_key(key)?;
        let mut inv = map_invocation(&self.inner.scripts.map_increment, map);
        inv.arg(key).arg(delta);
        let reply = self
            .run_script("map_increment", &map.hash, &inv)
            .await
            .map_err(|e| match e {
                Error::InvalidValue { reason, .. } => Error::InvalidValue {
                    key: key.to_owned(),
                    reason,
                },
                e => e,
            })?;
        let (revision, mut rest) = revision_and_rest("map_increment", reply)?;
        let value = rest
            .next()
            .as_ref()
            .and_then(parse::int)
            .ok_or_else(|| Error::malformed("map_increment", "no value"))?;
        Ok(IncrementOutcome { value, revision })
    }

    async fn map_edit_list(
        &self,
        map: &MapTarget,
        key: &str,
        edit: ListEdit,
        items: Vec<Bytes>,
    ) -> Result<ListOutcome> {
        validate_map_key(key)?;
        let mut inv = map_invocation(&self.inner.scripts.map_edit_list, map);
        inv.arg(match edit {
            ListEdit::Append => "append",
            ListEdit::AppendUnique => "unique",
            ListEdit::Remove => "remove",
        })
        .arg(key)
        .arg(map.max_value.min(i64::MAX as usize));
        for item in &items {
            inv.arg(item.as_ref());
        }
        let reply = self
            .run_script("map_edit_list", &map.hash, &inv)
            .await
            .map_err(|e| match e {
                Error::InvalidValue { reason, .. } => Error::InvalidValue {
                    key: key.to_owned(),
                    reason,
                },
                e => e,
            })?;
        let (revision, mut rest) = revision_and_rest("map_edit_list", reply)?;
        let changed = flag("map_edit_list", rest.next())?;
        let exists = flag("map_edit_list", rest.next())?;
        let list = match (exists, rest.next().and_then(parse::bytes)) {
            (true, Some(v)) => Some(codec::decode_list(&v)?),
            (true, None) => return Err(Error::malformed("map_edit_list", "missing list")),
            (false, _) => None,
        };
        Ok(ListOutcome {
            list,
            changed,
            revision,
        })
    }

    async fn map_reset(
        &self,
        map: &MapTarget,
        tests: Vec<(String, Bytes)>,
        destroy: bool,
    ) -> Result<ResetOutcome> {
        for (k, _) in &tests {
            validate_map_key(k)?;
        }
        let mut inv = map_invocation(&self.inner.scripts.map_reset, map);
        inv.arg(if destroy { "destroy" } else { "reset" });
        for (k, v) in &tests {
            inv.arg(k).arg(v.as_ref());
        }
        let (revision, mut rest) = revision_and_rest(
            "map_reset",
            self.run_script("map_reset", &map.hash, &inv).await?,
        )?;
        Ok(ResetOutcome {
            reset: flag("map_reset", rest.next())?,
            revision,
        })
    }

    async fn lease_acquire(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let mut inv = self.inner.scripts.lease_acquire.prepare_invoke();
        inv.key(key).arg(holder).arg(millis(ttl));
        Ok(int_reply(
            "lease_acquire",
            &self.run_script("lease_acquire", key, &inv).await?,
        )? == 1)
    }

    async fn lease_release(&self, key: &str, holder: &str) -> Result<bool> {
        let mut inv = self.inner.scripts.lease_release.prepare_invoke();
        inv.key(key).arg(holder);
        Ok(int_reply(
            "lease_release",
            &self.run_script("lease_release", key, &inv).await?,
        )? == 1)
    }
}
