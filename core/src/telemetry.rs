//! The metrics Pulse records, through the [`metrics`] facade: the application installs an
//! exporter (Prometheus, StatsD, OpenTelemetry) and sees these series. Every name is in
//! this table, and nowhere else — the building blocks hold the handles defined below.
//!
//! | Name | Kind | Labels | What |
//! |---|---|---|---|
//! | `pulse_stream_events_added_total` | counter | `stream` | events appended by [`Stream`](crate::streaming::Stream) |
//! | `pulse_stream_events_delayed_total` | counter | `stream` | delayed events accepted by [`Stream::add_delayed`](crate::streaming::Stream::add_delayed), held until due |
//! | `pulse_stream_events_released_total` | counter | `stream` | delayed events this process's mover appended to the stream once due |
//! | `pulse_stream_events_delivered_total` | counter | `stream`, `sink` (empty for a reader) | events handed to subscribers (redeliveries included) |
//! | `pulse_stream_events_acked_total` | counter | `stream`, `sink` | events acknowledged |
//! | `pulse_stream_events_redelivered_total` | counter | `stream`, `sink` | events reclaimed from a dead instance or past the ack grace, to be delivered again |
//! | `pulse_stream_events_dead_lettered_total` | counter | `stream`, `sink` | events moved to the sink's dead letters after `max_deliveries` (or a final `fail`) |
//! | `pulse_rpc_late_replies_total` | counter | | answers to requests nobody waits for any more (late, duplicate, after the caller gave up), dropped |
//! | `pulse_sink_pending` | gauge | `stream`, `sink` | delivered, unacknowledged events, as of the sink's last check |
//! | `pulse_sink_lag` | gauge | `stream`, `sink` | events of the stream not yet delivered to the sink, as of its last check (absent when the backend cannot tell) |
//! | `pulse_rmap_resyncs_total` | counter | `map` | full reloads of a replica (reconnect, gap, failed value read) |
//! | `pulse_rmap_replica_lag_revisions` | gauge | `map` | revisions the replica was behind the backend at its last probe |
//! | `pulse_pool_dispatch_seconds` | histogram | `pool`, `outcome` (`ok`, `error`) | time from `dispatch_job` to its answer |
//! | `pulse_pool_job_starts_total` | counter | `pool` | jobs started on this node's workers (moves and recoveries included) |
//! | `pulse_pool_job_stops_total` | counter | `pool` | jobs stopped on this node's workers |
//! | `pulse_pool_job_moves_total` | counter | `pool` | jobs this node's workers handed to another worker (membership changed) |
//! | `pulse_pool_fences_total` | counter | `pool` | times a worker of this node stopped all its jobs because its liveness may have lapsed |
//! | `pulse_pool_jobs_running` | gauge | `pool`, `worker`, `group` | jobs a worker of this node runs |
//! | `pulse_pool_jobs_waiting` | gauge | `pool` | jobs dispatched but run by no worker, as of this node's last full reconcile pass |
//! | `pulse_backend_op_seconds` | histogram | `backend`, `op` | duration of a backend command that does not block by design (the Redis backend; `op` is the command or script) |
//! | `pulse_backend_errors_total` | counter | `backend`, `op`, `error` ([`Error::kind`]) | backend commands that failed |
//!
//! **Cost.** Each handle (stream, sink member, map, pool, worker, backend operation) asks
//! the recorder for its series once, when it is created, and afterwards a recording is an
//! atomic update: no label strings, no lookup. The flip side: **install the recorder before
//! connecting the backend and creating handles**; handles made before see no recorder and
//! record nothing. Bench row S12 measures the cost with a recorder installed.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::Error;

/// The series of one stream handle.
#[derive(Debug, Clone)]
pub(crate) struct StreamMetrics {
    pub(crate) added: Counter,
    /// Deliveries to readers (`sink` label empty).
    pub(crate) read: Counter,
    /// Delayed events accepted (held until due).
    pub(crate) delayed: Counter,
    /// Delayed events appended to the stream once due.
    pub(crate) released: Counter,
}

impl StreamMetrics {
    pub(crate) fn new(stream: &str) -> Self {
        StreamMetrics {
            added: counter!("pulse_stream_events_added_total", "stream" => stream.to_owned()),
            read: delivered(stream, ""),
            delayed: counter!("pulse_stream_events_delayed_total", "stream" => stream.to_owned()),
            released: counter!("pulse_stream_events_released_total", "stream" => stream.to_owned()),
        }
    }
}

/// Answers to requests nobody waits for any more.
pub(crate) fn rpc_late_replies() -> Counter {
    counter!("pulse_rpc_late_replies_total")
}

fn delivered(stream: &str, sink: &str) -> Counter {
    counter!(
        "pulse_stream_events_delivered_total",
        "stream" => stream.to_owned(),
        "sink" => sink.to_owned()
    )
}

/// The series of one sink on one stream.
#[derive(Debug, Clone)]
pub(crate) struct SinkMetrics {
    pub(crate) delivered: Counter,
    pub(crate) acked: Counter,
    pub(crate) redelivered: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) pending: Gauge,
    pub(crate) lag: Gauge,
}

impl SinkMetrics {
    pub(crate) fn new(stream: &str, sink: &str) -> Self {
        let labels = || [("stream", stream.to_owned()), ("sink", sink.to_owned())];
        SinkMetrics {
            delivered: delivered(stream, sink),
            acked: counter!("pulse_stream_events_acked_total", &labels()),
            redelivered: counter!("pulse_stream_events_redelivered_total", &labels()),
            dead_lettered: counter!("pulse_stream_events_dead_lettered_total", &labels()),
            pending: gauge!("pulse_sink_pending", &labels()),
            lag: gauge!("pulse_sink_lag", &labels()),
        }
    }
}

/// The series of one replicated map.
#[derive(Debug, Clone)]
pub(crate) struct MapMetrics {
    pub(crate) resyncs: Counter,
    pub(crate) lag: Gauge,
}

impl MapMetrics {
    pub(crate) fn new(map: &str) -> Self {
        MapMetrics {
            resyncs: counter!("pulse_rmap_resyncs_total", "map" => map.to_owned()),
            lag: gauge!("pulse_rmap_replica_lag_revisions", "map" => map.to_owned()),
        }
    }
}

/// The series of one pool node.
#[derive(Debug, Clone)]
pub(crate) struct PoolMetrics {
    pool: String,
    dispatch_ok: Histogram,
    dispatch_error: Histogram,
    pub(crate) starts: Counter,
    pub(crate) stops: Counter,
    pub(crate) moves: Counter,
    pub(crate) fences: Counter,
    pub(crate) waiting: Gauge,
}

impl PoolMetrics {
    pub(crate) fn new(pool: &str) -> Self {
        let dispatch = |outcome: &'static str| histogram!("pulse_pool_dispatch_seconds", "pool" => pool.to_owned(), "outcome" => outcome);
        PoolMetrics {
            pool: pool.to_owned(),
            dispatch_ok: dispatch("ok"),
            dispatch_error: dispatch("error"),
            starts: counter!("pulse_pool_job_starts_total", "pool" => pool.to_owned()),
            stops: counter!("pulse_pool_job_stops_total", "pool" => pool.to_owned()),
            moves: counter!("pulse_pool_job_moves_total", "pool" => pool.to_owned()),
            fences: counter!("pulse_pool_fences_total", "pool" => pool.to_owned()),
            waiting: gauge!("pulse_pool_jobs_waiting", "pool" => pool.to_owned()),
        }
    }

    pub(crate) fn dispatched(&self, took: Duration, ok: bool) {
        let h = if ok {
            &self.dispatch_ok
        } else {
            &self.dispatch_error
        };
        h.record(took.as_secs_f64());
    }

    /// The running-jobs gauge of worker `worker`.
    pub(crate) fn running(&self, worker: &str, group: &str) -> Gauge {
        gauge!("pulse_pool_jobs_running", "pool" => self.pool.clone(), "worker" => worker.to_owned(), "group" => group.to_owned())
    }
}

/// Operation latency and errors of one backend, for backend implementations: keep one per
/// connected backend and call [`BackendMetrics::record`] after each command.
///
/// ```
/// use std::time::Instant;
/// let metrics = pulse::telemetry::BackendMetrics::new("mystore");
/// let started = Instant::now();
/// let result: pulse::Result<()> = Ok(());
/// metrics.record("GET", started, result.as_ref().err());
/// ```
#[derive(Debug)]
pub struct BackendMetrics {
    backend: &'static str,
    latency: Mutex<HashMap<&'static str, Histogram>>,
}

impl BackendMetrics {
    /// The series of the backend named `backend` (the `backend` label).
    pub fn new(backend: &'static str) -> Self {
        BackendMetrics {
            backend,
            latency: Mutex::new(HashMap::new()),
        }
    }

    /// Records that operation `op`, started at `started`, ended (with `error` if it
    /// failed): its duration in `pulse_backend_op_seconds`, and a failure in
    /// `pulse_backend_errors_total`.
    pub fn record(&self, op: &'static str, started: Instant, error: Option<&Error>) {
        let took = started.elapsed().as_secs_f64();
        let histogram = {
            let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
            latency
                .entry(op)
                .or_insert_with(|| {
                    histogram!("pulse_backend_op_seconds", "backend" => self.backend, "op" => op)
                })
                .clone()
        };
        histogram.record(took);
        if let Some(e) = error {
            counter!(
                "pulse_backend_errors_total",
                "backend" => self.backend,
                "op" => op,
                "error" => e.kind()
            )
            .increment(1);
        }
    }
}
