//! The table rows of S1-S8: each scenario run on the Redis backend (a single server or a
//! cluster) against the raw baseline of the same run, and on the memory backend against
//! the Redis-backend figure.

use std::sync::Arc;

use pulse::{streaming::SinkOptions, Backend};

use crate::{
    raw,
    scenarios::*,
    stats::{fmt_dur, fmt_rate, rate, Row, Samples, Target},
    Size,
};

/// The Redis row of a latency scenario: its p50 against the p50 of a raw baseline.
fn latency_row(
    backend: &'static str,
    scenario: &str,
    red: &Figure,
    label: &str,
    raw: &Samples,
    target: Target,
) -> Row {
    let p50 = raw.pct(0.5);
    let ratio = red.latency().map(|l| l.0.as_secs_f64() / p50.as_secs_f64());
    row(
        scenario,
        backend,
        red,
        format!("{label}p50 {}", fmt_dur(p50)),
        ratio,
        target,
    )
}

fn row(
    scenario: &str,
    backend: &'static str,
    fig: &Figure,
    baseline: String,
    ratio: Option<f64>,
    target: Target,
) -> Row {
    Row {
        scenario: scenario.into(),
        backend,
        figure: fig.text(),
        baseline,
        ratio,
        target,
        latency: fig.latency(),
    }
}

/// Runs every scenario (or only `only`, e.g. "S3") on `redis` (labelled `label`: a single
/// server or a cluster, `url` its URL, the raw baselines connecting to the same), and on
/// `memory` when given.
pub(crate) async fn run_all(
    url: &str,
    label: &'static str,
    redis: Arc<dyn Backend>,
    memory: Option<Arc<dyn Backend>>,
    size: Size,
    only: Option<&str>,
) -> Vec<Row> {
    let want = |s: &str| only.is_none_or(|o| o.eq_ignore_ascii_case(s));
    let mut rows = Vec::new();
    let second: Arc<dyn Backend> = Arc::new(
        pulse_redis::RedisBackend::connect(url)
            .await
            .expect("connect"),
    );
    let tag = || format!("raw-{:x}", pulse::backend::new_epoch());
    // Issue 14's targets for the memory backend: 10x the Redis backend where the Redis
    // backend spends one round trip per operation (latency rows), 3x where it already
    // pipelines or batches (throughput rows).
    let memory_vs = |rows: &mut Vec<Row>, name: &str, mem: Figure, red: &Figure| {
        let r = mem.times_better_than(red);
        let target = match mem {
            Figure::Latency(_) => Target::AtLeast(10.0),
            Figure::Rate(_) => Target::AtLeast(3.0),
        };
        rows.push(row(
            name,
            "memory",
            &mem,
            format!("redis backend {}", red.text()),
            Some(r),
            target,
        ));
    };
    if want("S1") {
        let (n, d) = raw::append_many(url, &tag(), size.events).await;
        let raw_rate = rate(n, d);
        let red = s1_append_many(&redis, size).await;
        let r = red.rate();
        rows.push(row(
            "S1 stream append, 8 producers x 100 in flight",
            label,
            &red,
            fmt_rate(raw_rate),
            Some(r / raw_rate),
            Target::AtLeast(0.8),
        ));
        let script_before = raw::dedup_adds(url, size.events).await;
        let dedup = s1_dedup(&redis, size).await;
        let rd = dedup.rate();
        rows.push(row(
            "S1 append with a dedup key each, 8 producers x 100 in flight",
            label,
            &dedup,
            format!("XADD pipelined {}", fmt_rate(raw_rate)),
            Some(rd / raw_rate),
            Target::AtLeast(0.8),
        ));
        // The same add's script called raw: what Pulse costs around the one atomic step.
        // Before and after, averaged: one side alone swings 2x on this machine.
        let script = (script_before + raw::dedup_adds(url, size.events).await) / 2.0;
        rows.push(row(
            "S1 append with a dedup key each, against its script called raw",
            label,
            &dedup,
            format!("script pipelined {}", fmt_rate(script)),
            Some(rd / script),
            Target::AtLeast(0.8),
        ));
        if let Some(memory) = &memory {
            memory_vs(
                &mut rows,
                "S1 stream append, 8 producers x 100 in flight",
                s1_append_many(memory, size).await,
                &red,
            );
        }
    }
    let raw_xadd = raw::append_one(url, &tag(), size.samples).await;
    if want("S2") {
        let red = s2_append_one(&redis, size).await;
        rows.push(latency_row(
            label,
            "S2 stream append, one awaited at a time",
            &red,
            "",
            &raw_xadd,
            Target::AtMost(1.2),
        ));
        if let Some(memory) = &memory {
            memory_vs(
                &mut rows,
                "S2 stream append, one awaited at a time",
                s2_append_one(memory, size).await,
                &red,
            );
        }
    }
    if want("S3") {
        let key = tag();
        raw::append_many(url, &key, size.events).await;
        let raw_rate = rate(
            size.events / 800 * 800,
            raw::consume_ack(url, &key, size.events / 800 * 800).await,
        );
        let red = s3_sink(&redis, size).await;
        let r = red.rate();
        rows.push(row(
            "S3 sink consume + ack, one member",
            label,
            &red,
            fmt_rate(raw_rate),
            Some(r / raw_rate),
            Target::AtLeast(0.9),
        ));
        if let Some(memory) = &memory {
            memory_vs(
                &mut rows,
                "S3 sink consume + ack, one member",
                s3_sink(memory, size).await,
                &red,
            );
        }
        let policy = SinkOptions::default()
            .with_max_deliveries(5)
            .with_redelivery_backoff(
                std::time::Duration::from_secs(1),
                2.0,
                std::time::Duration::from_secs(60),
            );
        let red = s3_sink_with(&redis, size, policy).await;
        let r = red.rate();
        rows.push(row(
            "S3 sink consume + ack, max_deliveries and back-off set",
            label,
            &red,
            fmt_rate(raw_rate),
            Some(r / raw_rate),
            Target::AtLeast(0.9),
        ));
    }
    if want("S4") {
        let key = tag();
        let (n, _) = raw::append_many(url, &key, size.events).await;
        let raw_rate = rate(n * 4, raw::fan_out(url, &key, n).await);
        let red = s4_fan_out(&redis, size).await;
        let r = red.rate();
        rows.push(row(
            "S4 reader fan-out, 4 readers",
            label,
            &red,
            fmt_rate(raw_rate),
            Some(r / raw_rate),
            Target::AtLeast(0.8),
        ));
        if let Some(memory) = &memory {
            memory_vs(
                &mut rows,
                "S4 reader fan-out, 4 readers",
                s4_fan_out(memory, size).await,
                &red,
            );
        }
    }
    if want("S5") {
        let raw_pub = raw::publish_latency(url, &tag(), size.samples).await;
        let red = s5_propagation(&redis, &second, size).await;
        rows.push(latency_row(
            label,
            "S5 rmap write seen by another replica",
            &red,
            "publish ",
            &raw_pub,
            Target::AtMost(1.5),
        ));
        if let Some(memory) = &memory {
            memory_vs(
                &mut rows,
                "S5 rmap write seen by another replica",
                s5_propagation(memory, memory, size).await,
                &red,
            );
        }
        let raw_rate = rate(
            size.events / 800 * 800,
            raw::evalsha_writes(url, &tag(), size.events).await,
        );
        let red = s5_writers(&redis, size).await;
        let r = red.rate();
        rows.push(row(
            "S5 rmap concurrent writers",
            label,
            &red,
            format!("EVALSHA {}", fmt_rate(raw_rate)),
            Some(r / raw_rate),
            Target::AtLeast(0.8),
        ));
        if let Some(memory) = &memory {
            memory_vs(
                &mut rows,
                "S5 rmap concurrent writers",
                s5_writers(memory, size).await,
                &red,
            );
        }
    }
    if want("S6") {
        let mut backends = vec![(label, &redis)];
        backends.extend(memory.iter().map(|m| ("memory", m)));
        for (backend, b) in backends {
            let (fig, plain) = s6_reads(b, size).await;
            let r = fig.rate();
            rows.push(row(
                &format!("S6 rmap local read, {}-entry map", size.map_entries),
                backend,
                &fig,
                format!("plain HashMap {}", fmt_rate(plain)),
                Some(r / plain),
                Target::AtLeast(0.8),
            ));
        }
    }
    if want("S7") {
        let red = s7_dispatch_latency(&redis, size).await;
        rows.push(latency_row(
            label,
            "S7 pool dispatch-to-start, one in flight",
            &red,
            "XADD ",
            &raw_xadd,
            Target::AtMost(3.0),
        ));
        if let Some(memory) = &memory {
            memory_vs(
                &mut rows,
                "S7 pool dispatch-to-start, one in flight",
                s7_dispatch_latency(memory, size).await,
                &red,
            );
        }
    }
    if want("S8") {
        // Against the same run's raw S1 figure (pipelined XADDs): a dispatch needs several
        // sequential round trips, so the target is a fraction of it.
        let (n, d) = raw::append_many(url, &tag(), size.events).await;
        let raw_rate = rate(n, d);
        let red = s8_dispatch_throughput(&redis, size, 0).await;
        let r = red.rate();
        rows.push(row(
            "S8 pool, 50 dispatchers, 4 workers",
            label,
            &red,
            format!("S1 XADD {}", fmt_rate(raw_rate)),
            Some(r / raw_rate),
            Target::AtLeast(0.065),
        ));
        if let Some(memory) = &memory {
            memory_vs(
                &mut rows,
                "S8 pool, 50 dispatchers, 4 workers",
                s8_dispatch_throughput(memory, size, 0).await,
                &red,
            );
        }
    }
    if want("S14") {
        let red = crate::rpc::s14_round_trip(&redis, size).await;
        rows.push(latency_row(
            label,
            "S14 request/reply round trip, one in flight",
            &red,
            "XADD ",
            &raw_xadd,
            Target::AtMost(2.5),
        ));
        if let Some(memory) = &memory {
            memory_vs(
                &mut rows,
                "S14 request/reply round trip, one in flight",
                crate::rpc::s14_round_trip(memory, size).await,
                &red,
            );
        }
        let key = tag();
        raw::append_many(url, &key, size.events).await;
        let raw_s3 = rate(
            size.events / 800 * 800,
            raw::consume_ack(url, &key, size.events / 800 * 800).await,
        );
        let red = crate::rpc::s14_throughput(&redis, size).await;
        rows.push(row(
            "S14 request/reply, 64 callers, 2 responders",
            label,
            &red,
            format!("S3 consume+ack {}", fmt_rate(raw_s3)),
            Some(red.rate() / raw_s3),
            Target::AtLeast(0.5),
        ));
        if let Some(memory) = &memory {
            memory_vs(
                &mut rows,
                "S14 request/reply, 64 callers, 2 responders",
                crate::rpc::s14_throughput(memory, size).await,
                &red,
            );
        }
    }
    rows
}
