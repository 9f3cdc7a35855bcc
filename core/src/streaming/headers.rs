//! Event headers: small string metadata carried with an event to readers and sinks (a
//! content type, a correlation id, a trace context of another system).
//!
//! Each header is one stream field `h:<name>`, so an entry stays readable with
//! `redis-cli` and the event's own fields (`n`, `p`, `t`, `tp`) cannot clash with one.
//!
//! Rules, checked when adding (one rule each, named in the error): at most
//! [`MAX_HEADERS`] headers; a name of 1 to [`MAX_HEADER_NAME`] bytes of letters, digits,
//! `-`, `_` and `.`, unique within the event; a value of at most [`MAX_HEADER_VALUE`]
//! bytes; at most [`MAX_HEADERS_TOTAL`] bytes of names and values in all. Reading is
//! lenient: a foreign `h:` field whose value is not UTF-8 is left out, never an error.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::{backend::StreamEntry, Error, Result};

/// Most headers one event carries.
pub const MAX_HEADERS: usize = 32;
/// Longest header name, in bytes.
pub const MAX_HEADER_NAME: usize = 64;
/// Longest header value, in bytes.
pub const MAX_HEADER_VALUE: usize = 4096;
/// Most bytes of header names and values in one event.
pub const MAX_HEADERS_TOTAL: usize = 16 * 1024;

/// The field prefix of a header.
const PREFIX: &str = "h:";

fn invalid(why: String) -> Error {
    Error::InvalidArgument(format!("event headers: {why}"))
}

/// Checks `headers` against the rules (module doc) and returns their stream fields.
pub(crate) fn fields(headers: &[(String, String)]) -> Result<Vec<(String, Bytes)>> {
    if headers.len() > MAX_HEADERS {
        return Err(invalid(format!(
            "{} headers, at most {MAX_HEADERS} allowed",
            headers.len()
        )));
    }
    let mut total = 0;
    let mut out: Vec<(String, Bytes)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let good_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.bytes().all(good_char) {
            return Err(invalid(format!(
                "the name {name:?} is not 1 to {MAX_HEADER_NAME} letters, digits, '-', '_' or '.'"
            )));
        }
        if value.len() > MAX_HEADER_VALUE {
            return Err(invalid(format!(
                "the value of {name:?} is {} bytes, at most {MAX_HEADER_VALUE} allowed",
                value.len()
            )));
        }
        let field = format!("{PREFIX}{name}");
        if out.iter().any(|(f, _)| *f == field) {
            return Err(invalid(format!("{name:?} is given twice")));
        }
        total += name.len() + value.len();
        out.push((field, Bytes::copy_from_slice(value.as_bytes())));
    }
    if total > MAX_HEADERS_TOTAL {
        return Err(invalid(format!(
            "{total} bytes of names and values, at most {MAX_HEADERS_TOTAL} allowed"
        )));
    }
    Ok(out)
}

/// The headers of a stored entry, by name.
pub(crate) fn read(entry: &StreamEntry) -> BTreeMap<String, String> {
    entry
        .fields
        .iter()
        .filter_map(|(field, value)| {
            let name = field.strip_prefix(PREFIX)?;
            let value = std::str::from_utf8(value).ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn refused(headers: Vec<(String, String)>, says: &str) {
        match fields(&headers) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{headers:?}: {other:?}"),
        }
    }

    #[test]
    fn every_rule_is_checked_and_named() {
        assert_eq!(
            fields(&h(&[("content-type", "text/plain")]))
                .map(|f| f.len())
                .ok(),
            Some(1)
        );
        refused(h(&[("", "v")]), "is not 1 to");
        refused(h(&[("a b", "v")]), "is not 1 to");
        refused(h(&[("a:b", "v")]), "is not 1 to");
        refused(h(&[(&"x".repeat(65), "v")]), "is not 1 to");
        refused(h(&[("k", &"v".repeat(4097))]), "at most 4096");
        refused(h(&[("k", "1"), ("k", "2")]), "given twice");
        let many: Vec<(String, String)> =
            (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        refused(many, "at most 32");
        let big: Vec<(String, String)> = (0..5)
            .map(|i| (format!("k{i}"), "v".repeat(4000)))
            .collect();
        refused(big, "at most 16384");
        let fine: Vec<(String, String)> = (0..4)
            .map(|i| (format!("k{i}"), "v".repeat(4000)))
            .collect();
        assert!(fields(&fine).is_ok());
    }
}
