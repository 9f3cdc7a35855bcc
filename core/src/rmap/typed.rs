//! Local reads that decode a value as what a typed writer put there: the integer of
//! [`Map::increment`], the list of [`Map::append`], the frame of [`Map::set_typed`].
//! Same contract as [`Map::get`] (the local replica, no round trip), plus a typed error
//! when the value is not of that kind.

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::Map;
use crate::{codec, Error, Result};

impl Map {
    /// The value of `key` as the decimal integer [`Map::increment`] keeps; `None` when
    /// absent.
    ///
    /// Errors: [`Error::InvalidValue`] when the value is not a decimal `i64` (the same
    /// values `increment` refuses).
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        std::str::from_utf8(&v)
            .ok()
            .filter(|t| !t.starts_with('+'))
            .and_then(|t| t.parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| Error::InvalidValue {
                key: key.to_owned(),
                reason: "not a decimal integer".to_owned(),
            })
    }

    /// The value of `key` decoded as a list (see [`Map::append`]); `None` when absent.
    ///
    /// Errors: [`Error::Malformed`] when the value is not a list.
    pub fn get_list(&self, key: &str) -> Result<Option<Vec<Bytes>>> {
        self.get(key).map(|v| codec::decode_list(&v)).transpose()
    }

    /// The value of `key` decoded as a `T` written by [`Map::set_typed`].
    ///
    /// Errors: [`Error::Malformed`] when the value is not a `T` frame.
    pub fn get_typed<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get(key)
            .map(|v| codec::decode("map value", &v))
            .transpose()
    }
}
