//! A pool-wide ticker: every node that creates a ticker with the same name takes part, and
//! each tick goes to exactly one of them.
//!
//! Time is cut into slots of `period` (Unix time / period). At each slot boundary every
//! participant tries to take a lease named after the slot; the backend grants it to one.
//! So a slot never ticks twice, whatever the clock skew between hosts (skew only shifts
//! *when* a slot fires). The period is shared in the pool's `tickers` map: a later
//! `new_ticker` with another period changes it for everyone; `stop` removes it and every
//! participant's ticker ends. Ticks go into a bounded queue; when a slow consumer lets it
//! fill, further ticks are counted in [`Ticker::missed`], never silently dropped (W20).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{warn, Instrument};

use super::retry::until_agreed;

use crate::{
    backend::MapTarget,
    keys::{validate_name, Keyspace},
    rmap::{Map, MapOptions},
    Backend, Error, Result,
};

/// One tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The slot number (Unix time divided by the period); unique per tick of a ticker.
    pub slot: u64,
    /// When the slot began.
    pub at: SystemTime,
}

/// A handle on a pool-wide ticker.
#[derive(Debug)]
pub struct Ticker {
    name: String,
    map: Map,
    rx: mpsc::Receiver<Tick>,
    missed: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

fn period_of(map: &Map, name: &str) -> Option<Duration> {
    let v = map.get(name)?;
    let ms: u64 = std::str::from_utf8(&v).ok()?.parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl Ticker {
    pub(crate) async fn start(
        backend: Arc<dyn Backend>,
        keyspace: &Keyspace,
        pool: &str,
        node: &str,
        name: &str,
        period: Duration,
    ) -> Result<Ticker> {
        validate_name("ticker", name)?;
        if period < Duration::from_millis(1) {
            return Err(Error::InvalidArgument(
                "a ticker period must be at least 1 ms".into(),
            ));
        }
        let keys = keyspace.pool_map(pool, "tickers")?;
        let map = Map::join_target(
            backend.clone(),
            &format!("{pool}:tickers"),
            MapTarget::new(keys.hash, keys.channel),
            MapOptions::default().with_keyspace(keyspace.clone()),
        )
        .await?;
        map.set_and_wait(name, (period.as_millis() as u64).to_string())
            .await?;
        let (tx, rx) = mpsc::channel(16);
        let missed = Arc::new(AtomicU64::new(0));
        let lease_prefix = keyspace.pool(pool, &format!("tick:{name}"))?;
        let span =
            tracing::info_span!("pulse.pool.ticker", pool = pool, node = node, ticker = name);
        let task = tokio::spawn(
            run(
                backend,
                map.clone(),
                name.to_owned(),
                node.to_owned(),
                lease_prefix,
                tx,
                missed.clone(),
            )
            .instrument(span),
        );
        Ok(Ticker {
            name: name.to_owned(),
            map,
            rx,
            missed,
            task,
        })
    }

    /// The next tick won by this node; `None` once the ticker is stopped (anywhere) or
    /// closed.
    pub async fn recv(&mut self) -> Option<Tick> {
        self.rx.recv().await
    }

    /// Ticks won by this node but not queued because the queue was full.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Stops this node's participation; the other nodes keep ticking. Idempotent.
    pub async fn close(&self) -> Result<()> {
        self.task.abort();
        self.map.close().await
    }

    /// Stops the ticker on every node.
    pub async fn stop(&self) -> Result<()> {
        self.map.delete(&self.name).await?;
        self.close().await
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    backend: Arc<dyn Backend>,
    map: Map,
    name: String,
    node: String,
    lease_prefix: String,
    tx: mpsc::Sender<Tick>,
    missed: Arc<AtomicU64>,
) {
    loop {
        let Some(period) = period_of(&map, &name) else {
            return;
        }; // stopped remotely
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let p = period.as_millis().max(1) as u64;
        let slot = now.as_millis() as u64 / p + 1;
        let at = Duration::from_millis(slot * p);
        tokio::time::sleep(at.saturating_sub(now)).await;
        if period_of(&map, &name) != Some(period) {
            continue; // stopped or re-timed meanwhile
        }
        let lease = format!("{lease_prefix}:{slot}");
        // The same holder may acquire a lease again, so a failed attempt (its reply lost,
        // maybe after it won) is repeated within the slot: a tick won but not heard of
        // would be lost for every node.
        let ttl = (period * 2).max(Duration::from_secs(1));
        let deadline = tokio::time::Instant::now() + period / 2;
        let won = until_agreed(Some(deadline), period / 8, || {
            backend.lease_acquire(&lease, &node, ttl)
        })
        .await;
        match won {
            Ok(true) => {
                let tick = Tick {
                    slot,
                    at: UNIX_EPOCH + at,
                };
                match tx.try_send(tick) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        missed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            Ok(false) => {}
            Err(e) => {
                warn!(ticker = %name, error = %e, "tick lease failed within the slot; this node skips the tick")
            }
        }
    }
}
