//! The command line: every subcommand and option, as `clap` derives them. What each does is
//! in `commands`; this module only names and documents them (the `--help` text).

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Inspect and operate Pulse streams, sinks, maps and pools.
#[derive(Debug, Parser)]
#[command(name = "pulse", version, about = "Inspect and operate Pulse streams, sinks, maps and pools.", long_about = None)]
pub struct Cli {
    /// The store: memory:, redb:file.redb, redis://…, rediss://…, redis+cluster://… (credentials in the URL
    /// are never printed).
    #[arg(long, global = true, env = "PULSE_BACKEND", default_value = "memory:")]
    pub backend: String,
    /// The key prefix of the application's keyspace.
    #[arg(long, global = true, env = "PULSE_KEYSPACE", default_value = "pulse")]
    pub keyspace: String,
    /// Print JSON (one document, or one per line for what follows live) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Event streams: info, tail, add, dead letters.
    #[command(subcommand)]
    Stream(StreamCmd),
    /// Sinks (consumer groups) of a stream: list, pending events, acknowledge.
    #[command(subcommand)]
    Sink(SinkCmd),
    /// Replicated maps: list, get, set, delete, watch.
    #[command(subcommand)]
    Map(MapCmd),
    /// Worker pools: jobs, workers, dispatch, stop, notify, call, events.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Send one request to a service stream and print the reply.
    Request(RequestArgs),
    /// Write a stream's entries as JSON lines, IDs and every field kept (a backup).
    Dump {
        /// The stream.
        stream: String,
    },
    /// Add the entries of a dump (JSON lines on standard input) under their own IDs.
    Restore {
        /// The stream (each ID must be above its last one).
        stream: String,
    },
    /// Serve the HTTP + JSON + SSE gateway (OpenAPI at /openapi.json) until interrupted.
    Serve(ServeArgs),
}

/// `pulse serve …`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen (loopback unless a token is set).
    #[arg(long, default_value = "127.0.0.1:2021")]
    pub listen: std::net::SocketAddr,
    /// The bearer token every request must carry (required off loopback).
    #[arg(long, env = "PULSE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body: usize,
    /// How long an event an SSE sink member was sent may stay unacknowledged before
    /// another member gets it.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub ack_grace: Duration,
    /// Refuse every change: the dashboard (`/ui`) shows no action, the API answers 403.
    #[arg(long)]
    pub read_only: bool,
    /// Seed demo data to look at (a pool, a stream with a sink and a dead letter, a map),
    /// kept alive by this process: meant for `--backend memory:`.
    #[arg(long)]
    pub demo: bool,
}

/// What an `ls` lists.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// At most this many names (the first ones in name order).
    #[arg(long, default_value_t = crate::listing::DEFAULT_LIMIT)]
    pub limit: usize,
}

/// `pulse stream …`
#[derive(Debug, Subcommand)]
pub enum StreamCmd {
    /// The streams of the keyspace, with their lengths and last IDs.
    Ls(LsArgs),
    /// Length, first and last IDs, sinks with pending counts and lag.
    Info {
        /// The stream.
        stream: String,
    },
    /// Print events: the last ones, or follow new ones.
    Tail(TailArgs),
    /// Add one event.
    Add(AddArgs),
    /// The dead letters of one sink.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCmd),
}

/// Where `tail` starts and what it prints.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The stream.
    pub stream: String,
    /// Only events whose subject matches this pattern (`*` one segment, `>` the rest).
    #[arg(long)]
    pub subject: Option<String>,
    /// Where to start: oldest, newest, or an event ID to resume after.
    #[arg(long, default_value = "oldest")]
    pub from: String,
    /// Stop after this many events.
    #[arg(long, short = 'n')]
    pub count: Option<usize>,
    /// Keep printing new events until interrupted (without it: stop when caught up).
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// What `add` adds.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The stream.
    pub stream: String,
    /// The event name.
    pub name: String,
    /// The payload (text; `--base64` for bytes).
    pub payload: String,
    /// The payload is base64.
    #[arg(long)]
    pub base64: bool,
    /// The event's subject (dotted, e.g. orders.eu.created).
    #[arg(long)]
    pub subject: Option<String>,
    /// A header, `name=value` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// Add it only once within the stream's dedup window for this key.
    #[arg(long)]
    pub dedup_key: Option<String>,
    /// Deliver it after this long (e.g. 30s, 5m, 250ms).
    #[arg(long, value_parser = parse_duration)]
    pub delay: Option<Duration>,
}

/// `pulse stream dead-letters …`
#[derive(Debug, Subcommand)]
pub enum DeadLettersCmd {
    /// List them, oldest first.
    Ls {
        /// The stream.
        stream: String,
        /// The sink.
        sink: String,
        /// At most this many.
        #[arg(long, short = 'n', default_value_t = 100)]
        count: usize,
    },
    /// Put one back into its stream (once).
    Requeue {
        /// The stream.
        stream: String,
        /// The sink.
        sink: String,
        /// The dead letter's ID (as `ls` prints it).
        id: String,
    },
    /// Delete them: the given IDs, or all with `--all`.
    Purge {
        /// The stream.
        stream: String,
        /// The sink.
        sink: String,
        /// The dead letters' IDs.
        ids: Vec<String>,
        /// Every dead letter of the sink.
        #[arg(long)]
        all: bool,
    },
}

/// `pulse sink …`
#[derive(Debug, Subcommand)]
pub enum SinkCmd {
    /// The sinks of a stream, with pending counts, lag and members.
    Ls {
        /// The stream.
        stream: String,
    },
    /// Events delivered and not acknowledged, with their delivery counts and idle times.
    Pending {
        /// The stream.
        stream: String,
        /// The sink.
        sink: String,
        /// At most this many.
        #[arg(long, short = 'n', default_value_t = 100)]
        count: usize,
    },
    /// Acknowledge events by ID (an operator's way out of a stuck event).
    Ack {
        /// The stream.
        stream: String,
        /// The sink.
        sink: String,
        /// The event IDs.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `pulse map …`
#[derive(Debug, Subcommand)]
pub enum MapCmd {
    /// The maps of the keyspace.
    Ls(LsArgs),
    /// One value, or every key and value.
    Get {
        /// The map.
        map: String,
        /// The key (without it: every key).
        key: Option<String>,
    },
    /// Set a value (replicas see it at once).
    Set {
        /// The map.
        map: String,
        /// The key.
        key: String,
        /// The value (text).
        value: String,
    },
    /// Delete a key.
    Del {
        /// The map.
        map: String,
        /// The key.
        key: String,
    },
    /// Print changes as they happen, until interrupted.
    Watch {
        /// The map.
        map: String,
    },
}

/// `pulse pool …`
#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// The pools of the keyspace (those with workers or jobs).
    Ls(LsArgs),
    /// Every job: group, worker, node, since when, moves; or why it waits.
    Jobs {
        /// The pool.
        pool: String,
    },
    /// Every worker: node, group, job count, liveness.
    Workers {
        /// The pool.
        pool: String,
    },
    /// Dispatch a job and wait for its start.
    Dispatch {
        /// The pool.
        pool: String,
        /// The job key.
        key: String,
        /// The payload (text).
        payload: String,
    },
    /// Stop a job for good.
    Stop {
        /// The pool.
        pool: String,
        /// The job key.
        key: String,
    },
    /// Send a notification to the worker running a job.
    Notify {
        /// The pool.
        pool: String,
        /// The job key.
        key: String,
        /// The payload (text).
        payload: String,
    },
    /// Ask the worker running a job and print its answer.
    Call {
        /// The pool.
        pool: String,
        /// The job key.
        key: String,
        /// The payload (text).
        payload: String,
        /// How long to wait for the answer.
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        timeout: Duration,
    },
    /// Print what happens in the pool, until interrupted.
    Events {
        /// The pool.
        pool: String,
    },
}

/// `pulse request …`
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The service stream.
    pub stream: String,
    /// The payload (text).
    pub payload: String,
    /// The request's event name.
    #[arg(long, default_value = "request")]
    pub name: String,
    /// How long to wait for the answer.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
}

/// Parses `250ms`, `30s`, `5m`, `2h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 250ms, 30s, 5m)"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} (ms, s, m, h)")),
    };
    if !seconds.is_finite() || !(0.0..=365.0 * 86400.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "5 parsecs", "-1s", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
