//! S16, the persistent embedded backend: S1, S3, S5 writers and S8 on a redb file with
//! durability on (an fsync per commit) and off (eventual), beside the memory backend in
//! the same run, each against the bare redb yardstick of this machine — one write
//! transaction per operation, one thread, fsynced or not. A ratio above 1 is what group
//! commit buys: many operations share one transaction.

use std::{sync::Arc, time::Instant};

use pulse::Backend;
use pulse_redb::{Durability, RedbBackend, RedbOptions};

use crate::{
    scenarios::{s1_append_many, s3_sink, s5_writers, s8_dispatch_throughput, Figure},
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
        drop(redb);
        let _ = std::fs::remove_file(&path);
    }
    rows
}

/// Group commit: at least twice the fsynced one-operation transactions (measured: 3.3x
/// for pool dispatch, 20-70x for the stream and map rows).
const DURABLE_TARGET: f64 = 2.0;
/// Without fsyncs the bare transaction is cheap; Pulse's own work (and the memory
/// backend's) is what remains (measured: 0.46x for pool dispatch, 5-40x elsewhere).
const EVENTUAL_TARGET: f64 = 0.3;
