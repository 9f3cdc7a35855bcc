//! # pulse-cli
//!
//! The `pulse` command: inspect and operate Pulse's streams, sinks, maps and pools from a
//! shell, with tables for people and `--json` for scripts.
//!
//! ```text
//! pulse --backend redis://127.0.0.1:6379/ stream info orders
//! pulse stream tail orders --subject 'orders.eu.>' --follow
//! pulse sink pending orders billing
//! pulse pool jobs feeds --json
//! ```
//!
//! Module map: `args` (the command line), `commands` (one module per subcommand family,
//! each a thin layer over the library's public API), `listing` (what a keyspace holds),
//! `gateway` (`pulse serve` and its dashboard), `demo` (`pulse serve --demo`), `output` (tables, JSON, payloads).
//! Exit status: 0 on success, 1 when the operation failed (the store, a timeout, a remote
//! error), 2 for bad input (an invalid name, argument or ID), 3 when what was asked for
//! does not exist.

pub mod args;
mod commands;
pub mod demo;
pub mod gateway;
pub mod listing;
pub mod output;

use pulse::Error;

/// Why the command failed, and its exit status.
#[derive(Debug)]
pub enum Failure {
    /// The library refused or failed.
    Pulse(Error),
    /// Bad input found by the command itself.
    Input(String),
    /// What was asked for does not exist.
    NotFound(String),
}

impl Failure {
    /// The process exit status for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Pulse(
                Error::InvalidName { .. }
                | Error::InvalidKey { .. }
                | Error::InvalidArgument(_)
                | Error::PayloadTooLarge { .. }
                | Error::Config(_),
            )
            | Failure::Input(_) => 2,
            Failure::NotFound(_) => 3,
            Failure::Pulse(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Pulse(e) => write!(f, "{e}"),
            Failure::Input(m) | Failure::NotFound(m) => write!(f, "{m}"),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Pulse(e)
    }
}

/// Runs the parsed command line.
pub async fn run(cli: args::Cli) -> Result<(), Failure> {
    commands::run(cli).await
}
