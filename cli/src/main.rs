//! The `pulse` binary: parses the command line and runs it (see the `pulse_cli` docs).

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = pulse_cli::args::Cli::parse();
    if let Err(e) = pulse_cli::run(cli).await {
        eprintln!("pulse: {e}");
        std::process::exit(e.exit_code());
    }
}
