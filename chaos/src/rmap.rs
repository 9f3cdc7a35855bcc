//! Replicated-map chaos: replica processes mirror one map and print a digest of their
//! content whenever it changes; the harness writes bursts through its own handle right
//! after each fault — every subscription connection killed (`CLIENT KILL TYPE pubsub`), or
//! Redis SIGKILLed and restarted — and measures the time until every replica's digest
//! equals the digest of the map's hash as read raw from Redis.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use pulse::{
    keys::Keyspace,
    rmap::{Map, MapOptions},
};
use std::io::Write as _;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{procs::Proc, role_backend, Fault, Harness};

const MAP: &str = "chaos-map";

/// Settings of a map chaos run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Replica processes.
    pub replicas: usize,
    /// Writes per burst after each fault.
    pub burst: usize,
    /// Rounds of (kill subscriptions, restart Redis).
    pub rounds: usize,
}

/// What the run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each fault and the time from the end of the following write burst until every
    /// replica matched Redis.
    pub faults: Vec<Fault>,
}

impl Report {
    /// True when the replicas converged after every fault.
    pub fn passed(&self) -> bool {
        !self.faults.is_empty() && self.faults.iter().all(|f| f.recovered.is_some())
    }
}

/// An order-independent digest of map content (FNV-1a over the sorted entries).
pub fn digest<'a>(entries: impl Iterator<Item = (&'a str, &'a [u8])>) -> u64 {
    let mut sorted: Vec<(&str, &[u8])> = entries.collect();
    sorted.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in sorted {
        for b in k.bytes().chain([0]).chain(v.iter().copied()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// `pulse-chaos role replica`: joins the map and prints `D <digest> <entries>` on stdout
/// each time its content changes (checked every 20 ms), until SIGTERM.
pub async fn replica_role() -> Result<(), String> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let backend = role_backend().await?;
    let map = crate::retry("join the map", || {
        Map::join(backend.clone(), MAP, MapOptions::default())
    })
    .await?;
    let mut out = std::io::stdout();
    let mut last = None;
    loop {
        let snap = map.snapshot();
        let d = digest(snap.iter().map(|(k, v)| (k.as_str(), v.as_ref())));
        if last != Some(d) {
            last = Some(d);
            let line = format!("D {d} {}\n", snap.len());
            out.write_all(line.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())?;
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    map.close().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The digest of the map's hash as stored in Redis (bookkeeping `=` fields left out).
async fn server_digest(h: &Harness) -> Result<u64, String> {
    let key = Keyspace::default()
        .map(MAP)
        .map_err(|e| e.to_string())?
        .hash;
    let fields = h.hash_get_all(&key).await?;
    Ok(digest(
        fields
            .iter()
            .filter(|(k, _)| !k.starts_with('='))
            .map(|(k, v)| (k.as_str(), v.as_slice())),
    ))
}

/// Writes `n` values (and a counter increment per ten), retrying each until Redis takes it.
async fn burst(map: &Map, round: usize, n: usize) -> Result<(), String> {
    for i in 0..n {
        let key = format!("k{}", i % 97);
        let value = Bytes::from(format!("{round}-{i}"));
        crate::retry("map write", || map.set(&key, value.clone())).await?;
        if i % 10 == 0 {
            crate::retry("map increment", || map.increment("counter", 1)).await?;
        }
    }
    Ok(())
}

/// Runs the map chaos.
pub async fn run(h: &Harness, cfg: &Config) -> Result<Report, String> {
    let digests: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut replicas: Vec<Proc> = Vec::new();
    for i in 0..cfg.replicas {
        let name = format!("replica-{i}");
        let env = [("PULSE_REDIS_URL", h.url())];
        let mut p = h
            .spawn("replica", &name, &env, true)
            .map_err(|e| format!("spawn {name}: {e}"))?;
        let stdout = p.take_stdout().ok_or("no stdout")?;
        let digests = digests.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(d) = line
                    .strip_prefix("D ")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|d| d.parse().ok())
                {
                    digests
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.clone(), d);
                }
            }
        });
        replicas.push(p);
    }
    let map = Map::join(h.backend().await?, MAP, MapOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut report = Report::default();
    burst(&map, 0, cfg.burst).await?;
    let converged = converge(h, &digests, cfg.replicas).await?;
    h.say(&format!(
        "rmap: {} replicas in sync after the first burst ({} ms)",
        cfg.replicas,
        converged.map_or(0, |d| d.as_millis())
    ));
    for round in 1..=cfg.rounds {
        for kind in ["kill", "restart"] {
            let what = if kind == "kill" {
                let killed = h.kill_subscriptions().await?;
                format!(
                    "CLIENT KILL TYPE pubsub ({killed} connections), then {} writes",
                    cfg.burst
                )
            } else {
                let down = Duration::from_millis(300 * round as u64);
                h.restart_redis(down).await?;
                format!(
                    "Redis SIGKILL + restart (down {} ms), then {} writes",
                    down.as_millis(),
                    cfg.burst
                )
            };
            burst(&map, round, cfg.burst).await?;
            let recovered = converge(h, &digests, cfg.replicas).await?;
            h.say(&format!(
                "rmap: {what}: {}",
                recovered.map_or("NOT converged in 60 s".to_owned(), |d| format!(
                    "all replicas equal Redis {} ms after the last write",
                    d.as_millis()
                ))
            ));
            let kind = if kind == "kill" {
                "CLIENT KILL TYPE pubsub, then a write burst"
            } else {
                "Redis SIGKILL + restart, then a write burst"
            };
            report.faults.push(Fault {
                kind: kind.to_owned(),
                what,
                recovered,
            });
        }
    }
    map.close().await.map_err(|e| e.to_string())?;
    for mut p in replicas {
        let _ = p.terminate(Duration::from_secs(5)).await;
    }
    Ok(report)
}

/// Waits until every replica reports the server's digest; the time it took (or `None`).
async fn converge(
    h: &Harness,
    digests: &Mutex<HashMap<String, u64>>,
    replicas: usize,
) -> Result<Option<Duration>, String> {
    let began = Instant::now();
    let expected = server_digest(h).await?;
    loop {
        let in_sync = {
            let d = digests.lock().unwrap_or_else(|p| p.into_inner());
            d.len() == replicas && d.values().all(|v| *v == expected)
        };
        if in_sync {
            return Ok(Some(began.elapsed()));
        }
        if began.elapsed() > Duration::from_secs(60) {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::digest;

    #[test]
    fn digest_ignores_order_and_sees_values() {
        let a = digest([("x", &b"1"[..]), ("y", &b"2"[..])].into_iter());
        let b = digest([("y", &b"2"[..]), ("x", &b"1"[..])].into_iter());
        let c = digest([("x", &b"1"[..]), ("y", &b"3"[..])].into_iter());
        let d = digest([("x1", &b""[..])].into_iter());
        let e = digest([("x", &b"1"[..])].into_iter());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(d, e);
    }
}
