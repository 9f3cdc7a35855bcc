//! The gateway served on a free port, over a private `redis-server` (one case on
//! `memory:`), driven by a real HTTP client (`reqwest`) and an SSE client that reads the
//! response body as it streams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures_util::StreamExt;
use pulse::{
    error::BoxError,
    keys::Keyspace,
    pool::{Job, JobHandler, Node, NodeOptions},
    streaming::{SinkOptions, Stream, StreamOptions},
    Backend,
};
use pulse_cli::gateway::{router, AppState, ServeOptions};
use pulse_conformance::redis_server::private_server;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A gateway over `backend` on a free loopback port; its base URL.
async fn gateway(backend: Arc<dyn Backend>, token: Option<&str>) -> String {
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_owned),
        max_body: 4096,
        ack_grace: Duration::from_millis(500),
        read_only: false,
    };
    let app = router(
        AppState::new(backend, Keyspace::new("gw").unwrap(), &options),
        options.max_body,
    );
    let listener = tokio::net::TcpListener::bind(options.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// One server-sent event.
#[derive(Debug)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: Value,
}

/// Reads server-sent events from a streaming response, skipping keep-alives.
struct SseClient {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseClient {
    async fn open(client: &reqwest::Client, url: &str, last_id: Option<&str>) -> SseClient {
        let mut req = client.get(url);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        SseClient {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> Sse {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut sse = Sse {
                        id: None,
                        event: None,
                        data: Value::Null,
                    };
                    let mut any = false;
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id: ") {
                            sse.id = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("event: ") {
                            sse.event = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            sse.data = serde_json::from_str(v).unwrap();
                            any = true;
                        }
                    }
                    if any {
                        return sse;
                    }
                    continue; // a keep-alive comment
                }
                let chunk = self.body.next().await.expect("the stream ended").unwrap();
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("an event within 10 s")
    }
}

async fn error_kind(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["kind"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_subscribe_resume_and_errors() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = pulse_connect::open(&server.url()).await.unwrap();
    let base = gateway(backend, None).await;
    let http = reqwest::Client::new();
    let events = format!("{base}/v1/streams/orders/events");
    // A reader from the start, opened before anything is published.
    let mut reader = SseClient::open(&http, &format!("{events}?from=oldest"), None).await;
    let one = http
        .post(&events)
        .json(&json!({"name": "created", "payload": "a", "subject": "orders.eu.created", "headers": {"k": "v"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), StatusCode::CREATED);
    let one: Value = one.json().await.unwrap();
    let batch: Value = http
        .post(&events)
        .json(&json!([{"name": "created", "payload": "b"}, {"name": "created", "payload_base64": "AP8="}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(batch["ids"].as_array().unwrap().len(), 2);
    let first = reader.next().await;
    assert_eq!(first.id.as_deref(), one["ids"][0].as_str());
    assert_eq!(first.event.as_deref(), Some("created"));
    assert_eq!(first.data["payload"], "a");
    assert_eq!(first.data["subject"], "orders.eu.created");
    assert_eq!(first.data["headers"]["k"], "v");
    assert_eq!(reader.next().await.data["payload"], "b");
    assert_eq!(reader.next().await.data["payload_base64"], "AP8=");
    // Resume after the first with Last-Event-ID: only what came after.
    let mut resumed = SseClient::open(&http, &events, first.id.as_deref()).await;
    assert_eq!(resumed.next().await.data["payload"], "b");
    // A subject filter.
    let mut eu = SseClient::open(
        &http,
        &format!("{events}?from=oldest&subject=orders.eu.*"),
        None,
    )
    .await;
    assert_eq!(eu.next().await.data["payload"], "a");
    // Dedup keys: the second add is the first's ID.
    let d1: Value = http
        .post(&events)
        .json(&json!({"name": "n", "dedup_key": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d2: Value = http
        .post(&events)
        .json(&json!({"name": "n", "dedup_key": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (d1["added"].clone(), d2["added"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(d1["ids"], d2["ids"]);
    let info: Value = http
        .get(format!("{base}/v1/streams/orders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["length"], 4);

    // Every bad input is a 4xx with a JSON body naming it.
    let bad = [
        (
            http.post(&events).body("not json"),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            http.post(&events).json(&json!({"payload": "no name"})),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            http.post(&events)
                .json(&json!({"name": "x", "payload_base64": "!!"})),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            http.post(&events)
                .json(&json!({"name": "x", "payload": "a", "payload_base64": "YQ=="})),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            http.post(&events).json(&json!([])),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            http.post(&events)
                .json(&json!([{"name": "x", "dedup_key": "k"}])),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            http.post(format!("{base}/v1/streams/bad%20name/events"))
                .json(&json!({"name": "x"})),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            http.post(&events)
                .json(&json!({"name": "x", "payload": "y".repeat(5000)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            http.get(format!("{events}?from=yesterday")),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            http.get(format!("{events}?subject=a.>.b")),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            http.get(format!("{base}/v1/nothing/here")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (request, status, kind) in bad {
        let (got, got_kind) = error_kind(request.send().await.unwrap()).await;
        assert_eq!((got, got_kind.as_str()), (status, kind));
    }
    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/streams/{stream}/events"]["post"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_members_share_events_acks_and_redelivery() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = pulse_connect::open(&server.url()).await.unwrap();
    let base = gateway(backend, None).await;
    let http = reqwest::Client::new();
    let sink_events = format!("{base}/v1/streams/jobs/sinks/workers/events?from=oldest");
    let ack = format!("{base}/v1/streams/jobs/sinks/workers/ack");
    let mut a = SseClient::open(&http, &sink_events, None).await;
    let mut b = SseClient::open(&http, &sink_events, None).await;
    for i in 0..10 {
        http.post(format!("{base}/v1/streams/jobs/events"))
            .json(&json!({"name": "job", "payload": format!("{i}")}))
            .send()
            .await
            .unwrap();
    }
    // Each event to one member; both members get some.
    let mut seen: Vec<(char, String)> = Vec::new();
    while seen.len() < 10 {
        let (who, e) = tokio::select! {
            e = a.next() => ('a', e),
            e = b.next() => ('b', e),
        };
        assert_eq!(e.data["deliveries"], 1, "{e:?}");
        seen.push((who, e.id.unwrap()));
    }
    let ids: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), 10, "each event once");
    // a acknowledges what it got; b goes away without acknowledging.
    let of_a: Vec<String> = seen
        .iter()
        .filter(|(w, _)| *w == 'a')
        .map(|(_, id)| id.clone())
        .collect();
    let of_b: Vec<String> = seen
        .iter()
        .filter(|(w, _)| *w == 'b')
        .map(|(_, id)| id.clone())
        .collect();
    if !of_a.is_empty() {
        let r = http
            .post(&ack)
            .json(&json!({"ids": of_a}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // Again: not pending any more.
        let (status, kind) = error_kind(
            http.post(&ack)
                .json(&json!({"ids": of_a}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, kind.as_str()), (StatusCode::CONFLICT, "conflict"));
    }
    let (status, _) = error_kind(
        http.post(format!("{base}/v1/streams/jobs/sinks/nobody/ack"))
            .json(&json!({"ids": ["1-0"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(b);
    // What b had not acknowledged comes to a, after the ack grace.
    let mut again = HashSet::new();
    while again.len() < of_b.len() {
        let e = a.next().await;
        assert!(e.data["deliveries"].as_u64().unwrap() >= 2, "{e:?}");
        again.insert(e.id.unwrap());
    }
    assert_eq!(again, of_b.into_iter().collect::<HashSet<_>>());
}

struct Idle;

#[pulse::async_trait]
impl JobHandler for Idle {
    async fn start(&self, _job: &Job) -> Result<(), BoxError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maps_pools_requests_and_the_token() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend = pulse_connect::open(&server.url()).await.unwrap();
    let base = gateway(backend.clone(), Some("s3cret")).await;
    let http = reqwest::Client::new();
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth("s3cret");
    // Without the token: 401 (health and the document stay open).
    let (status, kind) = error_kind(
        http.get(format!("{base}/v1/maps/cfg"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (status, _) = error_kind(
        http.get(format!("{base}/v1/maps/cfg"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // Maps.
    let key = format!("{base}/v1/maps/cfg/keys/color");
    let mut watch = {
        let r = auth(http.get(format!("{base}/v1/maps/cfg/events")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        SseClient {
            body: Box::pin(r.bytes_stream()),
            buffer: String::new(),
        }
    };
    assert_eq!(
        auth(http.put(&key))
            .json(&json!({"payload": "blue"}))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let got: Value = auth(http.get(&key))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["payload"], "blue");
    let change = watch.next().await;
    assert_eq!(
        (change.event.as_deref(), change.data["payload"].as_str()),
        (Some("set"), Some("blue"))
    );
    let all: Value = auth(http.get(format!("{base}/v1/maps/cfg")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all[0]["key"], "color");
    let get = |path: String| {
        let request = auth(http.get(path));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(
        get(format!("{base}/v1/maps")).await,
        json!([{"name": "cfg", "keys": 1}])
    );
    assert_eq!(
        auth(http.delete(&key)).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (status, _) = error_kind(auth(http.get(&key)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = error_kind(auth(http.put(&key)).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Pools: a worker here; dispatch, inspect and stop over HTTP.
    let ks = Keyspace::new("gw").unwrap();
    let node = Node::join(
        backend.clone(),
        "feeds",
        NodeOptions::default().with_keyspace(ks.clone()),
    )
    .await
    .unwrap();
    node.add_worker(Idle).await.unwrap();
    let r = auth(http.post(format!("{base}/v1/pools/feeds/jobs")))
        .json(&json!({"key": "s1", "payload": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (status, kind) = error_kind(
        auth(http.post(format!("{base}/v1/pools/feeds/jobs")))
            .json(&json!({"key": "s1"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::CONFLICT, "job_exists")
    );
    let state: Value = auth(http.get(format!("{base}/v1/pools/feeds")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["jobs"][0]["key"], "s1");
    assert_eq!(state["jobs"][0]["status"]["state"], "running");
    assert_eq!(
        get(format!("{base}/v1/pools?limit=10")).await,
        json!([{"name": "feeds", "workers": 1, "jobs": 1}])
    );
    assert_eq!(
        auth(http.delete(format!("{base}/v1/pools/feeds/jobs/s1")))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let (status, _) = error_kind(
        auth(http.delete(format!("{base}/v1/pools/feeds/jobs/s1")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    node.close().await.unwrap();
    // A request answered here; one nobody answers times out as 504.
    let svc = Stream::new(
        backend.clone(),
        "prices",
        StreamOptions::default().with_keyspace(ks.clone()),
    )
    .unwrap();
    let responder = svc
        .new_sink("pricer", SinkOptions::default())
        .await
        .unwrap();
    let mut requests = responder.subscribe().unwrap();
    let answering = {
        let responder = responder.clone();
        tokio::spawn(async move {
            let r = requests.recv().await.unwrap();
            responder.reply(&r, "3 EUR").await.unwrap();
        })
    };
    let reply: Value = auth(http.post(format!("{base}/v1/streams/prices/requests")))
        .json(&json!({"payload": "tea"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["payload"], "3 EUR");
    answering.await.unwrap();
    let (status, kind) = error_kind(
        auth(http.post(format!("{base}/v1/streams/prices/requests")))
            .json(&json!({"payload": "tea", "timeout_ms": 200}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::GATEWAY_TIMEOUT, "timeout")
    );
    responder.close().await.unwrap();
    // Listing streams: foreign data under a stream's key is listed and marked, not fatal;
    // a bad limit is a 400.
    let foreign = pulse::backend::MapTarget::new("gw:stream:{junk}", "gw:junk-notices");
    let set = pulse::backend::SetCondition::Always;
    backend
        .map_set(&foreign, "k", "v".into(), set)
        .await
        .unwrap();
    let streams = get(format!("{base}/v1/streams")).await;
    let rows = streams.as_array().unwrap();
    let junk = rows.iter().find(|r| r["name"] == "junk").unwrap();
    assert!(
        junk["error"].is_string() && junk.get("length").is_none(),
        "{junk}"
    );
    let prices = rows.iter().find(|r| r["name"] == "prices").unwrap();
    assert!(prices["length"].as_u64().unwrap() >= 1 && prices["last_id"].is_string());
    for bad in ["nope", "-1", "100001"] {
        let url = format!("{base}/v1/streams?limit={bad}");
        let (status, kind) = error_kind(auth(http.get(url)).send().await.unwrap()).await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_argument")
        );
    }
}

#[tokio::test]
async fn off_loopback_needs_a_token() {
    let backend = pulse_connect::open("memory:").await.unwrap();
    let options = ServeOptions {
        listen: "0.0.0.0:0".parse().unwrap(),
        token: None,
        max_body: 1024,
        ack_grace: Duration::from_secs(1),
        read_only: false,
    };
    let e = pulse_cli::gateway::serve(backend, Keyspace::new("gw").unwrap(), options)
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("token"), "{e}");
    for empty in ["", "  "] {
        let options = ServeOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: Some(empty.into()),
            max_body: 1024,
            ack_grace: Duration::from_secs(1),
            read_only: false,
        };
        let backend = pulse_connect::open("memory:").await.unwrap();
        let e = pulse_cli::gateway::serve(backend, Keyspace::new("gw").unwrap(), options)
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("empty token"), "{e}");
    }
}
