//! The pool when Redis loses its state: a restart without persistence (short, and longer
//! than the fencing threshold) and a `FLUSHALL` under a running pool. Every job that ran
//! before runs after, exactly once, never two at once; a job stopped before the loss stays
//! stopped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use pulse::{
    pool::{Node, NodeOptions},
    Backend,
};
use pulse_conformance::{
    job_audit::JobAudit,
    redis_server::{private_server, RedisServer},
};
use pulse_redis::{RedisBackend, RedisOptions};
use tokio::time::Instant;

async fn connect(server: &RedisServer) -> Arc<dyn Backend> {
    let o = RedisOptions::default()
        .with_reconnect_delays(Duration::from_millis(20), Duration::from_millis(200))
        .with_health_check_interval(Duration::from_millis(200))
        .with_command_timeout(Duration::from_secs(1));
    Arc::new(RedisBackend::connect_with(&server.url(), o).await.unwrap())
}

fn options() -> NodeOptions {
    NodeOptions::default()
        .with_worker_ttl(Duration::from_millis(900))
        .with_dispatch_timeout(Duration::from_secs(10))
}

/// Two nodes with a worker each, 20 jobs running and one stopped: what the loss must keep.
async fn pool(server: &RedisServer, audit: &Arc<JobAudit>) -> (Node, Node, Vec<String>) {
    let a = Node::join(connect(server).await, "p", options())
        .await
        .unwrap();
    let b = Node::join(connect(server).await, "p", options())
        .await
        .unwrap();
    a.add_worker(audit.handler("a")).await.unwrap();
    b.add_worker(audit.handler("b")).await.unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("job-{i}")).collect();
    for k in &keys {
        a.dispatch_job(k, format!("payload of {k}")).await.unwrap();
    }
    a.dispatch_job("stopped", "x").await.unwrap();
    assert!(a.stop_job("stopped").await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !audit.exactly_once(&keys) {
        assert!(Instant::now() < deadline, "{}", audit.describe());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (a, b, keys)
}

/// Waits until the backend holds every job of `keys` again (re-admitted: until then the
/// replicas may still show the state from before the loss) and each runs exactly once;
/// then checks that it stays so, and the rest.
async fn settles(server: &RedisServer, audit: &JobAudit, a: &Node, keys: &[String]) {
    let jobs = pulse::keys::Keyspace::default()
        .pool_map("p", "jobs")
        .unwrap()
        .hash;
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored: Vec<String> = redis::cmd("HKEYS")
            .arg(&jobs)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let back = keys.iter().all(|k| stored.contains(k));
        if back && audit.exactly_once(keys) && a.job_keys().len() == keys.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs did not come back: {} (stored: {stored:?})",
            audit.describe()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And they stay: past the replicas' next probe.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(audit.exactly_once(keys), "{}", audit.describe());
    assert!(
        audit.overlaps().is_empty(),
        "overlaps: {:?}",
        audit.overlaps()
    );
    assert!(
        !a.job_keys().contains(&"stopped".to_owned()),
        "a stopped job stays stopped"
    );
    for k in keys {
        assert_eq!(
            a.job_payload(k).as_deref(),
            Some(format!("payload of {k}").as_bytes()),
            "{k} keeps its payload"
        );
    }
}

async fn empty_restart(outage: Duration) {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let audit = JobAudit::new();
    let (a, b, keys) = pool(&server, &audit).await;
    server.stop();
    tokio::time::sleep(outage).await;
    server.restart().unwrap(); // no persistence: everything is gone
    settles(&server, &audit, &a, &keys).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_short_restart_that_lost_everything() {
    empty_restart(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_long_restart_that_lost_everything() {
    // Longer than the fencing threshold: the workers stop their jobs while cut off, and
    // bring them back once they see the state is gone.
    empty_restart(Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_flushall() {
    let Some(server) = private_server(&[]) else {
        return;
    };
    let audit = JobAudit::new();
    let (a, b, keys) = pool(&server, &audit).await;
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    settles(&server, &audit, &a, &keys).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}
