//! One module per subcommand family; each is a thin layer over the library's public API,
//! with what they share here: the opened backend, the keyspace, the output mode.

mod dump;
mod maps;
mod pools;
mod sinks;
mod streams;

use std::sync::Arc;

use pulse::{
    keys::Keyspace,
    streaming::{Stream, StreamOptions},
    Backend,
};

use crate::{
    args::{Cli, Command},
    output::Out,
    Failure,
};

/// What every command gets.
pub(crate) struct Ctx {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) keyspace: Keyspace,
    pub(crate) out: Out,
}

impl Ctx {
    /// Stream `name` of the keyspace.
    pub(crate) fn stream(&self, name: &str) -> Result<Stream, Failure> {
        Ok(Stream::new(
            self.backend.clone(),
            name,
            StreamOptions::default().with_keyspace(self.keyspace.clone()),
        )?)
    }
}

pub(crate) async fn run(cli: Cli) -> Result<(), Failure> {
    let keyspace = Keyspace::new(&cli.keyspace)?;
    let backend = pulse_connect::open(&cli.backend).await?;
    let cx = Ctx {
        backend,
        keyspace,
        out: Out { json: cli.json },
    };
    match cli.command {
        Command::Stream(c) => streams::run(&cx, c).await,
        Command::Sink(c) => sinks::run(&cx, c).await,
        Command::Map(c) => maps::run(&cx, c).await,
        Command::Pool(c) => pools::run(&cx, c).await,
        Command::Request(a) => streams::request(&cx, a).await,
        Command::Dump { stream } => dump::dump(&cx, &stream).await,
        Command::Restore { stream } => dump::restore(&cx, &stream).await,
        Command::Serve(a) => {
            let options = crate::gateway::ServeOptions {
                listen: a.listen,
                token: a.token,
                max_body: a.max_body,
                ack_grace: a.ack_grace,
                read_only: a.read_only,
            };
            let _demo = if a.demo {
                Some(crate::demo::seed(cx.backend.clone(), cx.keyspace.clone()).await?)
            } else {
                None
            };
            crate::gateway::serve(cx.backend, cx.keyspace, options).await
        }
    }
}

/// A count for a table cell: `-` when unknown.
pub(crate) fn count_cell(n: Option<u64>) -> String {
    n.map_or("-".into(), |n| n.to_string())
}

/// Parses an event ID given on the command line.
pub(crate) fn entry_id(text: &str) -> Result<pulse::backend::EntryId, Failure> {
    text.parse().map_err(|_| {
        Failure::Input(format!(
            "{text:?} is not an event ID (ms-seq, e.g. 1700000000000-0)"
        ))
    })
}

/// Waits for Ctrl-C (what ends the commands that follow something live).
pub(crate) async fn interrupted() {
    let _ = tokio::signal::ctrl_c().await;
}
