//! What exists in a keyspace — its streams, maps and pools, each with a few cheap figures —
//! for `pulse stream|map|pool ls` and the gateway's `GET /v1/streams|maps|pools`.
//!
//! Names come from [`Keyspace::list`] (a walk over the store's keys: an operator's tool);
//! the figures from one or two reads per name, without joining a map or a pool. Foreign
//! data under one of our keys is listed with its figures left out and an `error` saying
//! so, never a failure of the whole listing.

use pulse::{
    keys::{Family, Keyspace},
    Backend, Error, Result,
};
use serde::Serialize;
use utoipa::ToSchema;

/// The default and the largest number of names one listing returns.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest limit the gateway accepts.
pub const MAX_LIMIT: usize = 100_000;

/// Said of a key that holds another type than ours.
const FOREIGN: &str = "the key holds data of another type";

/// One stream.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StreamRow {
    /// The stream's name.
    pub name: String,
    /// Its number of events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// The last ID it generated (`0-0` when it never had an event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_id: Option<String>,
    /// Why the figures are missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One map.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MapRow {
    /// The map's name.
    pub name: String,
    /// Its number of keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// Why the figure is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One pool.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PoolRow {
    /// The pool's name.
    pub name: String,
    /// Its registered workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<u64>,
    /// Its jobs, running or waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u64>,
    /// Why a figure is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The first `limit` streams by name, with their lengths and last IDs.
pub async fn streams(backend: &dyn Backend, ks: &Keyspace, limit: usize) -> Result<Vec<StreamRow>> {
    let mut rows = Vec::new();
    for name in ks.list(backend, Family::Streams, limit).await? {
        let row = match backend.stream_info(&ks.stream(&name)?).await {
            Ok(Some(info)) => StreamRow {
                name,
                length: Some(info.length),
                last_id: Some(info.last_id.to_string()),
                error: None,
            },
            Ok(None) => continue, // deleted since it was listed
            Err(Error::WrongType { .. }) => StreamRow {
                name,
                length: None,
                last_id: None,
                error: Some(FOREIGN.into()),
            },
            Err(e) => return Err(e),
        };
        rows.push(row);
    }
    Ok(rows)
}

/// The first `limit` maps by name, with their key counts.
pub async fn maps(backend: &dyn Backend, ks: &Keyspace, limit: usize) -> Result<Vec<MapRow>> {
    let mut rows = Vec::new();
    for name in ks.list(backend, Family::Maps, limit).await? {
        let keys = map_len(backend, &ks.map(&name)?.hash).await?;
        let error = keys.is_none().then(|| FOREIGN.to_owned());
        rows.push(MapRow { name, keys, error });
    }
    Ok(rows)
}

/// The first `limit` pools by name, with their worker and job counts.
pub async fn pools(backend: &dyn Backend, ks: &Keyspace, limit: usize) -> Result<Vec<PoolRow>> {
    let mut rows = Vec::new();
    for name in ks.list(backend, Family::Pools, limit).await? {
        let workers = map_len(backend, &ks.pool_map(&name, "workers")?.hash).await?;
        let jobs = map_len(backend, &ks.pool_map(&name, "jobs")?.hash).await?;
        let error = (workers.is_none() || jobs.is_none()).then(|| FOREIGN.to_owned());
        rows.push(PoolRow {
            name,
            workers,
            jobs,
            error,
        });
    }
    Ok(rows)
}

/// How many user keys the map hash `hash` holds: its length less the bookkeeping fields
/// (`=epoch`, `=rev`, `=kind`; see the backend contract). `None` when the key holds
/// another type.
async fn map_len(backend: &dyn Backend, hash: &str) -> Result<Option<u64>> {
    let len = match backend.hash_len(hash).await {
        Err(Error::WrongType { .. }) => return Ok(None),
        len => len?,
    };
    let marks = backend
        .hash_get_fields(hash, &["=epoch", "=rev", "=kind"])
        .await?;
    Ok(Some(
        len.saturating_sub(marks.iter().flatten().count() as u64),
    ))
}
