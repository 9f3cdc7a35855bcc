//! Stream chaos: producer processes add numbered events, sink-member processes (two sinks
//! of two members) receive and acknowledge them, while the harness SIGKILLs producers and
//! members and restarts Redis. The promise checked: every event whose `add` returned an ID
//! is delivered to every sink at least once. Duplicates (redeliveries after a member died
//! between receiving and acknowledging) are allowed, counted and reported.
//!
//! Ledger lines: a producer writes `A <event>` after its add was acknowledged; a member
//! writes `R <sink> <event>` on receipt, *before* acknowledging.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use pulse::streaming::{SinkOptions, Start, Stream, StreamOptions};

use crate::{
    ledger::Tail,
    procs::{Proc, Rng},
    role_backend, Fault, Harness,
};

const STREAM: &str = "chaos-events";
const SINKS: [&str; 2] = ["alpha", "beta"];

/// Settings of a stream chaos run.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long faults are injected.
    pub duration: Duration,
    /// Producer processes.
    pub producers: usize,
    /// Member processes per sink.
    pub members: usize,
    /// The sinks' ack grace (a dead member's events are redelivered after it).
    pub ack_grace: Duration,
}

/// What the audit found.
#[derive(Debug, Default)]
pub struct Report {
    /// Events whose add was acknowledged.
    pub acknowledged: usize,
    /// Per sink: distinct events delivered, and deliveries beyond the first.
    pub delivered: Vec<(String, usize, usize)>,
    /// Acknowledged events a sink never received: (sink, event).
    pub missing: Vec<(String, String)>,
    /// Faults injected and the time until every event acknowledged before it was
    /// delivered to every sink.
    pub faults: Vec<Fault>,
    /// Processes that exited without being told to (with their last stderr lines).
    pub unexpected_exits: Vec<String>,
}

impl Report {
    /// True when no acknowledged event is missing from any sink and every fault healed.
    pub fn passed(&self) -> bool {
        self.acknowledged > 0
            && self.missing.is_empty()
            && self.unexpected_exits.is_empty()
            && self.faults.iter().all(|f| f.recovered.is_some())
    }
}

// ---------------------------------------------------------------------------------------
// Roles.

fn terminated() -> Result<tokio::signal::unix::Signal, String> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())
}

/// `pulse-chaos role producer`: adds `<name>:<n>` events every few milliseconds until
/// SIGTERM, recording each acknowledged one.
pub async fn producer_role() -> Result<(), String> {
    let ledger = crate::role_ledger()?;
    let name = std::env::var("CHAOS_NAME").map_err(|_| "CHAOS_NAME not set")?;
    let mut term = terminated()?;
    let stream = Stream::new(role_backend().await?, STREAM, StreamOptions::default())
        .map_err(|e| e.to_string())?;
    let mut n = 0u64;
    loop {
        let event = format!("{name}:{n}");
        n += 1;
        tokio::select! {
            _ = term.recv() => return Ok(()),
            added = stream.add("e", event.clone()) => match added {
                Ok(_) => ledger.record(&format!("A {event}")),
                // Unknown outcome: it may or may not have been added; not promised.
                Err(e) => {
                    eprintln!("{name}: add failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
}

/// `pulse-chaos role member`: a member of sink `CHAOS_SINK`; records each event, then
/// acknowledges it; leaves on SIGTERM.
pub async fn member_role() -> Result<(), String> {
    let ledger = crate::role_ledger()?;
    let sink_name = std::env::var("CHAOS_SINK").map_err(|_| "CHAOS_SINK not set")?;
    let grace = Duration::from_millis(crate::env_u64("CHAOS_ACK_GRACE_MS")?);
    let mut term = terminated()?;
    let stream = Stream::new(role_backend().await?, STREAM, StreamOptions::default())
        .map_err(|e| e.to_string())?;
    let options = SinkOptions::default()
        .with_start(Start::Oldest)
        .with_ack_grace(grace)
        .with_check_interval(Duration::from_millis(200))
        .with_block(Duration::from_secs(1));
    let sink = crate::retry("join the sink", || {
        stream.new_sink(&sink_name, options.clone())
    })
    .await?;
    let mut events = sink.subscribe().map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            event = events.recv() => {
                let Some(event) = event else { break };
                ledger.record(&format!(
                    "R {sink_name} {}",
                    String::from_utf8_lossy(&event.payload)
                ));
                // A failed ack is redelivered later: at least once either way.
                if let Err(e) = sink.ack(&event).await {
                    eprintln!("{sink_name}: ack failed: {e}");
                }
            }
        }
    }
    sink.close().await.map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Audit and orchestration.

#[derive(Debug, Default)]
struct Audit {
    acknowledged: HashSet<String>,
    received: HashMap<String, HashMap<String, usize>>,
}

impl Audit {
    fn ingest(&mut self, tail: &mut Tail) -> Result<(), String> {
        for line in tail.poll().map_err(|e| e.to_string())? {
            match line.words.as_slice() {
                [a, event] if a == "A" => {
                    self.acknowledged.insert(event.clone());
                }
                [r, sink, event] if r == "R" => {
                    *self
                        .received
                        .entry(sink.clone())
                        .or_default()
                        .entry(event.clone())
                        .or_insert(0) += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// (sink, event) pairs of `events` not yet delivered.
    fn missing<'a>(&self, events: impl Iterator<Item = &'a String>) -> Vec<(String, String)> {
        let empty = HashMap::new();
        let mut out = Vec::new();
        for e in events {
            for sink in SINKS {
                if !self.received.get(sink).unwrap_or(&empty).contains_key(e) {
                    out.push((sink.to_owned(), e.clone()));
                }
            }
        }
        out
    }
}

/// Waits until every event of `due` is delivered to every sink; the time it took, or
/// `None` after `limit`.
async fn caught_up(
    audit: &mut Audit,
    tail: &mut Tail,
    due: &HashSet<String>,
    limit: Duration,
) -> Result<Option<Duration>, String> {
    let began = Instant::now();
    loop {
        audit.ingest(tail)?;
        if audit.missing(due.iter()).is_empty() {
            return Ok(Some(began.elapsed()));
        }
        if began.elapsed() > limit {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Procs {
    list: Vec<(Proc, Option<&'static str>)>,
    next: usize,
    env: Vec<(&'static str, String)>,
}

impl Procs {
    fn spawn(&mut self, h: &Harness, sink: Option<&'static str>) -> Result<String, String> {
        let (role, name) = match sink {
            Some(s) => ("member", format!("member-{s}-{}", self.next)),
            None => ("producer", format!("producer-{}", self.next)),
        };
        self.next += 1;
        let mut env = self.env.clone();
        if let Some(s) = sink {
            env.push(("CHAOS_SINK", s.to_owned()));
        }
        let p = h
            .spawn(role, &name, &env, false)
            .map_err(|e| format!("spawn {name}: {e}"))?;
        self.list.push((p, sink));
        Ok(name)
    }
}

/// Runs the stream chaos and audits it.
pub async fn run(h: &Harness, cfg: &Config) -> Result<Report, String> {
    let mut rng = Rng::new(h.seed ^ 0x5eed);
    let mut report = Report::default();
    let mut procs = Procs {
        list: Vec::new(),
        next: 0,
        env: vec![
            ("PULSE_REDIS_URL", h.url()),
            ("CHAOS_ACK_GRACE_MS", cfg.ack_grace.as_millis().to_string()),
        ],
    };
    for sink in SINKS {
        for _ in 0..cfg.members {
            procs.spawn(h, Some(sink))?;
        }
    }
    for _ in 0..cfg.producers {
        procs.spawn(h, None)?;
    }
    let mut tail = Tail::new(&h.ledger_dir);
    let mut audit = Audit::default();
    let chaos_end = Instant::now() + cfg.duration;
    let restart_at = Instant::now() + cfg.duration / 2;
    let mut restarted = false;
    tokio::time::sleep(Duration::from_secs(1)).await;
    while Instant::now() < chaos_end {
        let mut i = 0;
        while i < procs.list.len() {
            if procs.list[i].0.exited() {
                let (p, _) = procs.list.remove(i);
                report
                    .unexpected_exits
                    .push(format!("{} exited: {}", p.name, p.stderr_tail(5)));
            } else {
                i += 1;
            }
        }
        if procs.list.is_empty() {
            return Err("every stream process exited".into());
        }
        let (kind, what) = if !restarted && Instant::now() >= restart_at {
            restarted = true;
            h.restart_redis(Duration::from_millis(500)).await?;
            let what = "Redis SIGKILL + restart (down 500 ms)".to_owned();
            (what.clone(), what)
        } else {
            let i = rng.below(procs.list.len());
            let (mut p, sink) = procs.list.remove(i);
            p.kill().await.map_err(|e| e.to_string())?;
            let new = procs.spawn(h, sink)?;
            let kind = if sink.is_some() {
                "SIGKILL a sink member (a new one starts)"
            } else {
                "SIGKILL a producer (a new one starts)"
            };
            (
                kind.to_owned(),
                format!("SIGKILL {} (replaced by {new})", p.name),
            )
        };
        // Recovered once everything acknowledged so far reached every sink.
        audit.ingest(&mut tail)?;
        let due = audit.acknowledged.clone();
        let recovered = caught_up(&mut audit, &mut tail, &due, Duration::from_secs(60)).await?;
        h.say(&format!(
            "streams: {what}: {}",
            recovered.map_or("NOT caught up in 60 s".to_owned(), |d| format!(
                "{} acknowledged events delivered to both sinks after {} ms",
                due.len(),
                d.as_millis()
            ))
        ));
        report.faults.push(Fault {
            kind,
            what,
            recovered,
        });
        tokio::time::sleep(rng.between(Duration::from_millis(300), Duration::from_millis(1500)))
            .await;
    }
    // Producers leave; everything they got acknowledged must arrive.
    let mut members = Vec::new();
    for (mut p, sink) in procs.list.drain(..) {
        if sink.is_none() {
            p.terminate(Duration::from_secs(10))
                .await
                .map_err(|e| e.to_string())?;
        } else {
            members.push(p);
        }
    }
    audit.ingest(&mut tail)?;
    let due = audit.acknowledged.clone();
    caught_up(&mut audit, &mut tail, &due, Duration::from_secs(60)).await?;
    for mut p in members {
        let _ = p.terminate(Duration::from_secs(10)).await;
    }
    audit.ingest(&mut tail)?;
    report.acknowledged = audit.acknowledged.len();
    report.missing = audit.missing(audit.acknowledged.iter());
    for sink in SINKS {
        let got = audit.received.get(sink).cloned().unwrap_or_default();
        let dups: usize = got.values().map(|n| n - 1).sum();
        report.delivered.push((sink.to_owned(), got.len(), dups));
    }
    Ok(report)
}
