//! `pulse-chaos`: the chaos harness's command line (see the library docs for what it does).
//!
//! ```text
//! cargo run --release -p pulse-chaos                    # the short run (~2 min, as in CI)
//! cargo run --release -p pulse-chaos -- --duration 600  # a long run: 10 min of pool faults
//! cargo run --release -p pulse-chaos -- --only pool --seed 42
//! cargo run --release -p pulse-chaos -- --call-faults 0.02   # and 2% of calls fail
//! cargo run --release -p pulse-chaos -- --cluster            # on a 3-master Redis Cluster
//! ```
//!
//! Options: `--duration SECS` (pool faults; streams get a third of it, at least 20 s),
//! `--jobs N` (1000), `--seed N` (default: from the clock, printed), `--only
//! pool|streams|rmap`, `--report FILE` (also write the results as Markdown), `--call-faults
//! RATE` (0–1: that share of every child process's backend calls fails, half before
//! reaching Redis and half after it applied them; default 0), `--cluster` (run on a private
//! 3-master Redis Cluster instead of one server). Exit status 1
//! when any promise was broken, 2 on a harness error.
//!
//! `pulse-chaos role <pool-worker|producer|member|replica>` is how the harness starts its
//! child processes; it is not meant to be run by hand.

use std::{fmt::Write as _, time::Duration};

use pulse_chaos::{pool, print_faults, rmap, streams, summarize, Fault, Harness};

struct Args {
    duration: Duration,
    jobs: usize,
    seed: u64,
    only: Option<String>,
    report: Option<String>,
    call_faults: f64,
    cluster: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        duration: Duration::from_secs(60),
        jobs: 1000,
        seed: pulse_chaos::ledger::now_us(),
        only: None,
        report: None,
        call_faults: 0.0,
        cluster: false,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => {
                a.duration = Duration::from_secs(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--jobs" => a.jobs = value()?.parse().map_err(|e| format!("{e}"))?,
            "--seed" => a.seed = value()?.parse().map_err(|e| format!("{e}"))?,
            "--only" => a.only = Some(value()?),
            "--report" => a.report = Some(value()?),
            "--call-faults" => {
                a.call_faults = value()?.parse().map_err(|e| format!("{e}"))?;
                if !(0.0..=1.0).contains(&a.call_faults) {
                    return Err("--call-faults takes a share between 0 and 1".into());
                }
            }
            "--cluster" => a.cluster = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

async fn role(name: &str) -> Result<(), String> {
    match name {
        "pool-worker" => pool::worker_role().await,
        "producer" => streams::producer_role().await,
        "member" => streams::member_role().await,
        "replica" => rmap::replica_role().await,
        other => Err(format!("unknown role {other:?}")),
    }
}

fn fault_rows(out: &mut String, faults: &[Fault]) {
    let _ = writeln!(
        out,
        "| fault | times | not recovered | median recovery | slowest |\n|---|---|---|---|---|"
    );
    for (kind, n, failed, median, max) in summarize(faults) {
        let _ = writeln!(
            out,
            "| {kind} | {n} | {failed} | {} ms | {} ms |",
            median.as_millis(),
            max.as_millis()
        );
    }
}

async fn run(args: &Args) -> Result<bool, String> {
    let wanted = |s: &str| args.only.as_deref().is_none_or(|o| o == s);
    let mut passed = true;
    let mut md = format!(
        "Seed {}; {}; pool faults for {} s; {}.\n\n",
        args.seed,
        if args.cluster {
            "a 3-master Redis Cluster"
        } else {
            "one Redis server"
        },
        args.duration.as_secs(),
        if args.call_faults > 0.0 {
            format!(
                "{:.1}% of every child process's backend calls fail (half before reaching \
                 Redis, half after it applied them)",
                args.call_faults * 100.0
            )
        } else {
            "no injected call failures".to_owned()
        }
    );
    if wanted("pool") {
        let h = Harness::start("pool", args.seed, args.call_faults, args.cluster)?;
        let cfg = pool::Config {
            duration: args.duration,
            jobs: args.jobs,
            workers: 4,
            ttl: Duration::from_secs(2),
        };
        let r = pool::run(&h, &cfg).await?;
        println!(
            "\n== pool: {} jobs, {} workers at the start, worker TTL 2 s",
            r.dispatched, cfg.workers
        );
        println!("  handler starts recorded:        {}", r.starts);
        println!("  jobs lost:                      {}", r.lost.len());
        println!("  jobs running twice at once:     {}", r.overlapping.len());
        println!("  jobs not running at the end:    {}", r.not_running.len());
        println!("  jobs outside their group:       {}", r.misplaced.len());
        println!(
            "  unexpected worker exits:        {}",
            r.unexpected_exits.len()
        );
        for line in r
            .lost
            .iter()
            .chain(&r.overlapping)
            .chain(&r.not_running)
            .chain(&r.misplaced)
            .chain(&r.unexpected_exits)
            .take(20)
        {
            println!("    ! {line}");
        }
        println!(
            "  faults ({}), time until every job ran again:",
            r.faults.len()
        );
        print_faults(&r.faults);
        let _ = writeln!(
            md,
            "### Pool\n\n{} jobs, 4 worker processes at the start (two groups), worker TTL 2 s: \
             {} handler starts; **{} lost, {} running twice at once, {} not running at the \
             end, {} outside their group**.\n",
            r.dispatched,
            r.starts,
            r.lost.len(),
            r.overlapping.len(),
            r.not_running.len(),
            r.misplaced.len()
        );
        fault_rows(&mut md, &r.faults);
        passed &= r.passed();
    }
    if wanted("streams") {
        let h = Harness::start("streams", args.seed, args.call_faults, args.cluster)?;
        let cfg = streams::Config {
            duration: (args.duration / 3).max(Duration::from_secs(20)),
            producers: 2,
            members: 2,
            ack_grace: Duration::from_secs(2),
        };
        let r = streams::run(&h, &cfg).await?;
        println!(
            "\n== streams: {} producers, 2 sinks of {} members, ack grace 2 s",
            cfg.producers, cfg.members
        );
        println!("  acknowledged adds:              {}", r.acknowledged);
        for (sink, distinct, dups) in &r.delivered {
            println!("  sink {sink}: {distinct} distinct events delivered, {dups} duplicates");
        }
        println!("  acknowledged but never delivered: {}", r.missing.len());
        for line in r.unexpected_exits.iter().take(10) {
            println!("    ! {line}");
        }
        for (sink, e) in r.missing.iter().take(10) {
            println!("    ! {sink} never got {e}");
        }
        println!(
            "  faults ({}), time until everything acknowledged was delivered:",
            r.faults.len()
        );
        print_faults(&r.faults);
        let _ = writeln!(
            md,
            "\n### Streams\n\n2 producer processes, 2 sinks of 2 member processes: {} \
             acknowledged adds; **{} never delivered**; {}.\n",
            r.acknowledged,
            r.missing.len(),
            r.delivered
                .iter()
                .map(|(s, n, d)| format!("sink {s} got {n} distinct events with {d} duplicates"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        fault_rows(&mut md, &r.faults);
        passed &= r.passed();
    }
    if wanted("rmap") {
        let h = Harness::start("rmap", args.seed, args.call_faults, args.cluster)?;
        let cfg = rmap::Config {
            replicas: 3,
            burst: 200,
            rounds: 2,
        };
        let r = rmap::run(&h, &cfg).await?;
        println!(
            "\n== rmap: {} replica processes, {} writes after each fault",
            cfg.replicas, cfg.burst
        );
        println!(
            "  faults ({}), time from the last write until every replica equals Redis:",
            r.faults.len()
        );
        print_faults(&r.faults);
        let _ = writeln!(
            md,
            "\n### Replicated map\n\n3 replica processes; after each fault the harness writes \
             {} values, then times until every replica's content equals the hash in Redis.\n",
            cfg.burst
        );
        fault_rows(&mut md, &r.faults);
        passed &= r.passed();
    }
    if let Some(path) = &args.report {
        std::fs::write(path, md).map_err(|e| format!("write {path}: {e}"))?;
    }
    println!(
        "\n{}",
        if passed {
            "CHAOS PASSED"
        } else {
            "CHAOS FAILED"
        }
    );
    Ok(passed)
}

#[tokio::main]
async fn main() {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().is_some_and(|a| a == "role") {
        let name = argv.nth(1).unwrap_or_default();
        // `PULSE_LOG=pulse=debug` (inherited from the harness) puts the library's logs in
        // each process's `.err` file beside its ledger.
        if let Ok(spec) = std::env::var("PULSE_LOG") {
            use tracing_subscriber::{
                filter::Targets, layer::SubscriberExt, util::SubscriberInitExt,
            };
            if let Ok(filter) = spec.parse::<Targets>() {
                let _ = tracing_subscriber::registry()
                    .with(
                        tracing_subscriber::fmt::layer()
                            .with_ansi(false)
                            .with_writer(std::io::stderr),
                    )
                    .with(filter)
                    .try_init();
            }
        }
        if let Err(e) = role(&name).await {
            eprintln!("role {name}: {e}");
            std::process::exit(2);
        }
        return;
    }
    let args = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pulse-chaos: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "pulse-chaos: seed {} (replay with --seed {})",
        args.seed, args.seed
    );
    match run(&args).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("pulse-chaos: {e}");
            std::process::exit(2);
        }
    }
}
