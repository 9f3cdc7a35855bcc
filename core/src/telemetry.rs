//! The metrics Pulse records, through the [`metrics`] facade: the application installs an
//! exporter (Prometheus, StatsD, OpenTelemetry) and sees these series. Each recording
//! builds its label strings and asks the recorder for the series, so a per-event call
//! costs a few allocations even with no recorder installed (known; keeping one handle per
//! stream, sink and pool is the planned fix, see bench row S12). Every name is in this table, and nowhere
//! else — the building blocks call the functions below.
//!
//! | Name | Kind | Labels | What |
//! |---|---|---|---|
//! | `pulse_stream_events_added_total` | counter | `stream` | events appended by [`Stream`](crate::streaming::Stream) |
//! | `pulse_stream_events_delivered_total` | counter | `stream`, `sink` (empty for a reader) | events handed to subscribers (redeliveries included) |
//! | `pulse_stream_events_acked_total` | counter | `stream`, `sink` | events acknowledged |
//! | `pulse_stream_events_redelivered_total` | counter | `stream`, `sink` | events reclaimed from a dead instance or past the ack grace, to be delivered again |
//! | `pulse_sink_pending` | gauge | `stream`, `sink` | delivered, unacknowledged events, as of the sink's last check |
//! | `pulse_rmap_resyncs_total` | counter | `map` | full reloads of a replica (reconnect, gap, failed value read) |
//! | `pulse_pool_dispatch_seconds` | histogram | `pool`, `outcome` (`ok`, `error`) | time from `dispatch_job` to its answer |
//! | `pulse_pool_job_starts_total` | counter | `pool` | jobs started on this node's workers (moves and recoveries included) |
//! | `pulse_pool_job_stops_total` | counter | `pool` | jobs stopped on this node's workers |
//! | `pulse_pool_jobs_running` | gauge | `pool`, `worker` | jobs a worker of this node runs |

use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub(crate) fn events_added(stream: &str, n: usize) {
    counter!("pulse_stream_events_added_total", "stream" => stream.to_owned()).increment(n as u64);
}

pub(crate) fn event_delivered(stream: &str, sink: Option<&str>) {
    counter!(
        "pulse_stream_events_delivered_total",
        "stream" => stream.to_owned(),
        "sink" => sink.unwrap_or_default().to_owned()
    )
    .increment(1);
}

pub(crate) fn events_acked(stream: &str, sink: &str, n: usize) {
    counter!(
        "pulse_stream_events_acked_total",
        "stream" => stream.to_owned(),
        "sink" => sink.to_owned()
    )
    .increment(n as u64);
}

pub(crate) fn events_redelivered(stream: &str, sink: &str, n: usize) {
    counter!(
        "pulse_stream_events_redelivered_total",
        "stream" => stream.to_owned(),
        "sink" => sink.to_owned()
    )
    .increment(n as u64);
}

pub(crate) fn sink_pending(stream: &str, sink: &str, pending: u64) {
    gauge!("pulse_sink_pending", "stream" => stream.to_owned(), "sink" => sink.to_owned())
        .set(pending as f64);
}

pub(crate) fn map_resynced(map: &str) {
    counter!("pulse_rmap_resyncs_total", "map" => map.to_owned()).increment(1);
}

pub(crate) fn dispatched(pool: &str, took: Duration, ok: bool) {
    histogram!(
        "pulse_pool_dispatch_seconds",
        "pool" => pool.to_owned(),
        "outcome" => if ok { "ok" } else { "error" }
    )
    .record(took.as_secs_f64());
}

pub(crate) fn job_started(pool: &str, worker: &str) {
    counter!("pulse_pool_job_starts_total", "pool" => pool.to_owned()).increment(1);
    gauge!("pulse_pool_jobs_running", "pool" => pool.to_owned(), "worker" => worker.to_owned())
        .increment(1.0);
}

pub(crate) fn job_stopped(pool: &str, worker: &str) {
    counter!("pulse_pool_job_stops_total", "pool" => pool.to_owned()).increment(1);
    gauge!("pulse_pool_jobs_running", "pool" => pool.to_owned(), "worker" => worker.to_owned())
        .decrement(1.0);
}
