//! `vgashot`: the daemon and its command-line client, in one binary. This file only wires the
//! crates together; [`cli`] holds the commands:
//! - `vgashot daemon` serves the REST API ([`cli::daemon`]), and `vgashot trust ...` edits the
//!   trust store of its TLS listener;
//! - `vgashot screenshot`, `list` and `watch` talk to a daemon, local over its Unix socket or
//!   remote over TLS (`--remote`), as the `incus` client does ([`cli::connection`]);
//! - `vgashot remote generate-certificate` makes the client certificate for remotes.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The daemon reports what it does; a client command prints only its results and errors, so
    // library logs stay below warnings unless asked for.
    let default_level = if cli.is_daemon() { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_env("VGASHOT_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .init();
    cli::run(cli)
}
