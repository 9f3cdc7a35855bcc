//! The building blocks on a Redis Cluster under the faults a cluster has: a slot migration
//! of a stream's, a map's and a pool's slot under load; a master restart (with AOF); a
//! coordinated replica failover (`CLUSTER FAILOVER`). Each time: no acknowledged stream
//! add is lost, map replicas converge, every job runs on exactly one worker afterwards and
//! no job ever ran on two at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use pulse::{
    backend::EntryId,
    keys::{hash_slot, Keyspace},
    pool::{Node, NodeOptions},
    rmap::{Map, MapOptions},
    streaming::{Stream, StreamOptions},
    Backend, Error,
};
use pulse_conformance::{
    job_audit::JobAudit,
    redis_cluster::{private_cluster, RedisCluster},
};
use pulse_redis::{RedisBackend, RedisOptions};
use tokio::{task::JoinHandle, time::Instant};

/// How long the checks after a fault may take to hold.
const SETTLE: Duration = Duration::from_secs(40);

async fn connect(cluster: &RedisCluster) -> Arc<dyn Backend> {
    let options = RedisOptions::default()
        .with_reconnect_delays(Duration::from_millis(20), Duration::from_millis(200))
        .with_health_check_interval(Duration::from_millis(300))
        .with_command_timeout(Duration::from_secs(2));
    Arc::new(
        RedisBackend::connect_with(&cluster.url(), options)
            .await
            .unwrap(),
    )
}

/// A name whose key (`key(name)`) is in a slot served by master `node` now, and that slot.
fn name_on(
    cluster: &RedisCluster,
    node: usize,
    prefix: &str,
    key: impl Fn(&str) -> String,
) -> (String, u16) {
    let port = cluster.nodes()[node].port();
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .map(|name| {
            let slot = hash_slot(&key(&name));
            (name, slot)
        })
        .find(|(_, slot)| cluster.owner_of_slot(*slot, node).ok() == Some(port))
        .unwrap()
}

/// Where the workload lives: names (and their slots) of a stream, a map and a pool.
struct Place {
    ks: Keyspace,
    stream: (String, u16),
    map: (String, u16),
    pool: (String, u16),
}

impl Place {
    /// Names whose slots master `node` serves, each in a slot of its own.
    fn on(cluster: &RedisCluster, node: usize, prefix: &str) -> Place {
        let ks = Keyspace::new(prefix).unwrap();
        Place {
            stream: name_on(cluster, node, "s", |n| ks.stream(n).unwrap()),
            map: name_on(cluster, node, "m", |n| ks.map(n).unwrap().hash),
            pool: name_on(cluster, node, "p", |n| {
                ks.pool_map(n, "owners").unwrap().hash
            }),
            ks,
        }
    }
}

/// What the writer was told.
#[derive(Default)]
struct Outcome {
    /// Every add that returned an id.
    added: Vec<EntryId>,
    /// Per map key, the last value whose `set` returned `Ok`, and whether a later `set`
    /// of the key failed (its value is then unknown).
    acked: HashMap<String, (String, bool)>,
    errors: Vec<Error>,
}

/// A stream writer, a map writer with a replica on another connection, and a pool of two
/// nodes running jobs, all in `place`.
struct Workload {
    stream: Stream,
    writer: Map,
    replica: Map,
    nodes: Vec<Node>,
    audit: Arc<JobAudit>,
    jobs: Vec<String>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<Outcome>,
}

impl Workload {
    async fn start(one: Arc<dyn Backend>, two: Arc<dyn Backend>, place: &Place) -> Workload {
        let stream_options = StreamOptions::default().with_keyspace(place.ks.clone());
        let stream = Stream::new(one.clone(), &place.stream.0, stream_options).unwrap();
        let map_options = MapOptions::default().with_keyspace(place.ks.clone());
        let writer = Map::join(one.clone(), &place.map.0, map_options.clone())
            .await
            .unwrap();
        let replica = Map::join(two.clone(), &place.map.0, map_options)
            .await
            .unwrap();
        let node_options = NodeOptions::default()
            .with_keyspace(place.ks.clone())
            .with_worker_ttl(Duration::from_millis(1500))
            .with_dispatch_timeout(Duration::from_secs(20));
        let audit = JobAudit::new();
        let mut nodes = Vec::new();
        for (label, backend) in [("a", &one), ("b", &two)] {
            let node = Node::join(backend.clone(), &place.pool.0, node_options.clone())
                .await
                .unwrap();
            node.add_worker(audit.handler(label)).await.unwrap();
            nodes.push(node);
        }
        let jobs: Vec<String> = (0..12).map(|i| format!("job-{i}")).collect();
        for job in &jobs {
            nodes[0].dispatch_job(job, "x").await.unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(write(stream.clone(), writer.clone(), stop.clone()));
        Workload {
            stream,
            writer,
            replica,
            nodes,
            audit,
            jobs,
            stop,
            task,
        }
    }

    /// Stops the writer and checks every promise; `quiet` when the fault should cost no
    /// failed call at all. Returns how many calls failed.
    async fn check(mut self, backend: &Arc<dyn Backend>, quiet: bool) -> usize {
        // Let the load run on after the fault for a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.stop.store(true, Ordering::SeqCst);
        let outcome = (&mut self.task).await.unwrap();
        for e in &outcome.errors {
            assert!(
                e.is_retryable(),
                "a failed call that is not retryable: {e:?}"
            );
        }
        if quiet {
            assert!(
                outcome.errors.is_empty(),
                "calls failed: {:?}",
                outcome.errors
            );
        }
        assert!(
            outcome.added.len() > 20,
            "too little load: {} adds",
            outcome.added.len()
        );
        // No acknowledged add is lost.
        let stored: std::collections::HashSet<EntryId> = backend
            .stream_range(self.stream.key(), EntryId::ZERO, EntryId::MAX, None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let lost: Vec<&EntryId> = outcome
            .added
            .iter()
            .filter(|id| !stored.contains(id))
            .collect();
        assert!(lost.is_empty(), "acknowledged adds lost: {lost:?}");
        // The replica converges on the writer, and on every acknowledged last value.
        let deadline = Instant::now() + SETTLE;
        loop {
            let same = self.writer.len() == self.replica.len()
                && self
                    .writer
                    .keys()
                    .iter()
                    .all(|k| self.writer.get(k) == self.replica.get(k));
            let acked = outcome.acked.iter().all(|(k, (v, later_failed))| {
                *later_failed || self.replica.get(k).as_deref() == Some(v.as_bytes())
            });
            if same && acked {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the map replicas did not converge"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every job runs exactly once, a new one too, and none ever ran twice at once.
        self.nodes[1].dispatch_job("after", "x").await.unwrap();
        self.jobs.push("after".to_owned());
        let deadline = Instant::now() + SETTLE;
        while !self.audit.exactly_once(&self.jobs) {
            assert!(
                Instant::now() < deadline,
                "jobs did not settle: {}",
                self.audit.describe()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            self.audit.overlaps().is_empty(),
            "overlaps: {:?}",
            self.audit.overlaps()
        );
        assert_eq!(
            self.nodes[0].job_keys().len(),
            self.jobs.len(),
            "no job lost"
        );
        for node in &self.nodes {
            node.close().await.unwrap();
        }
        self.writer.close().await.unwrap();
        self.replica.close().await.unwrap();
        outcome.errors.len()
    }
}

async fn write(stream: Stream, map: Map, stop: Arc<AtomicBool>) -> Outcome {
    let mut out = Outcome::default();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        match stream.add("e", i.to_string()).await {
            Ok(id) => out.added.push(id),
            Err(e) => out.errors.push(e),
        }
        let key = format!("k{}", i % 20);
        match map.set(&key, i.to_string()).await {
            Ok(_) => {
                out.acked.insert(key, (i.to_string(), false));
            }
            Err(e) => {
                if let Some(entry) = out.acked.get_mut(&key) {
                    entry.1 = true;
                }
                out.errors.push(e);
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out
}

/// Runs a blocking rig step off the runtime's threads.
async fn rig(step: impl FnOnce() -> std::io::Result<()> + Send + 'static) {
    tokio::task::spawn_blocking(step).await.unwrap().unwrap();
}

/// Slots move key by key, under load, each to another master: the calls meet `ASK` and
/// `TRYAGAIN` and are resent, so none fails, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_slots_under_load_loses_nothing() {
    let Some(cluster) = private_cluster(3, 0) else {
        return;
    };
    let cluster = Arc::new(cluster);
    let place = Place::on(&cluster, 0, "migrate");
    let (one, two) = (connect(&cluster).await, connect(&cluster).await);
    let load = Workload::start(one.clone(), two, &place).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (slot, to) in [(place.stream.1, 1), (place.map.1, 2), (place.pool.1, 1)] {
        let cluster = cluster.clone();
        rig(move || cluster.migrate_slot(slot, to, Duration::from_millis(30))).await;
    }
    for (slot, to) in [(place.stream.1, 1), (place.map.1, 2), (place.pool.1, 1)] {
        let port = cluster.nodes()[to].port();
        assert_eq!(
            cluster.owner_of_slot(slot, 0).unwrap(),
            port,
            "slot {slot} moved"
        );
    }
    load.check(&one, true).await;
}

/// The master of the workload's slots stops and restarts (AOF, fsync always): calls fail
/// with retryable errors while it is down, and afterwards nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restart_loses_no_acknowledged_write() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let Some(cluster) = RedisCluster::start_with(3, 0, &aof)
        .ok()
        .or_else(|| private_cluster(3, 0))
    else {
        return;
    };
    let cluster = Arc::new(cluster);
    let place = Place::on(&cluster, 0, "restart");
    let (one, two) = (connect(&cluster).await, connect(&cluster).await);
    let load = Workload::start(one.clone(), two, &place).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.nodes()[0].stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    {
        let cluster = cluster.clone();
        rig(move || {
            cluster.nodes()[0].restart()?;
            cluster.wait_ready()
        })
        .await;
    }
    let failed = load.check(&one, false).await;
    assert!(
        failed > 0,
        "no call failed while the master was down: was it?"
    );
}

/// A replica takes over from the master of the workload's slots (`CLUSTER FAILOVER`, which
/// waits for the replica to catch up): nothing acknowledged is lost, and the calls under
/// way are resent to the new master rather than failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_failover_loses_no_acknowledged_write() {
    let Some(cluster) = private_cluster(3, 1) else {
        return;
    };
    let cluster = Arc::new(cluster);
    let replica = cluster.replica_of(0).unwrap();
    let place = Place::on(&cluster, 0, "failover");
    let (one, two) = (connect(&cluster).await, connect(&cluster).await);
    let load = Workload::start(one.clone(), two, &place).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let cluster = cluster.clone();
        rig(move || cluster.failover(replica)).await;
    }
    let port = cluster.nodes()[replica].port();
    assert_eq!(
        cluster.owner_of_slot(place.stream.1, replica).unwrap(),
        port
    );
    load.check(&one, true).await;
}
