//! The writes of a replicated map: each is one atomic backend operation (sets through the
//! batcher, which joins concurrent ones), checked first against the handle's state, the
//! key rules and the value limit, and traced in a `debug` span named for the operation.
//!
//! Contract with `mod.rs`: writes never touch the replica; the notices they cause reach it
//! through the background task, except that [`Map::set_and_wait`] waits for that.

use super::*;
use crate::spans::{self, traced};

impl Map {
    /// The map's target with a fresh epoch seed: if this write creates the hash (first
    /// write, or after destroy or expiry), the new generation gets a new epoch.
    fn target(&self) -> MapTarget {
        self.inner.target.with_fresh_epoch()
    }

    pub(super) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed {
                what: format!("map {:?}", self.inner.name),
            });
        }
        Ok(())
    }

    fn check_write(&self, key: &str, values: &[&Bytes]) -> Result<()> {
        self.check_open()?;
        validate_map_key(key)?;
        let limit = self.inner.options.max_value_size;
        let size: usize = values.iter().map(|v| v.len()).sum();
        if size > limit {
            return Err(Error::PayloadTooLarge { size, limit });
        }
        Ok(())
    }

    async fn set_with(
        &self,
        key: &str,
        value: Bytes,
        condition: SetCondition,
    ) -> Result<SetOutcome> {
        traced(self.span("set", key), async {
            self.check_write(key, &[&value])?;
            self.inner
                .writes
                .set(MapWrite::new(key, value, condition))
                .await
        })
        .await
    }

    /// The span of write `op` on `key` (empty for the whole map).
    fn span(&self, op: &'static str, key: &str) -> tracing::Span {
        spans::map_op(&self.inner.name, op, key)
    }

    /// Sets `key` to `value`; returns the previous value.
    pub async fn set(&self, key: &str, value: impl Into<Bytes>) -> Result<Option<Bytes>> {
        Ok(self
            .set_with(key, value.into(), SetCondition::Always)
            .await?
            .previous)
    }

    /// Sets `key` if `condition` holds; the outcome carries the previous value and the
    /// revision of the write (to wait for, or compare a replica against).
    pub async fn set_if(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        condition: SetCondition,
    ) -> Result<SetOutcome> {
        self.set_with(key, value.into(), condition).await
    }

    /// Sets `key` only if it is absent; returns whether it was written.
    pub async fn set_if_absent(&self, key: &str, value: impl Into<Bytes>) -> Result<bool> {
        Ok(self
            .set_with(key, value.into(), SetCondition::IfAbsent)
            .await?
            .written)
    }

    /// Sets `key` only if it currently holds `test` (an absent key never matches).
    pub async fn test_and_set(
        &self,
        key: &str,
        test: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<SetOutcome> {
        self.set_with(key, value.into(), SetCondition::IfEqual(test.into()))
            .await
    }

    /// Encodes `value` (versioned postcard frame) and sets it; read it with
    /// [`Map::get_typed`].
    pub async fn set_typed<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<Option<Bytes>> {
        self.set(key, codec::encode(value)?).await
    }

    /// Sets `key` and returns once the local replica reflects the write (or a later one);
    /// returns the previous value.
    ///
    /// Errors: as [`Map::set`], and [`Error::Closed`] if the map closes while waiting.
    pub async fn set_and_wait(&self, key: &str, value: impl Into<Bytes>) -> Result<Option<Bytes>> {
        let out = self
            .set_with(key, value.into(), SetCondition::Always)
            .await?;
        self.wait_for(out.revision).await?;
        Ok(out.previous)
    }

    /// Waits until the local replica reached `target` (or its generation was replaced).
    async fn wait_for(&self, target: Revision) -> Result<()> {
        let mut rx = self.inner.progress.subscribe();
        let start_epoch = rx.borrow().revision.epoch;
        let reached = |p: &Progress| {
            let r = p.revision;
            p.closed
                || (r.epoch == target.epoch && r.rev >= target.rev)
                || (r.epoch != target.epoch && r.epoch != start_epoch && r.epoch != 0)
        };
        let progress = *rx
            .wait_for(reached)
            .await
            .map_err(|_| self.closed_error())?;
        if progress.closed
            && !(progress.revision.epoch == target.epoch && progress.revision.rev >= target.rev)
        {
            return Err(self.closed_error());
        }
        Ok(())
    }

    fn closed_error(&self) -> Error {
        Error::Closed {
            what: format!("map {:?}", self.inner.name),
        }
    }

    /// Deletes `key`; returns the previous value.
    pub async fn delete(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.delete_if(key, DeleteCondition::Always).await?.previous)
    }

    async fn delete_if(&self, key: &str, condition: DeleteCondition) -> Result<DeleteOutcome> {
        traced(self.span("delete", key), async {
            self.check_write(key, &[])?;
            self.inner
                .backend
                .map_delete(&self.target(), key, condition)
                .await
        })
        .await
    }

    /// Deletes `key` only if it currently holds `test`.
    pub async fn test_and_delete(
        &self,
        key: &str,
        test: impl Into<Bytes>,
    ) -> Result<DeleteOutcome> {
        self.delete_if(key, DeleteCondition::IfEqual(test.into()))
            .await
    }

    /// Adds `delta` to the decimal integer at `key` (absent = 0); returns the new value.
    ///
    /// Errors: [`Error::InvalidValue`] when the value is not an integer or would overflow.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        traced(self.span("increment", key), async {
            self.check_write(key, &[])?;
            Ok(self
                .inner
                .backend
                .map_increment(&self.target(), key, delta)
                .await?
                .value)
        })
        .await
    }

    async fn edit(&self, key: &str, edit: ListEdit, items: Vec<Bytes>) -> Result<ListOutcome> {
        let op = match edit {
            ListEdit::Append => "append",
            ListEdit::AppendUnique => "append_unique",
            ListEdit::Remove => "remove_values",
        };
        traced(self.span(op, key), async {
            self.check_write(key, &items.iter().collect::<Vec<_>>())?;
            self.inner
                .backend
                .map_edit_list(&self.target(), key, edit, items)
                .await
        })
        .await
    }

    /// Appends items to the list at `key` (duplicates kept); returns the resulting list.
    ///
    /// Errors: [`Error::InvalidValue`] when the value is not a list.
    pub async fn append<I: Into<Bytes>>(
        &self,
        key: &str,
        items: impl IntoIterator<Item = I>,
    ) -> Result<Vec<Bytes>> {
        let items = items.into_iter().map(Into::into).collect();
        Ok(self
            .edit(key, ListEdit::Append, items)
            .await?
            .list
            .unwrap_or_default())
    }

    /// Appends the items not already in the list at `key`, each once.
    pub async fn append_unique<I: Into<Bytes>>(
        &self,
        key: &str,
        items: impl IntoIterator<Item = I>,
    ) -> Result<ListOutcome> {
        self.edit(
            key,
            ListEdit::AppendUnique,
            items.into_iter().map(Into::into).collect(),
        )
        .await
    }

    /// Removes every occurrence of the items from the list at `key`, deleting the key when
    /// nothing is left.
    pub async fn remove_values<I: Into<Bytes>>(
        &self,
        key: &str,
        items: impl IntoIterator<Item = I>,
    ) -> Result<ListOutcome> {
        self.edit(
            key,
            ListEdit::Remove,
            items.into_iter().map(Into::into).collect(),
        )
        .await
    }

    /// Clears the map. Works on a closed handle (remote clean-up).
    pub async fn reset(&self) -> Result<()> {
        let target = self.target();
        let reset = self.inner.backend.map_reset(&target, Vec::new(), false);
        traced(self.span("reset", ""), reset).await.map(|_| ())
    }

    /// Clears the map only if every `(key, value)` currently holds (absent never matches;
    /// no tests = unconditional); returns whether it did.
    pub async fn test_and_reset<K: Into<String>, V: Into<Bytes>>(
        &self,
        tests: impl IntoIterator<Item = (K, V)>,
    ) -> Result<bool> {
        let tests: Vec<(String, Bytes)> = tests
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        traced(self.span("test_and_reset", ""), async {
            self.check_open()?;
            for (k, _) in &tests {
                validate_map_key(k)?;
            }
            Ok(self
                .inner
                .backend
                .map_reset(&self.target(), tests, false)
                .await?
                .reset)
        })
        .await
    }

    /// Deletes the map from the backend, leaving nothing behind; replicas see a `Reset`
    /// and a later write starts a new generation. Works on a closed handle (remote
    /// clean-up).
    pub async fn destroy(&self) -> Result<()> {
        let target = self.target();
        let destroy = self.inner.backend.map_reset(&target, Vec::new(), true);
        traced(self.span("destroy", ""), destroy).await.map(|_| ())
    }
}
