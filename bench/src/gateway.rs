//! S15, the gateway (`pulse serve`): what HTTP + JSON + SSE cost over calling the library
//! directly, both sides in this process on the same backend — publish one event per
//! request from 64 clients, publish batches of 100 from 8, and deliver a backlog to one
//! SSE subscriber against one library reader. The gateway is served in-process on a free
//! loopback port and driven with `reqwest` (kept-alive connections, as a real client).

use std::{sync::Arc, time::Instant};

use futures_util::{future::join_all, StreamExt};
use pulse::{
    keys::Keyspace,
    streaming::{NewEvent, ReaderOptions, Start, Stream, StreamOptions},
    Backend,
};
use pulse_cli::gateway::{router, AppState, ServeOptions};
use serde_json::json;

use crate::{
    scenarios::Figure,
    stats::{rate, Row, Target},
    Size,
};

/// Which side of a row is measured.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Side {
    /// The library called directly.
    Library,
    /// The same operation through the gateway.
    Gateway,
}

/// A stream of its own, and a gateway over its keyspace.
struct Bench {
    stream: Stream,
    base: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Bench {
    async fn new(b: &Arc<dyn Backend>) -> Bench {
        let ks = Keyspace::new(format!("s15-{:x}", pulse::backend::new_epoch())).expect("ks");
        let stream = Stream::new(
            b.clone(),
            "s",
            StreamOptions::default().with_keyspace(ks.clone()),
        )
        .expect("stream");
        let options = ServeOptions {
            listen: "127.0.0.1:0".parse().expect("address"),
            token: None,
            max_body: 1 << 20,
            ack_grace: std::time::Duration::from_secs(30),
            read_only: false,
        };
        let app = router(AppState::new(b.clone(), ks, &options), options.max_body);
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Bench {
            stream,
            base,
            http: reqwest::Client::new(),
            server,
        }
    }

    fn events_url(&self) -> String {
        format!("{}/v1/streams/s/events", self.base)
    }

    async fn close(self) {
        self.server.abort();
        self.stream.destroy().await.expect("destroy");
    }
}

/// One POST, checked.
async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) {
    let r = http.post(url).json(body).send().await.expect("publish");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED, "publish");
}

/// 64 clients, each publishing one event at a time.
pub(crate) async fn s15_publish(b: &Arc<dyn Backend>, size: Size, side: Side) -> Figure {
    let bench = Bench::new(b).await;
    let per = (size.events / 10 / 64).max(1);
    let body = json!({"name": "e", "payload": "payload"});
    let start = Instant::now();
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (s, http, url, body) = (
                bench.stream.clone(),
                bench.http.clone(),
                bench.events_url(),
                body.clone(),
            );
            tokio::spawn(async move {
                for _ in 0..per {
                    match side {
                        Side::Library => {
                            s.add("e", "payload").await.expect("add");
                        }
                        Side::Gateway => post(&http, &url, &body).await,
                    }
                }
            })
        })
        .collect();
    for c in join_all(clients).await {
        c.expect("client");
    }
    let f = Figure::Rate(rate(per * 64, start.elapsed()));
    bench.close().await;
    f
}

/// The HTTP floor: 64 clients asking `GET /healthz` one at a time, the most requests
/// per second this server and client can exchange with no store behind them.
pub(crate) async fn s15_http_floor(b: &Arc<dyn Backend>, size: Size) -> Figure {
    let bench = Bench::new(b).await;
    let per = (size.events / 10 / 64).max(1);
    let url = format!("{}/healthz", bench.base);
    let start = Instant::now();
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (http, url) = (bench.http.clone(), url.clone());
            tokio::spawn(async move {
                for _ in 0..per {
                    let r = http.get(&url).send().await.expect("healthz");
                    assert!(r.status().is_success(), "healthz");
                    r.bytes().await.expect("body");
                }
            })
        })
        .collect();
    for c in join_all(clients).await {
        c.expect("client");
    }
    let f = Figure::Rate(rate(per * 64, start.elapsed()));
    bench.close().await;
    f
}

/// 8 clients, each publishing batches of 100 events, one batch at a time.
pub(crate) async fn s15_publish_batch(b: &Arc<dyn Backend>, size: Size, side: Side) -> Figure {
    let bench = Bench::new(b).await;
    let per = (size.events / 8 / 100).max(1);
    let body = json!((0..100)
        .map(|_| json!({"name": "e", "payload": "payload"}))
        .collect::<Vec<_>>());
    let start = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (s, http, url, body) = (
                bench.stream.clone(),
                bench.http.clone(),
                bench.events_url(),
                body.clone(),
            );
            tokio::spawn(async move {
                for _ in 0..per {
                    match side {
                        Side::Library => {
                            let batch = (0..100).map(|_| NewEvent::new("e", "payload")).collect();
                            s.add_batch(batch).await.expect("add");
                        }
                        Side::Gateway => post(&http, &url, &body).await,
                    }
                }
            })
        })
        .collect();
    for c in join_all(clients).await {
        c.expect("client");
    }
    let f = Figure::Rate(rate(per * 8 * 100, start.elapsed()));
    bench.close().await;
    f
}

/// A backlog of events delivered to one subscriber from the oldest: a library reader, or
/// an SSE client of the gateway (counting the `id:` lines of the event stream).
pub(crate) async fn s15_sse(b: &Arc<dyn Backend>, size: Size, side: Side) -> Figure {
    let bench = Bench::new(b).await;
    let total = (size.events / 1000).max(1) * 1000;
    for _ in 0..total / 1000 {
        let batch = (0..1000).map(|_| NewEvent::new("e", "payload")).collect();
        bench.stream.add_batch(batch).await.expect("add");
    }
    let start = Instant::now();
    match side {
        Side::Library => {
            let reader = bench
                .stream
                .new_reader(ReaderOptions::default().with_start(Start::Oldest))
                .await
                .expect("reader");
            let mut rx = reader.subscribe().expect("subscribe");
            for _ in 0..total {
                rx.recv().await.expect("event");
            }
            reader.close().await.expect("close");
        }
        Side::Gateway => {
            let url = format!("{}?from=oldest", bench.events_url());
            let response = bench.http.get(url).send().await.expect("subscribe");
            assert_eq!(response.status(), reqwest::StatusCode::OK, "subscribe");
            let mut body = response.bytes_stream();
            let (mut seen, mut partial) = (0, Vec::new());
            while seen < total {
                let chunk = body
                    .next()
                    .await
                    .expect("the event stream ended")
                    .expect("read");
                partial.extend_from_slice(&chunk);
                let Some(end) = partial.iter().rposition(|b| *b == b'\n') else {
                    continue;
                };
                seen += partial[..=end]
                    .split(|b| *b == b'\n')
                    .filter(|line| line.starts_with(b"id:"))
                    .count();
                partial.drain(..=end);
            }
        }
    }
    let f = Figure::Rate(rate(total, start.elapsed()));
    bench.close().await;
    f
}

/// The S15 rows: each gateway figure against the library figure of the same operation,
/// measured back to back.
pub(crate) async fn rows(b: &Arc<dyn Backend>, label: &'static str, size: Size) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut pair = |name: &str, (what, base): (&str, &Figure), gateway: &Figure, at_least: f64| {
        rows.push(Row {
            scenario: name.into(),
            backend: label,
            figure: gateway.text(),
            baseline: format!("{what} {}", base.text()),
            ratio: Some(gateway.rate() / base.rate().max(1e-9)),
            target: Target::AtLeast(at_least),
            latency: None,
        });
    };
    let library = s15_publish(b, size, Side::Library).await;
    let gateway = s15_publish(b, size, Side::Gateway).await;
    let floor = s15_http_floor(b, size).await;
    pair(
        "S15 gateway publish, 64 clients one event at a time",
        ("library", &library),
        &gateway,
        PUBLISH_TARGET,
    );
    pair(
        "S15 gateway publish against bare HTTP (GET /healthz), 64 clients",
        ("healthz", &floor),
        &gateway,
        PUBLISH_FLOOR_TARGET,
    );
    let library = s15_publish_batch(b, size, Side::Library).await;
    let gateway = s15_publish_batch(b, size, Side::Gateway).await;
    pair(
        "S15 gateway publish, 8 clients batches of 100",
        ("library", &library),
        &gateway,
        BATCH_TARGET,
    );
    let library = s15_sse(b, size, Side::Library).await;
    let gateway = s15_sse(b, size, Side::Gateway).await;
    pair(
        "S15 gateway SSE delivery of a backlog, one subscriber",
        ("library", &library),
        &gateway,
        SSE_TARGET,
    );
    rows
}

/// One event per request: the library pipelines 64 concurrent adds on one connection,
/// the gateway pays a request and a response for each (see the notes in BENCHMARKS).
const PUBLISH_TARGET: f64 = 0.1;
/// The publish path's own cost over an empty request: JSON in, one add, JSON out.
const PUBLISH_FLOOR_TARGET: f64 = 0.4;
const BATCH_TARGET: f64 = 0.5;
const SSE_TARGET: f64 = 0.5;
