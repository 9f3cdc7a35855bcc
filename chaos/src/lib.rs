//! The chaos harness: Pulse's guarantees checked across real processes and a real Redis.
//!
//! `pulse-chaos` (see `main.rs` for the command line) starts a private `redis-server` with
//! AOF persistence (`appendfsync always`, so a SIGKILLed Redis keeps every acknowledged
//! write), starts child processes of *this* binary in roles (pool workers, stream producers
//! and sink members, map replicas), injects faults (SIGKILL, SIGSTOP past the TTL, graceful
//! leave, join, Redis SIGKILL + restart, killed subscription connections), and audits an
//! external ledger — one append-only file per process, outside Redis — against each
//! component's promise:
//! - [`pool`]: no job lost, never two runs of a job at once, every job running at the end;
//! - [`streams`]: every event whose add was acknowledged is delivered to every sink at
//!   least once (duplicates counted);
//! - [`rmap`]: replicas in several processes converge after Redis restarts and killed
//!   subscription connections (time to converge reported).
//!
//! Each fault's time to recover is measured and printed; the run fails (exit 1) when any
//! promise is broken.

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
use pulse_conformance::redis_server::RedisServer;
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

/// What every scenario shares: the Redis server, the ledger directory, the seed, the log.
#[derive(Debug)]
pub struct Harness {
    server: RedisServer,
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
    /// Starts a private AOF `redis-server` and makes a fresh ledger directory for `scenario`.
    pub fn start(scenario: &str, seed: u64, call_faults: f64) -> Result<Harness, String> {
        let server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        let ledger_dir = std::env::temp_dir().join(format!(
            "pulse-chaos-{scenario}-{}-{}",
            std::process::id(),
            ledger::now_us()
        ));
        std::fs::create_dir_all(&ledger_dir).map_err(|e| e.to_string())?;
        Ok(Harness {
            server,
            ledger_dir,
            seed,
            call_faults,
            began: Instant::now(),
        })
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// A Redis backend for the orchestrator itself.
    pub async fn backend(&self) -> Result<Arc<dyn Backend>, String> {
        connect(&self.url()).await
    }

    /// SIGKILLs Redis, keeps it down for `down`, starts it again on the same port and data
    /// directory (its AOF replays every acknowledged write).
    pub async fn restart_redis(&self, down: Duration) -> Result<(), String> {
        self.server.stop();
        tokio::time::sleep(down).await;
        let server = &self.server;
        tokio::task::block_in_place(|| server.restart()).map_err(|e| e.to_string())
    }

    /// A raw connection to the server (for faults Pulse's API does not expose).
    pub async fn raw(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())
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
    fn drop(&mut self) {
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
