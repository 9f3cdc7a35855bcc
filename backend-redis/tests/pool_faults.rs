//! The pool on Redis across a server restart (with AOF persistence): while the server is
//! down workers may fence themselves; once it is back every job runs again on exactly one
//! worker, and no job ever ran on two workers at once. Also: what is sent to a node's
//! inbox never extends its expiry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use pulse::{
    pool::{Node, NodeOptions},
    Backend,
};
use pulse_conformance::{job_audit::JobAudit, redis_server::private_server};
use pulse_redis::{RedisBackend, RedisOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_redis_restart_without_overlap() {
    let Some(server) = private_server(&["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let connect = || async {
        let o = RedisOptions::default()
            .with_reconnect_delays(Duration::from_millis(20), Duration::from_millis(200))
            .with_health_check_interval(Duration::from_millis(200))
            .with_command_timeout(Duration::from_secs(1));
        Arc::new(RedisBackend::connect_with(&server.url(), o).await.unwrap()) as Arc<dyn Backend>
    };
    let opts = NodeOptions::default()
        .with_worker_ttl(Duration::from_millis(900))
        .with_dispatch_timeout(Duration::from_secs(10));
    let audit = JobAudit::new();
    let (a, b) = (
        Node::join(connect().await, "p", opts.clone())
            .await
            .unwrap(),
        Node::join(connect().await, "p", opts).await.unwrap(),
    );
    a.add_worker(audit.handler("a")).await.unwrap();
    b.add_worker(audit.handler("b")).await.unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("job-{i}")).collect();
    for k in &keys {
        a.dispatch_job(k, "x").await.unwrap();
    }
    // An outage longer than the fencing threshold (2/3 of the TTL): workers stop their jobs.
    server.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await; // the outage itself
    assert!(
        audit.none_running(),
        "workers kept running jobs while their liveness could not be renewed"
    );
    server.restart().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if audit.exactly_once(&keys) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs did not settle: {}",
            audit.describe()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        audit.overlaps().is_empty(),
        "overlaps: {:?}",
        audit.overlaps()
    );
    assert_eq!(a.job_keys().len(), 20, "no job lost");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A message sent to a node's inbox never extends the inbox's expiry: only its own node's
/// keep-alive does, so the inbox of a node that died expires however much is still sent to
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_never_extends_an_inbox_expiry() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let backend: Arc<dyn Backend> = Arc::new(RedisBackend::connect(&server.url()).await.unwrap());
    let keyspace = pulse::keys::Keyspace::new("inbox-ttl").unwrap();
    // A long TTL: no keep-alive runs during the test (the first is after 10 s).
    let opts = NodeOptions::default()
        .with_keyspace(keyspace.clone())
        .with_worker_ttl(Duration::from_secs(30));
    let workers = Node::join(backend.clone(), "p", opts.clone())
        .await
        .unwrap();
    workers
        .add_worker(JobAudit::new().handler("w"))
        .await
        .unwrap();
    let client = Node::join(backend.clone(), "p", opts.with_client_only(true))
        .await
        .unwrap();
    let inbox = pulse::streaming::Stream::new(
        backend.clone(),
        &format!("p:inbox:{}", client.id()),
        pulse::streaming::StreamOptions::default().with_keyspace(keyspace),
    )
    .unwrap();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("PEXPIRE")
        .arg(inbox.key())
        .arg(5_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Each dispatch returns once the worker node's result reached the client's inbox.
    for i in 0..5 {
        client.dispatch_job(&format!("job-{i}"), "x").await.unwrap();
    }
    let pttl: i64 = redis::cmd("PTTL")
        .arg(inbox.key())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=5_000).contains(&pttl), "inbox PTTL {pttl} ms");
    client.close().await.unwrap();
    workers.close().await.unwrap();
}
