//! The chaos harness: Pulse's guarantees checked across real processes and a real Redis.
//!
//! `pulse-chaos` (see `main.rs` for the command line) starts a private `redis-server` with
//! AOF persistence (`appendfsync always`, so a SIGKILLed Redis keeps every acknowledged
//! write), starts child processes of *this* binary in roles (pool workers, stream producers
//! and sink members, map replicas), injects faults (SIGKILL, SIGSTOP past the TTL, graceful
//! leave, join, worker-group range changes, Redis SIGKILL + restart, Redis losing
//! everything, killed subscription connections), and audits an
//! external ledger — one append-only file per process, outside Redis — against each
//! component's promise:
//! - [`pool`]: no job lost (a job running before the store lost everything runs after it),
//!   never two runs of a job at once, every job running at the end in its key's group;
//! - [`streams`]: every event whose add was acknowledged is delivered to every sink at
//!   least once (duplicates counted);
//! - [`rmap`]: replicas in several processes converge after Redis restarts and killed
//!   subscription connections (time to converge reported).
//!
//! Each fault's time to recover is measured and printed; the run fails (exit 1) when any
//! promise is broken.
//!
//! With `--cluster` the store is a private 3-master Redis Cluster (AOF on every node)
//! instead of one server: the same roles, faults and audits, with "Redis restart" meaning
//! every node killed and restarted, and killed subscriptions meaning those of every node.
//!
//! It does not run on the persistent embedded backend (`pulse-redb`), on purpose: its
//! faults are those of processes sharing a store over the network (a worker killed while
//! others take over, a store restarted under live clients, subscriptions cut), and a redb
//! file has one owning process — when that process dies, everything on it dies with it.
//! What remains to check there, that a killed owner loses nothing acknowledged and
//! half-applies nothing, and that a pool whose only process died runs each job again
//! exactly once, is what `backend-redb/tests/crash.rs` does with SIGKILLed child processes.

pub mod ledger;
pub mod pool;
pub mod procs;
pub mod rmap;
pub mod streams;

use std::{
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use pulse::Backend;
use pulse_conformance::flaky::FlakyBackend;
use pulse_conformance::{redis_cluster::RedisCluster, redis_server::RedisServer};
use pulse_redis::{RedisBackend, RedisOptions};

/// One injected fault and how long the system took to recover from it (`None`: it did not
/// within the limit — a failure).
#[derive(Clone, Debug)]
pub struct Fault {
    /// The kind of fault (rows of the summary).
    pub kind: String,
    /// What was done.
    pub what: String,
    /// Time from the fault to full recovery.
    pub recovered: Option<Duration>,
}

/// The store the scenarios run against.
#[derive(Debug)]
enum Store {
    Server(RedisServer),
    Cluster(RedisCluster),
}

/// What every scenario shares: the store, the ledger directory, the seed, the log.
#[derive(Debug)]
pub struct Harness {
    store: Store,
    /// Where the processes' ledger files go (one per scenario run).
    pub ledger_dir: PathBuf,
    /// The seed of the fault sequence.
    pub seed: u64,
    /// Share of backend calls that fail in every child process (0: none), half before they
    /// reach Redis and half after it applied them ([`FlakyBackend`]).
    pub call_faults: f64,
    began: Instant,
}

/// Redis options for the harness and its roles: short timeouts, quick reconnects, so a
/// restart is noticed and healed fast.
pub fn redis_options() -> RedisOptions {
    RedisOptions::default()
        .with_command_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(1))
        .with_reconnect_delays(Duration::from_millis(50), Duration::from_millis(500))
}

impl Harness {
    /// Starts a private AOF `redis-server` (or, with `cluster`, a private 3-master Redis
    /// Cluster of AOF nodes) and makes a fresh ledger directory for `scenario`.
    pub fn start(
        scenario: &str,
        seed: u64,
        call_faults: f64,
        cluster: bool,
    ) -> Result<Harness, String> {
        let aof = ["--appendonly", "yes", "--appendfsync", "always"];
        let store = if cluster {
            Store::Cluster(
                RedisCluster::start_with(3, 0, &aof)
                    .map_err(|e| format!("cannot start a Redis Cluster: {e}"))?,
            )
        } else {
            Store::Server(
                RedisServer::start_with(&aof)
                    .map_err(|e| format!("cannot start redis-server: {e}"))?,
            )
        };
        let ledger_dir = std::env::temp_dir().join(format!(
            "pulse-chaos-{scenario}-{}-{}",
            std::process::id(),
            ledger::now_us()
        ));
        std::fs::create_dir_all(&ledger_dir).map_err(|e| e.to_string())?;
        Ok(Harness {
            store,
            ledger_dir,
            seed,
            call_faults,
            began: Instant::now(),
        })
    }

    /// The store's URL (`redis+cluster://…` for a cluster).
    pub fn url(&self) -> String {
        match &self.store {
            Store::Server(server) => server.url(),
            Store::Cluster(cluster) => cluster.url(),
        }
    }

    /// A Redis backend for the orchestrator itself.
    pub async fn backend(&self) -> Result<Arc<dyn Backend>, String> {
        connect(&self.url()).await
    }

    /// SIGKILLs Redis (every node of a cluster), keeps it down for `down`, starts it again
    /// on the same ports and data directories (the AOF replays every acknowledged write; a
    /// cluster node rejoins with its `nodes.conf`).
    pub async fn restart_redis(&self, down: Duration) -> Result<(), String> {
        let nodes: Vec<&RedisServer> = match &self.store {
            Store::Server(server) => vec![server],
            Store::Cluster(cluster) => cluster.nodes().iter().collect(),
        };
        for node in &nodes {
            node.stop();
        }
        tokio::time::sleep(down).await;
        tokio::task::block_in_place(|| {
            for node in &nodes {
                node.restart()?;
            }
            match &self.store {
                Store::Cluster(cluster) => cluster.wait_ready(),
                Store::Server(_) => Ok(()),
            }
        })
        .map_err(|e| e.to_string())
    }

    /// Makes Redis lose everything it holds (`FLUSHALL` on every node), as a restart
    /// without persistence or a failover to an empty replica would.
    pub async fn flush_redis(&self) -> Result<(), String> {
        for mut conn in self.raw_nodes().await? {
            redis::cmd("FLUSHALL")
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Plain connections to every node of the store (one for a single server), for faults
    /// Pulse's API does not expose.
    pub async fn raw_nodes(&self) -> Result<Vec<redis::aio::MultiplexedConnection>, String> {
        let urls: Vec<String> = match &self.store {
            Store::Server(server) => vec![server.url()],
            Store::Cluster(cluster) => cluster.nodes().iter().map(RedisServer::url).collect(),
        };
        let mut conns = Vec::new();
        for url in urls {
            let client = redis::Client::open(url).map_err(|e| e.to_string())?;
            conns.push(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(conns)
    }

    /// Kills every pub/sub connection on every node (`CLIENT KILL TYPE pubsub`); returns
    /// how many.
    pub async fn kill_subscriptions(&self) -> Result<i64, String> {
        let mut killed = 0;
        for mut conn in self.raw_nodes().await? {
            killed += redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async::<i64>(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(killed)
    }

    /// `HGETALL key`, asked of the node that holds it.
    pub async fn hash_get_all(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        let query = redis::cmd("HGETALL").arg(key).clone();
        match &self.store {
            Store::Server(_) => {
                let mut conns = self.raw_nodes().await?;
                query
                    .query_async(&mut conns[0])
                    .await
                    .map_err(|e| e.to_string())
            }
            Store::Cluster(cluster) => {
                let seeds: Vec<String> = cluster.nodes().iter().map(RedisServer::url).collect();
                let client =
                    redis::cluster::ClusterClient::new(seeds).map_err(|e| e.to_string())?;
                let mut conn = client
                    .get_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                query
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Starts a child process in `role` (see [`procs::spawn`]), passing on the call-fault
    /// rate and a seed of its own.
    pub fn spawn(
        &self,
        role: &str,
        name: &str,
        env: &[(&str, String)],
        piped: bool,
    ) -> std::io::Result<procs::Proc> {
        let mut env = env.to_vec();
        if self.call_faults > 0.0 {
            env.push(("CHAOS_CALL_FAULTS", self.call_faults.to_string()));
            env.push((
                "CHAOS_FAULT_SEED",
                (self.seed ^ ledger::now_us()).to_string(),
            ));
        }
        procs::spawn(role, name, &self.ledger_dir, &env, piped)
    }

    /// Prints a progress line with the time since the start.
    pub fn say(&self, line: &str) {
        println!("[{:6.1} s] {line}", self.began.elapsed().as_secs_f64());
    }
}

impl Drop for Harness {
    /// Removes the ledger directory, unless `PULSE_CHAOS_KEEP` is set (then says where it
    /// is: the ledgers and each process's stderr, with its logs under `PULSE_LOG`).
    fn drop(&mut self) {
        if std::env::var_os("PULSE_CHAOS_KEEP").is_some() {
            println!("ledgers and logs kept in {}", self.ledger_dir.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.ledger_dir);
    }
}

async fn connect(url: &str) -> Result<Arc<dyn Backend>, String> {
    let backend = RedisBackend::connect_with(url, redis_options())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(backend))
}

/// Calls `f` until it succeeds, for up to 60 s (Redis may be restarting when a role starts).
pub async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = pulse::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// A role's backend: `PULSE_REDIS_URL`, connected with retries; wrapped in a
/// [`FlakyBackend`] failing `CHAOS_CALL_FAULTS` of its calls when that is set.
pub async fn role_backend() -> Result<Arc<dyn Backend>, String> {
    let url = std::env::var("PULSE_REDIS_URL").map_err(|_| "PULSE_REDIS_URL not set")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match connect(&url).await {
            Ok(b) => return Ok(with_call_faults(b)),
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn with_call_faults(backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
    let rate = std::env::var("CHAOS_CALL_FAULTS")
        .ok()
        .and_then(|r| r.parse::<f64>().ok())
        .unwrap_or(0.0);
    if rate <= 0.0 {
        return backend;
    }
    let seed = env_u64("CHAOS_FAULT_SEED").unwrap_or(1);
    let flaky = FlakyBackend::new(backend, seed);
    flaky.set_failure_rate(rate);
    Arc::new(flaky)
}

/// A role's ledger file (`CHAOS_LEDGER`).
pub fn role_ledger() -> Result<ledger::Writer, String> {
    let path = std::env::var("CHAOS_LEDGER").map_err(|_| "CHAOS_LEDGER not set")?;
    ledger::Writer::open(path.as_ref()).map_err(|e| format!("open ledger {path}: {e}"))
}

/// A numeric environment variable of a role.
pub fn env_u64(name: &str) -> Result<u64, String> {
    std::env::var(name)
        .map_err(|_| format!("{name} not set"))?
        .parse()
        .map_err(|e| format!("{name}: {e}"))
}

/// Per kind of fault: how many, how many did not recover, and the median and maximum
/// recovery times of those that did.
pub fn summarize(faults: &[Fault]) -> Vec<(String, usize, usize, Duration, Duration)> {
    let mut kinds: Vec<String> = Vec::new();
    for f in faults {
        if !kinds.contains(&f.kind) {
            kinds.push(f.kind.clone());
        }
    }
    kinds
        .into_iter()
        .map(|kind| {
            let of_kind: Vec<&Fault> = faults.iter().filter(|f| f.kind == kind).collect();
            let mut times: Vec<Duration> = of_kind.iter().filter_map(|f| f.recovered).collect();
            times.sort();
            let failed = of_kind.len() - times.len();
            let median = times.get(times.len() / 2).copied().unwrap_or_default();
            let max = times.last().copied().unwrap_or_default();
            (kind, of_kind.len(), failed, median, max)
        })
        .collect()
}

/// Prints a fault table.
pub fn print_faults(faults: &[Fault]) {
    for f in faults {
        match f.recovered {
            Some(d) => println!("    {:>8} ms  {}", d.as_millis(), f.what),
            None => println!("    NOT RECOVERED  {}", f.what),
        }
    }
}
