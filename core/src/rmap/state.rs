//! What a dashboard or a `pulse map info` shows about a map: [`Map::state`].

use super::Map;
use crate::backend::Revision;

/// A map's name, size and revision as [`Map::state`] reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapState {
    /// The map's name.
    pub name: String,
    /// Number of keys in the local replica.
    pub len: usize,
    /// The revision the local replica reflects.
    pub revision: Revision,
}

impl Map {
    /// Name, size and revision of the local replica, read together (one lock).
    pub fn state(&self) -> MapState {
        let r = self.read();
        MapState {
            name: self.inner.name.clone(),
            len: r.content.len(),
            revision: r.revision,
        }
    }
}
