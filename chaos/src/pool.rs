//! Pool chaos: worker processes (the `pool_worker` example plus a ledger-writing handler)
//! run 1,000 jobs while the harness SIGKILLs, SIGSTOPs, adds and removes workers, changes
//! the worker groups' ranges, restarts Redis and makes it lose everything (`FLUSHALL`);
//! the ledger then shows whether any job was lost, ran twice at once, or was left not
//! running — a job running before the loss must run after it — and how long each fault
//! took to heal.
//!
//! Workers are in two groups: `premium` (keys `job-00…` to `job-02…`, and `job-03…` while
//! the range fault has it) and the default group; each group keeps at least one worker.
//!
//! What "running" means, precisely: a run starts when the handler's `start` is called (it
//! refuses if its [`JobLease`](pulse::pool::JobLease) is not held) and ends at the first of:
//! the handler's `stop`; the last moment the job's code saw its lease held (it checks before
//! each unit of work, every 100 ms, and records that moment when the lease is lost); the
//! death of its process (as seen by the harness after reaping it). A SIGSTOPped process
//! runs nothing while frozen. Two runs of one job overlap when these intervals intersect.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use pulse::async_trait;
use pulse::{
    error::BoxError,
    pool::{Job, JobHandler, Node, NodeOptions},
    Error,
};

use crate::{
    ledger::{now_us, Tail, Writer},
    procs::{Proc, Rng},
    role_backend, Fault, Harness,
};

const POOL: &str = "chaos";

/// The second worker group, and its range (the range fault adds and removes the last).
const PREMIUM: &str = "premium";
const PREMIUM_RANGE: [&str; 3] = ["job-00", "job-01", "job-02"];
const PREMIUM_EXTRA: &str = "job-03";

/// Settings of a pool chaos run.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long faults are injected.
    pub duration: Duration,
    /// Jobs dispatched before the chaos starts.
    pub jobs: usize,
    /// Worker processes at the start (kept between 2 and `workers + 2`).
    pub workers: usize,
    /// The pool's worker TTL.
    pub ttl: Duration,
}

/// What the audit found.
#[derive(Debug, Default)]
pub struct Report {
    /// Jobs dispatched.
    pub dispatched: usize,
    /// Jobs whose record is gone at the end.
    pub lost: Vec<String>,
    /// Jobs with two runs overlapping in time, with the runs.
    pub overlapping: Vec<String>,
    /// Jobs not running on exactly one live worker at the end.
    pub not_running: Vec<String>,
    /// Jobs running at the end on a worker of another group than their key's.
    pub misplaced: Vec<String>,
    /// Handler starts recorded.
    pub starts: usize,
    /// Faults injected, each with its time to recover.
    pub faults: Vec<Fault>,
    /// Worker processes that exited without being told to.
    pub unexpected_exits: Vec<String>,
}

impl Report {
    /// True when nothing was lost, nothing overlapped and everything runs.
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.overlapping.is_empty()
            && self.not_running.is_empty()
            && self.misplaced.is_empty()
            && self.unexpected_exits.is_empty()
            && self.faults.iter().all(|f| f.recovered.is_some())
    }
}

// ---------------------------------------------------------------------------------------
// The worker role.

/// Writes each start, stop and lease loss to the ledger; the "work" of a job is checking
/// its lease every 100 ms and noting the last moment it was held.
struct LedgerHandler {
    ledger: Arc<Writer>,
}

#[async_trait]
impl JobHandler for LedgerHandler {
    async fn start(&self, job: &Job) -> Result<(), BoxError> {
        if !job.lease.is_held() {
            return Err("lease not held".into());
        }
        let started = now_us();
        self.ledger.record_at(started, &format!("S {}", job.key));
        let (ledger, lease, key) = (self.ledger.clone(), job.lease.clone(), job.key.clone());
        tokio::spawn(async move {
            let mut last_held = started;
            loop {
                if lease.is_held() {
                    last_held = now_us();
                } else {
                    ledger.record(&format!("L {key} {last_held}"));
                    return;
                }
                tokio::select! {
                    _ = lease.lost() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
        Ok(())
    }

    async fn stop(&self, key: &str) -> Result<(), BoxError> {
        self.ledger.record(&format!("E {key}"));
        Ok(())
    }
}

/// `pulse-chaos role pool-worker`: joins the pool with one worker and runs until SIGTERM
/// (then closes: its jobs move) or SIGKILL.
pub async fn worker_role() -> Result<(), String> {
    let ledger = Arc::new(crate::role_ledger()?);
    let ttl = Duration::from_millis(crate::env_u64("CHAOS_TTL_MS")?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let backend = role_backend().await?;
    let options = NodeOptions::default()
        .with_worker_ttl(ttl)
        .with_retry_delay(Duration::from_millis(200));
    let node = crate::retry("join the pool", || {
        Node::join(backend.clone(), POOL, options.clone())
    })
    .await?;
    let group = std::env::var("CHAOS_GROUP").unwrap_or_else(|_| pulse::pool::DEFAULT_GROUP.into());
    let handler = LedgerHandler { ledger };
    let mut worker = node.add_worker_in_group(&group, handler).await;
    while let Err(e) = worker {
        eprintln!("add_worker: {e}; retrying");
        tokio::time::sleep(Duration::from_millis(200)).await;
        worker = node
            .add_worker_in_group(
                &group,
                LedgerHandler {
                    ledger: Arc::new(crate::role_ledger()?),
                },
            )
            .await;
    }
    term.recv().await;
    node.close().await.map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// The audit.

#[derive(Debug)]
struct Run {
    proc: String,
    key: String,
    start: u64,
    end: Option<u64>,
}

/// Replays the ledger into runs, and knows which processes are frozen or dead.
#[derive(Debug)]
struct Audit {
    tail: Tail,
    runs: Vec<Run>,
    open: HashMap<(String, String), usize>,
    last_closed: HashMap<(String, String), usize>,
    frozen: HashSet<String>,
    dead: HashSet<String>,
    starts: usize,
    anomalies: Vec<String>,
}

impl Audit {
    fn new(tail: Tail) -> Audit {
        Audit {
            tail,
            runs: Vec::new(),
            open: HashMap::new(),
            last_closed: HashMap::new(),
            frozen: HashSet::new(),
            dead: HashSet::new(),
            starts: 0,
            anomalies: Vec::new(),
        }
    }

    fn close(&mut self, id: (String, String), at: u64) {
        if let Some(i) = self.open.remove(&id) {
            self.runs[i].end = Some(at.max(self.runs[i].start));
            self.last_closed.insert(id, i);
        }
    }

    fn ingest(&mut self) -> Result<(), String> {
        for line in self.tail.poll().map_err(|e| e.to_string())? {
            let (event, key) = match line.words.as_slice() {
                [e, k, ..] => (e.as_str(), k.clone()),
                _ => continue,
            };
            let id = (line.source.clone(), key.clone());
            match event {
                "S" => {
                    self.starts += 1;
                    if self.open.contains_key(&id) {
                        self.anomalies
                            .push(format!("{key} started twice on {}", line.source));
                    }
                    self.runs.push(Run {
                        proc: line.source.clone(),
                        key,
                        start: line.at,
                        end: None,
                    });
                    self.open.insert(id, self.runs.len() - 1);
                }
                "E" => self.close(id, line.at),
                "L" => {
                    let last_held = line
                        .words
                        .get(2)
                        .and_then(|w| w.parse().ok())
                        .unwrap_or(line.at);
                    if self.open.contains_key(&id) {
                        self.close(id, last_held);
                    } else if let Some(&i) = self.last_closed.get(&id) {
                        // The stop line came first; the lease was lost no later than that.
                        let run = &mut self.runs[i];
                        if let Some(end) = run.end {
                            run.end = Some(end.min(last_held.max(run.start)));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A process is gone: its runs ended no later than `at`.
    fn died(&mut self, proc: &str, at: u64) -> Result<(), String> {
        self.ingest()?; // its last lines first: nothing follows them
        self.dead.insert(proc.to_owned());
        let ids: Vec<(String, String)> = self
            .open
            .keys()
            .filter(|(p, _)| p == proc)
            .cloned()
            .collect();
        for id in ids {
            self.close(id, at);
        }
        Ok(())
    }

    /// Per job: how many runs are open on live, unfrozen processes.
    fn live_runs(&self) -> HashMap<&str, usize> {
        let mut n = HashMap::new();
        for (proc, key) in self.open.keys() {
            if !self.frozen.contains(proc) && !self.dead.contains(proc) {
                *n.entry(key.as_str()).or_insert(0) += 1;
            }
        }
        n
    }

    /// Jobs of `keys` not running exactly once (on a live, unfrozen process).
    fn unsettled(&self, keys: &[String]) -> Vec<String> {
        let live = self.live_runs();
        let mut out: Vec<String> = keys
            .iter()
            .filter(|k| live.get(k.as_str()).copied().unwrap_or(0) != 1)
            .cloned()
            .collect();
        let known: HashSet<&str> = keys.iter().map(String::as_str).collect();
        out.extend(
            live.keys()
                .filter(|k| !known.contains(*k))
                .map(|k| (*k).to_owned()),
        );
        out
    }

    /// Jobs with two runs whose intervals intersect (open runs end `now`).
    fn overlaps(&self, now: u64) -> Vec<String> {
        let mut by_key: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
        for r in &self.runs {
            by_key.entry(r.key.as_str()).or_default().push(r);
        }
        let mut out = Vec::new();
        for (key, mut runs) in by_key {
            runs.sort_by_key(|r| r.start);
            let mut latest: Option<&Run> = None;
            for r in runs {
                if let Some(prev) = latest {
                    let prev_end = prev.end.unwrap_or(now);
                    if r.start < prev_end {
                        out.push(format!(
                            "{key}: run on {} [{}..{}] overlaps run on {} from {} ({} ms)",
                            prev.proc,
                            prev.start,
                            prev_end,
                            r.proc,
                            r.start,
                            (prev_end - r.start) / 1000
                        ));
                    }
                    if r.end.unwrap_or(now) <= prev_end {
                        continue; // keep the run that ends last
                    }
                }
                latest = Some(r);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The orchestrator.

struct Workers {
    procs: Vec<Proc>,
    /// The group of each process, by name.
    groups: HashMap<String, String>,
    next: usize,
    env: Vec<(&'static str, String)>,
}

impl Workers {
    fn spawn(&mut self, h: &Harness, group: &str) -> Result<String, String> {
        let name = format!("worker-{}", self.next);
        self.next += 1;
        let mut env = self.env.clone();
        env.push(("CHAOS_GROUP", group.to_owned()));
        let p = h
            .spawn("pool-worker", &name, &env, false)
            .map_err(|e| format!("spawn {name}: {e}"))?;
        self.procs.push(p);
        self.groups.insert(name.clone(), group.to_owned());
        Ok(name)
    }

    fn group_of(&self, name: &str) -> String {
        self.groups
            .get(name)
            .cloned()
            .unwrap_or_else(|| pulse::pool::DEFAULT_GROUP.to_owned())
    }

    /// Whether process `i`'s group has another worker (so it can be removed for good).
    fn replaceable(&self, i: usize) -> bool {
        let group = self.group_of(&self.procs[i].name);
        self.procs
            .iter()
            .filter(|p| self.group_of(&p.name) == group)
            .count()
            > 1
    }
}

/// Jobs running on a live worker of another group than the one `range` gives their key.
fn misplaced(audit: &Audit, workers: &Workers, range: &[&str]) -> Vec<String> {
    audit
        .open
        .keys()
        .filter(|(p, _)| !audit.frozen.contains(p) && !audit.dead.contains(p))
        .filter(|(p, key)| {
            let want = if range.iter().any(|r| key.starts_with(r)) {
                PREMIUM
            } else {
                pulse::pool::DEFAULT_GROUP
            };
            workers.group_of(p) != want
        })
        .map(|(p, key)| format!("{key} on {p} ({})", workers.group_of(p)))
        .collect()
}

/// The range the premium group has when the range fault has moved `job-03…` in or not.
fn premium_range(extra: bool) -> Vec<&'static str> {
    let mut range = PREMIUM_RANGE.to_vec();
    if extra {
        range.push(PREMIUM_EXTRA);
    }
    range
}

/// The group of the `n`-th worker started at the beginning or added later.
fn group_for(n: usize) -> &'static str {
    if n % 2 == 1 {
        PREMIUM
    } else {
        pulse::pool::DEFAULT_GROUP
    }
}

/// Longest the audit waits for the pool to heal after a fault.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Waits until every job runs exactly once on a live worker; the time it took, or `None`
/// after [`SETTLE_LIMIT`].
async fn settle(
    audit: &mut Audit,
    workers: &mut Workers,
    keys: &[String],
    report: &mut Report,
) -> Result<Option<Duration>, String> {
    let began = Instant::now();
    loop {
        reap_unexpected(audit, workers, report)?;
        audit.ingest()?;
        if audit.unsettled(keys).is_empty() {
            return Ok(Some(began.elapsed()));
        }
        if began.elapsed() > SETTLE_LIMIT {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn reap_unexpected(
    audit: &mut Audit,
    workers: &mut Workers,
    report: &mut Report,
) -> Result<(), String> {
    let mut i = 0;
    while i < workers.procs.len() {
        if workers.procs[i].exited() {
            let p = workers.procs.remove(i);
            audit.died(&p.name, now_us())?;
            report
                .unexpected_exits
                .push(format!("{} exited: {}", p.name, p.stderr_tail(5)));
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Runs the pool chaos and audits it.
pub async fn run(h: &Harness, cfg: &Config) -> Result<Report, String> {
    let mut rng = Rng::new(h.seed);
    let mut report = Report {
        dispatched: cfg.jobs,
        ..Report::default()
    };
    let mut workers = Workers {
        procs: Vec::new(),
        groups: HashMap::new(),
        next: 0,
        env: vec![
            ("PULSE_REDIS_URL", h.url()),
            ("CHAOS_TTL_MS", cfg.ttl.as_millis().to_string()),
        ],
    };
    for n in 0..cfg.workers.max(2) {
        workers.spawn(h, group_for(n))?;
    }
    let mut audit = Audit::new(Tail::new(&h.ledger_dir));
    let backend = h.backend().await?;
    let options = NodeOptions::default()
        .with_client_only(true)
        .with_worker_ttl(cfg.ttl)
        .with_dispatch_timeout(Duration::from_secs(30));
    let dispatcher = Node::join(backend, POOL, options)
        .await
        .map_err(|e| e.to_string())?;
    dispatcher
        .set_group_range(PREMIUM, &PREMIUM_RANGE)
        .await
        .map_err(|e| e.to_string())?;
    let mut extra_in_range = false;
    let keys: Vec<String> = (0..cfg.jobs).map(|i| format!("job-{i:04}")).collect();

    let began = Instant::now();
    dispatch_all(&dispatcher, &keys).await?;
    let placed = settle(&mut audit, &mut workers, &keys, &mut report).await?;
    h.say(&format!(
        "pool: {} jobs dispatched and running on {} workers in {:.1} s",
        keys.len(),
        workers.procs.len(),
        began.elapsed().as_secs_f64()
    ));
    if placed.is_none() {
        return Err(format!(
            "jobs never all ran: {:?}",
            first(&audit.unsettled(&keys))
        ));
    }

    // Redis restarts at a third and two thirds of the run, and loses everything (FLUSHALL)
    // half-way; other faults at random.
    let chaos_end = Instant::now() + cfg.duration;
    let restarts_at = [cfg.duration / 3, cfg.duration * 2 / 3].map(|d| Instant::now() + d);
    let mut restarts_done = 0;
    let flush_at = Instant::now() + cfg.duration / 2;
    let mut flushed = false;
    let max_workers = cfg.workers + 2;
    while Instant::now() < chaos_end {
        // When the fault was complete (the process dead, Redis back, ...): recovery is
        // timed from then.
        let since;
        // False when a fault's own check failed (a loss of the store not repaired, jobs
        // left in their old group), whatever the settle says.
        let mut readmitted = true;
        let (kind, fault) = if !flushed && Instant::now() >= flush_at {
            flushed = true;
            h.flush_redis().await?;
            since = Instant::now();
            // The workers' runs never stopped: recovered means the store holds every job
            // again (re-admitted by the nodes that ran them), then the usual settle.
            let jobs = pulse::keys::Keyspace::default()
                .pool_map(POOL, "jobs")
                .map_err(|e| e.to_string())?
                .hash;
            loop {
                let stored: HashSet<String> = h
                    .hash_get_all(&jobs)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                if keys.iter().all(|k| stored.contains(k)) {
                    break;
                }
                if since.elapsed() > SETTLE_LIMIT {
                    readmitted = false;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let what = "Redis loses everything (FLUSHALL): until every job runs again".to_owned();
            (what.clone(), what)
        } else if restarts_done < 2 && Instant::now() >= restarts_at[restarts_done] {
            restarts_done += 1;
            // The second restart keeps Redis down past the worker TTL.
            let down = if restarts_done == 2 {
                cfg.ttl * 3 / 2
            } else {
                Duration::ZERO
            };
            h.restart_redis(down).await?;
            since = Instant::now();
            let what = format!(
                "Redis SIGKILL + restart, down {} ms (timed from when it is back)",
                down.as_millis()
            );
            (what.clone(), what)
        } else {
            match rng.below(5) {
                0 if !workers.procs.is_empty() => {
                    let i = rng.below(workers.procs.len());
                    let mut p = workers.procs.remove(i);
                    p.kill().await.map_err(|e| e.to_string())?;
                    audit.died(&p.name, now_us())?;
                    since = Instant::now();
                    let new = workers.spawn(h, &workers.group_of(&p.name))?;
                    (
                        "SIGKILL a worker (a new one starts)".to_owned(),
                        format!("SIGKILL {} (replaced by {new})", p.name),
                    )
                }
                // Only a worker whose group has another one: its jobs must move there.
                1 if (0..workers.procs.len()).any(|i| workers.replaceable(i)) => {
                    let mut i = rng.below(workers.procs.len());
                    while !workers.replaceable(i) {
                        i = (i + 1) % workers.procs.len();
                    }
                    let frozen_for = cfg.ttl * 2;
                    let name = workers.procs[i].name.clone();
                    workers.procs[i].freeze().map_err(|e| e.to_string())?;
                    audit.frozen.insert(name.clone());
                    let frozen_at = Instant::now();
                    // Its jobs must come back elsewhere while it is frozen.
                    let moved = settle(&mut audit, &mut workers, &keys, &mut report).await?;
                    report.faults.push(Fault {
                        kind: "SIGSTOP a worker for 2 x TTL: until its jobs run elsewhere".into(),
                        what: format!("SIGSTOP {name} (jobs taken over)"),
                        recovered: moved,
                    });
                    tokio::time::sleep(frozen_for.saturating_sub(frozen_at.elapsed())).await;
                    if let Some(p) = workers.procs.iter_mut().find(|p| p.name == name) {
                        p.resume().map_err(|e| e.to_string())?;
                    }
                    audit.frozen.remove(&name);
                    since = Instant::now();
                    (
                        "SIGCONT the frozen worker: until its stale runs end".to_owned(),
                        format!(
                            "SIGCONT {name} after {:.1} s frozen (its stale runs end)",
                            frozen_at.elapsed().as_secs_f64()
                        ),
                    )
                }
                2 if workers.procs.len() < max_workers => {
                    let name = workers.spawn(h, group_for(workers.next))?;
                    since = Instant::now();
                    // Recovered once it took its share (and everything runs).
                    let began = Instant::now();
                    while !audit.open.keys().any(|(p, _)| *p == name)
                        && began.elapsed() < Duration::from_secs(60)
                    {
                        audit.ingest()?;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    (
                        "add a worker: until it runs its share".to_owned(),
                        format!("add {name} (until it runs its share)"),
                    )
                }
                3 => {
                    // Move a slice of keys between the groups.
                    extra_in_range = !extra_in_range;
                    let range = premium_range(extra_in_range);
                    dispatcher
                        .set_group_range(PREMIUM, &range)
                        .await
                        .map_err(|e| e.to_string())?;
                    since = Instant::now();
                    // Recovered once every job runs in its new group.
                    while !misplaced(&audit, &workers, &range).is_empty() {
                        if since.elapsed() > SETTLE_LIMIT {
                            readmitted = false;
                            break;
                        }
                        audit.ingest()?;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let how = if extra_in_range { "into" } else { "out of" };
                    (
                        "change a group's range: until the moved jobs run again".to_owned(),
                        format!("{PREMIUM_EXTRA}… {how} the {PREMIUM} range"),
                    )
                }
                _ if workers.procs.len() > 2
                    && (0..workers.procs.len()).any(|i| workers.replaceable(i)) =>
                {
                    let mut i = rng.below(workers.procs.len());
                    while !workers.replaceable(i) {
                        i = (i + 1) % workers.procs.len();
                    }
                    let mut p = workers.procs.remove(i);
                    let clean = p
                        .terminate(Duration::from_secs(30))
                        .await
                        .map_err(|e| e.to_string())?;
                    audit.died(&p.name, now_us())?;
                    since = Instant::now();
                    if !clean {
                        report.unexpected_exits.push(format!(
                            "{} did not leave cleanly: {}",
                            p.name,
                            p.stderr_tail(3)
                        ));
                    }
                    (
                        "remove a worker (SIGTERM, graceful)".to_owned(),
                        format!("remove {} (SIGTERM, graceful)", p.name),
                    )
                }
                _ => continue,
            }
        };
        let recovered = settle(&mut audit, &mut workers, &keys, &mut report)
            .await?
            .filter(|_| readmitted)
            .map(|_| since.elapsed());
        h.say(&format!(
            "pool: {fault}: {}",
            recovered.map_or("NOT recovered in 60 s".to_owned(), |d| format!(
                "all jobs running again after {} ms",
                d.as_millis()
            ))
        ));
        report.faults.push(Fault {
            kind,
            what: fault,
            recovered,
        });
        tokio::time::sleep(rng.between(Duration::from_millis(200), Duration::from_millis(1500)))
            .await;
    }

    // Final state: every job exists and runs exactly once.
    let _ = settle(&mut audit, &mut workers, &keys, &mut report).await?;
    report.not_running = audit.unsettled(&keys);
    report.misplaced = misplaced(&audit, &workers, &premium_range(extra_in_range));
    let existing: HashSet<String> = dispatcher.job_keys().into_iter().collect();
    report.lost = keys
        .iter()
        .filter(|k| !existing.contains(*k))
        .cloned()
        .collect();
    for mut p in workers.procs.drain(..) {
        let _ = p.kill().await;
        audit.died(&p.name, now_us())?;
    }
    audit.ingest()?;
    report.overlapping = audit.overlaps(now_us());
    report.overlapping.extend(audit.anomalies.iter().cloned());
    report.starts = audit.starts;
    let _ = dispatcher.close().await;
    Ok(report)
}

fn first(v: &[String]) -> &[String] {
    &v[..v.len().min(5)]
}

/// Dispatches every key (25 at a time), retrying through transient errors; a key already
/// admitted by an earlier attempt counts as dispatched.
async fn dispatch_all(node: &Node, keys: &[String]) -> Result<(), String> {
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..25 {
        let node = node.clone();
        let mine: Vec<String> = keys.iter().skip(lane).step_by(25).cloned().collect();
        tasks.spawn(async move {
            for key in mine {
                let mut attempts = 0;
                loop {
                    match node.dispatch_job(&key, format!("payload of {key}")).await {
                        Ok(()) | Err(Error::JobExists { .. }) => break,
                        Err(e) if attempts < 20 => {
                            attempts += 1;
                            eprintln!("dispatch {key}: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        Err(e) => return Err(format!("dispatch {key}: {e}")),
                    }
                }
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An audit over ledger files holding `lines`; the files live as long as the audit.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn audit_of(lines: &[(&str, &str)]) -> (Audit, Scratch) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("pulse-chaos-audit-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (proc, line) in lines {
            let (at, rest) = line.split_once(' ').unwrap();
            Writer::open(&dir.join(format!("{proc}.log")))
                .unwrap()
                .record_at(at.parse().unwrap(), rest);
        }
        let mut audit = Audit::new(Tail::new(&dir));
        audit.ingest().unwrap();
        (audit, Scratch(dir))
    }

    #[test]
    fn a_handoff_does_not_overlap_but_a_double_run_does() {
        let (audit, _dir) = audit_of(&[("a", "10 S k"), ("a", "20 E k"), ("b", "21 S k")]);
        assert!(audit.overlaps(100).is_empty());
        assert_eq!(audit.unsettled(&["k".to_owned()]), Vec::<String>::new());
        let (audit, _dir) = audit_of(&[("a", "10 S k"), ("b", "21 S k")]);
        assert_eq!(audit.overlaps(100).len(), 1);
        assert_eq!(audit.unsettled(&["k".to_owned()]), ["k"]);
    }

    #[test]
    fn a_lost_lease_ends_the_run_at_its_last_held_moment() {
        // a was frozen: its lease was last seen held at 15, it noticed at 40 (after b took
        // over at 30) and stopped at 45.
        let (audit, _dir) = audit_of(&[
            ("a", "10 S k"),
            ("b", "30 S k"),
            ("a", "40 L k 15"),
            ("a", "45 E k"),
        ]);
        assert!(audit.overlaps(100).is_empty(), "{:?}", audit.overlaps(100));
        // Had it acted at 35, that would be an overlap.
        let (audit, _dir) = audit_of(&[("a", "10 S k"), ("b", "30 S k"), ("a", "40 L k 35")]);
        assert_eq!(audit.overlaps(100).len(), 1);
        // The stop line may come before the lease line.
        let (audit, _dir) = audit_of(&[
            ("a", "10 S k"),
            ("b", "30 S k"),
            ("a", "40 E k"),
            ("a", "41 L k 15"),
        ]);
        assert!(audit.overlaps(100).is_empty());
    }

    #[test]
    fn a_dead_or_frozen_process_runs_nothing() {
        let (mut audit, _dir) = audit_of(&[("a", "10 S k")]);
        audit.frozen.insert("a".into());
        assert_eq!(audit.unsettled(&["k".to_owned()]), ["k"]);
        audit.frozen.clear();
        audit.died("a", 20).unwrap();
        assert_eq!(audit.runs[0].end, Some(20));
        assert_eq!(audit.unsettled(&["k".to_owned()]), ["k"]);
    }
}
