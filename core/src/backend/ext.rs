//! Small helpers built on the capability traits, shared by the building blocks.
//!
//! They are generic over the trait they need (not over [`Backend`](super::Backend)) so each
//! is unit-tested against a `mockall` mock of just that trait.

use super::{EntryId, StreamOps};
use crate::error::Result;

/// The last ID ever generated in stream `key` (`0-0` when it does not exist): the position
/// "newest" resolves to, fixed once so nothing added afterwards is skipped.
pub async fn stream_last_id<S: StreamOps + ?Sized>(ops: &S, key: &str) -> Result<EntryId> {
    Ok(ops
        .stream_info(key)
        .await?
        .map(|i| i.last_id)
        .unwrap_or(EntryId::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{
        AddOptions, EntryId, Fields, StreamBatch, StreamEntry, StreamInfo, StreamOps,
    };
    use crate::Error;
    use async_trait::async_trait;
    use std::time::Duration;

    mockall::mock! {
        Streams {}
        #[async_trait]
        impl StreamOps for Streams {
            async fn stream_add(&self, key: &str, fields: Fields, options: &AddOptions)
                -> Result<Option<EntryId>>;
            async fn stream_add_batch(&self, key: &str, entries: Vec<Fields>, options: &AddOptions)
                -> Result<Vec<Option<EntryId>>>;
            async fn stream_range(&self, key: &str, start: EntryId, end: EntryId, count: Option<usize>)
                -> Result<Vec<StreamEntry>>;
            async fn stream_info(&self, key: &str) -> Result<Option<StreamInfo>>;
            async fn stream_remove(&self, key: &str, ids: &[EntryId]) -> Result<u64>;
            async fn stream_move(&self, from: &str, id: EntryId, to: &str, fields: Fields)
                -> Result<Option<EntryId>>;
            async fn stream_add_once(&self, key: &str, dedup: &str, window: Duration, fields: Fields, options: &AddOptions)
                -> Result<crate::backend::AddedOnce>;
            async fn delay_add(&self, index: &str, data: &str, id: &str, due_ms: u64, fields: Fields)
                -> Result<Option<u64>>;
            async fn delay_release(&self, key: &str, index: &str, data: &str, limit: usize, options: &AddOptions)
                -> Result<crate::backend::DelayRelease>;
            async fn delay_info(&self, index: &str) -> Result<crate::backend::DelayInfo>;
            async fn delay_cancel(&self, index: &str, data: &str, id: &str) -> Result<bool>;
            async fn stream_read(&self, streams: &[(String, EntryId)], count: usize, block: Option<Duration>)
                -> Result<Vec<StreamBatch>>;
        }
    }

    #[tokio::test]
    async fn backend_errors_surface_unchanged() {
        let mut w = MockStreams::new();
        w.expect_stream_info()
            .returning(|k| Err(Error::WrongType { key: k.to_owned() }));
        let err = stream_last_id(&w, "h").await.unwrap_err();
        assert!(matches!(err, Error::WrongType { key } if key == "h"));

        let mut s = MockStreams::new();
        s.expect_stream_info()
            .returning(|_| Err(Error::connection("refused")));
        assert!(stream_last_id(&s, "s").await.unwrap_err().is_connection());
    }

    #[tokio::test]
    async fn last_id_of_missing_stream_is_zero() {
        let mut s = MockStreams::new();
        s.expect_stream_info()
            .withf(|k| k == "none")
            .returning(|_| Ok(None));
        s.expect_stream_info()
            .withf(|k| k == "some")
            .returning(|_| {
                Ok(Some(StreamInfo {
                    length: 0,
                    first_id: None,
                    last_id: EntryId::new(5, 1),
                }))
            });
        assert_eq!(stream_last_id(&s, "none").await.unwrap(), EntryId::ZERO);
        assert_eq!(
            stream_last_id(&s, "some").await.unwrap(),
            EntryId::new(5, 1)
        );
    }
}
