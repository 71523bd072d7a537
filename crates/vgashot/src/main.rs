//! `vgashot`: the daemon binary. It only wires the crates together:
//! 1. parse the command line (`vgashot daemon`, with `VGASHOT_DIR` as incusd has `INCUS_DIR`);
//! 2. open the qemu driver over `$VGASHOT_DIR` (re-attaching to VMs that still run);
//! 3. serve the REST API on `$VGASHOT_DIR/unix.socket` until SIGTERM or SIGINT;
//! 4. let go of the VMs without stopping them, so a restarted daemon finds them again.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vgashot_instance_drivers::{DriverPaths, QemuDriver};
use vgashot_rest::Daemon;

/// QEMU virtual machines behind an Incus-compatible REST API, with screenshots of their screens.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Daemon {
        /// Where the daemon keeps its socket (`unix.socket`), instance definitions and VM
        /// run-time files.
        #[arg(long, env = "VGASHOT_DIR", default_value = "/var/lib/vgashot")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_env("VGASHOT_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Command::Daemon { dir } => runtime.block_on(daemon(dir)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn daemon(dir: PathBuf) -> Result<(), String> {
    let paths = DriverPaths {
        state_dir: dir.clone(),
        runtime_dir: dir.join("run"),
    };
    let driver = QemuDriver::open(paths)
        .await
        .map_err(|error| vgashot_rest::describe(&error))?;
    let daemon = Daemon::new(driver.clone());
    let socket = dir.join("unix.socket");
    tracing::info!(socket = %socket.display(), "vgashot daemon listening");
    daemon
        .serve_unix(&socket, shutdown_signal())
        .await
        .map_err(|error| vgashot_rest::describe(&error))?;
    tracing::info!("shutting down; VMs keep running");
    driver.detach().await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
