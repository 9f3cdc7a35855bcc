//! Identifiers and epochs: node, worker and consumer ids are ULIDs (time-ordered,
//! 26 characters of Crockford base32, valid names everywhere), epochs are random; both
//! draw from the operating system's random source.
//!
//! Contract: [`new_id`] never returns the same id twice in practice (80 random bits per
//! millisecond) and sorts by creation time across processes; [`random_u64`] is uniformly
//! random. Should the OS refuse randomness (a sandbox without `getrandom`), one warning is
//! logged and the standard library's per-process random hasher keys stand in, so ids stay
//! unique per process rather than the call failing.

use std::{
    hash::{BuildHasher, Hasher},
    sync::Once,
    time::{SystemTime, UNIX_EPOCH},
};

/// Milliseconds since the Unix epoch of `t` (0 before it, saturating far after).
pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A new ULID as text, e.g. `01JDZ6S41TSV4RRFFQ69G5FAVX`.
pub(crate) fn new_id() -> String {
    let ms = epoch_ms(SystemTime::now());
    let random = u128::from(random_u64()) << 64 | u128::from(random_u64());
    ulid::Ulid::from_parts(ms, random).to_string()
}

/// 64 random bits from the OS.
pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(e) => {
            static WARN: Once = Once::new();
            WARN.call_once(|| {
                tracing::warn!(error = %e, "the OS random source failed; ids fall back to the process's hasher keys");
            });
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ulids_valid_as_names_and_distinct() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 26);
            assert!(ulid::Ulid::from_string(id).is_ok(), "{id}");
            crate::keys::validate_name("worker", id).unwrap();
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert_ne!(random_u64(), random_u64());
    }
}
