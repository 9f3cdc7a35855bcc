//! S16, the persistent embedded backend: S1-S8 on a redb file with durability on (an
//! fsync per commit) and off (eventual), beside the memory backend in the same run, each
//! against the bare redb yardstick of this machine — one write transaction per
//! operation, one thread, fsynced or not. For throughput rows a ratio above 1 is what
//! group commit buys (many operations share one transaction); latency rows (S2, S7) are
//! the p50 of one operation at a time against one bare transaction (lower is better);
//! S4 (fan-out) and S6 (local reads) do not write, so their yardstick is the memory
//! backend.

use std::{sync::Arc, time::Instant};

use pulse::Backend;
use pulse_redb::{Durability, RedbBackend, RedbOptions};

use crate::{
    scenarios::{
        s1_append_many, s2_append_one, s3_sink, s4_fan_out, s5_writers, s6_reads,
        s7_dispatch_latency, s8_dispatch_throughput, Figure,
    },
    stats::{rate, Row, Target},
    Size,
};

/// A fresh file in a directory of this run.
fn file(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pulse-bench-redb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{tag}.redb"));
    let _ = std::fs::remove_file(&path);
    path
}

/// Bare redb: `n` write transactions of one 100-byte insert each.
fn bare_rate(durable: bool, n: usize) -> f64 {
    let path = file(if durable {
        "bare-durable"
    } else {
        "bare-eventual"
    });
    let db = redb::Database::create(&path).expect("create");
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
    let value = [7u8; 100];
    let start = Instant::now();
    for i in 0..n as u64 {
        let mut txn = db.begin_write().expect("begin");
        if !durable {
            txn.set_durability(redb::Durability::None)
                .expect("durability");
        }
        txn.open_table(table)
            .expect("table")
            .insert(i, value.as_slice())
            .expect("insert");
        txn.commit().expect("commit");
    }
    let r = rate(n, start.elapsed());
    drop(db);
    let _ = std::fs::remove_file(&path);
    r
}

/// The S16 rows.
pub(crate) async fn rows(memory: &Arc<dyn Backend>, size: Size) -> Vec<Row> {
    let n = (size.events / 20).clamp(100, 2000);
    let yardstick = [(true, bare_rate(true, n)), (false, bare_rate(false, n))];
    let mut rows = Vec::new();
    for (durable, bare) in yardstick {
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::Eventual
        };
        let label: &'static str = if durable { "redb" } else { "redb-eventual" };
        let path = file(label);
        let redb: Arc<dyn Backend> = Arc::new(
            RedbBackend::open(&path, RedbOptions::default().with_durability(durability))
                .await
                .expect("open"),
        );
        let scenarios: [(&str, Figure, Figure); 4] = [
            (
                "S16 stream append, 8 producers x 100 in flight",
                s1_append_many(&redb, size).await,
                s1_append_many(memory, size).await,
            ),
            (
                "S16 sink consume + ack",
                s3_sink(&redb, size).await,
                s3_sink(memory, size).await,
            ),
            (
                "S16 map writers",
                s5_writers(&redb, size).await,
                s5_writers(memory, size).await,
            ),
            (
                "S16 pool dispatch",
                s8_dispatch_throughput(&redb, size, 0).await,
                s8_dispatch_throughput(memory, size, 0).await,
            ),
        ];
        for (name, on_redb, on_memory) in scenarios {
            rows.push(Row {
                scenario: name.into(),
                backend: label,
                figure: on_redb.text(),
                baseline: format!(
                    "bare redb txn {} (memory {})",
                    crate::stats::fmt_rate(bare),
                    on_memory.text()
                ),
                ratio: Some(on_redb.rate() / bare.max(1e-9)),
                target: Target::AtLeast(if durable {
                    DURABLE_TARGET
                } else {
                    EVENTUAL_TARGET
                }),
                latency: None,
            });
        }
        let bare_latency = std::time::Duration::from_secs_f64(1.0 / bare.max(1e-9));
        for (name, f) in [
            ("S16 append one at a time", s2_append_one(&redb, size).await),
            (
                "S16 dispatch latency",
                s7_dispatch_latency(&redb, size).await,
            ),
        ] {
            let p50 = f.latency().map_or(bare_latency, |(p50, _, _)| p50);
            rows.push(Row {
                scenario: name.into(),
                backend: label,
                figure: f.text(),
                baseline: format!("bare redb txn {bare_latency:.2?}"),
                ratio: Some(p50.as_secs_f64() / bare_latency.as_secs_f64().max(1e-9)),
                target: Target::AtMost(if durable {
                    LATENCY_TARGET
                } else {
                    EVENTUAL_LATENCY_TARGET
                }),
                latency: f.latency(),
            });
        }
        for (name, on_redb, on_memory) in [
            (
                "S16 fan-out to readers",
                s4_fan_out(&redb, size).await,
                s4_fan_out(memory, size).await,
            ),
            (
                "S16 local map reads",
                s6_reads(&redb, size).await.0,
                s6_reads(memory, size).await.0,
            ),
        ] {
            rows.push(Row {
                scenario: name.into(),
                backend: label,
                figure: on_redb.text(),
                baseline: format!("memory {}", on_memory.text()),
                ratio: Some(on_redb.rate() / on_memory.rate().max(1e-9)),
                target: Target::AtLeast(READS_TARGET),
                latency: None,
            });
        }
        drop(redb);
        let _ = std::fs::remove_file(&path);
    }
    rows
}

/// Group commit: at least the fsynced one-operation transactions (measured: 1.3x-3.3x for
/// pool dispatch, whose operations mostly wait on each other; 20-70x for the stream and
/// map rows).
const DURABLE_TARGET: f64 = 1.0;
/// Without fsyncs the bare transaction is cheap; Pulse's own work (and the memory
/// backend's) is what remains (measured: 0.46x for pool dispatch, 5-40x elsewhere).
const EVENTUAL_TARGET: f64 = 0.3;
/// One operation at a time waits for its own commit: at most this many bare fsynced
/// transactions' time (an operation is a transaction plus the hand-off to the committer).
const LATENCY_TARGET: f64 = 3.0;
/// Without an fsync to wait for, one operation costs about one bare transaction or less
/// (measured: 0.06x for an append, 0.9x for a dispatch).
const EVENTUAL_LATENCY_TARGET: f64 = 2.0;
/// Paths that do not write run the memory backend's code: most of its speed.
const READS_TARGET: f64 = 0.5;
