#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The Prometheus wiring of the `metrics_prometheus` example, scraped: every series named
//! in the table of `pulse::telemetry` (read from its source, so the docs and the series
//! cannot drift apart) is on `/metrics` once the workload ran.

use pulse::backend::HashOps;
use std::{
    io::{Read, Write},
    sync::Arc,
    time::Duration,
};

fn documented_names() -> Vec<String> {
    let source = include_str!("../../core/src/telemetry.rs");
    source
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `pulse_"))
        .map(|rest| format!("pulse_{}", rest.split('`').next().unwrap()))
        .collect()
}

fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_series_is_on_the_endpoint() {
    let names = documented_names();
    assert!(names.len() >= 10, "the table was not found: {names:?}");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .unwrap();
    let memory = pulse_memory::MemoryBackend::new();
    let work = pulse_examples::telemetry_workload(Arc::new(memory.clone()), "scrape")
        .await
        .unwrap();
    memory.interrupt_subscriptions(); // the map resyncs
                                      // The backend series come from the Redis backend: the same workload on a private server.
    let server = pulse_conformance::redis_server::private_server(&[]);
    let on_redis = match &server {
        Some(server) => {
            let redis = pulse_redis::RedisBackend::connect(&server.url())
                .await
                .unwrap();
            let work = pulse_examples::telemetry_workload(Arc::new(redis.clone()), "redis")
                .await
                .unwrap();
            // A hash read of the workload's stream: an error reply, for the error series.
            let stream = pulse::streaming::Stream::new(
                Arc::new(redis.clone()),
                "redis-events",
                Default::default(),
            )
            .unwrap();
            assert!(redis.hash_get(stream.key(), "f").await.is_err());
            Some(work)
        }
        None => None,
    };
    let (later, now): (Vec<String>, Vec<String>) = names
        .into_iter()
        .filter(|n| on_redis.is_some() || !n.starts_with("pulse_backend_"))
        .partition(|n| n == "pulse_pool_job_stops_total");
    wait_for(addr, now).await;
    // Job stops show once the node closes and stops its job.
    work.close().await.unwrap();
    if let Some(work) = on_redis {
        work.close().await.unwrap();
    }
    let body = wait_for(addr, later).await;
    assert!(body.contains("stream=\"scrape-events\""), "{body}");
}

/// Scrapes until every name is there; returns the last body.
async fn wait_for(addr: std::net::SocketAddr, names: Vec<String>) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = tokio::task::spawn_blocking(move || scrape(addr))
            .await
            .unwrap();
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !body.contains(n.as_str()))
            .collect();
        if missing.is_empty() {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
