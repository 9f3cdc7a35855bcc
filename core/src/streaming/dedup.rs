//! Idempotent adds: a dedup key names an add, and a second add with the same key inside
//! the stream's window returns the first one's ID instead of adding.
//!
//! The key `<stream key>:dedup:<dedup key>` (in the stream's hash tag) holds the first
//! add's ID and expires after the window; checking it and adding are one atomic backend
//! step (`StreamOps::stream_add_once`), so concurrent adds from many processes add once.

use std::time::Duration;

use super::Stream;
use crate::{Error, Result};

/// Longest dedup key, in bytes.
pub const MAX_DEDUP_KEY: usize = 512;
/// Longest dedup window.
const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The backend key and window for dedup key `key` of `stream`, after checking both.
pub(super) fn target(stream: &Stream, key: &str) -> Result<(String, Duration)> {
    if key.is_empty() || key.len() > MAX_DEDUP_KEY || key.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "a dedup key is 1 to {MAX_DEDUP_KEY} bytes without control characters"
        )));
    }
    let window = stream.options.dedup_window;
    if window.is_zero() || window > MAX_WINDOW {
        return Err(Error::InvalidArgument(
            "a stream's dedup window is 1 ms to 7 days".into(),
        ));
    }
    Ok((stream.sub_key(&format!("dedup:{key}")), window))
}
