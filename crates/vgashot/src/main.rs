//! `vgashot`: the daemon binary. It only wires the crates together:
//! 1. parse the command line (`vgashot daemon`, `vgashot trust ...`, with `VGASHOT_DIR` as incusd
//!    has `INCUS_DIR`);
//! 2. open the qemu driver over `$VGASHOT_DIR` (re-attaching to VMs that still run);
//! 3. with `--listen` (or `VGASHOT_HTTPS_ADDRESS`, as Incus's `core.https_address`), bind the
//!    TLS listener with the certificate of `$VGASHOT_DIR` (made on first use) before serving, so
//!    a bad address fails the start rather than a later request;
//! 4. serve the REST API on `$VGASHOT_DIR/unix.socket` (and the TLS listener) until SIGTERM or
//!    SIGINT, which stop both;
//! 5. let go of the VMs without stopping them, so a restarted daemon finds them again.
//!
//! `vgashot trust add|list|remove` edit the trust store `$VGASHOT_DIR/trust/` directly; a running
//! daemon reads it at every new TLS connection, so no restart is needed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vgashot_instance_drivers::{DriverPaths, QemuDriver};
use vgashot_rest::trust::Added;
use vgashot_rest::{Daemon, HttpsListener, TrustStore};

/// QEMU virtual machines behind an Incus-compatible REST API, with screenshots of their screens.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Where the daemon keeps its socket (`unix.socket`), TLS certificate (`server.crt`,
    /// `server.key`), trust store (`trust/`), instance definitions and VM run-time files.
    #[arg(
        long,
        env = "VGASHOT_DIR",
        default_value = "/var/lib/vgashot",
        global = true
    )]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Daemon {
        /// Also serve the API over TCP with TLS on this address (`HOST:PORT`, `HOST` for port
        /// 8443, or `:PORT` for every address); clients are trusted by certificate.
        #[arg(long, env = "VGASHOT_HTTPS_ADDRESS", value_name = "ADDR:PORT")]
        listen: Option<String>,
    },
    /// Manage the client certificates trusted over TLS.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
    /// Trust the client certificate in a PEM file.
    Add {
        /// The certificate (PEM); only the certificate is copied, never a key beside it.
        file: PathBuf,
    },
    /// Print the fingerprints of the trusted certificates, one a line.
    List,
    /// Stop trusting a certificate, named by its fingerprint or a unique prefix of it.
    Remove {
        /// The SHA-256 fingerprint, as `list` prints it.
        fingerprint: String,
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
    let outcome = match cli.command {
        Command::Daemon { listen } => match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(daemon(cli.dir, listen)),
            Err(error) => Err(format!("cannot start the async runtime: {error}")),
        },
        Command::Trust { command } => trust(&TrustStore::new(cli.dir.join("trust")), command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn daemon(dir: PathBuf, listen: Option<String>) -> Result<(), String> {
    let paths = DriverPaths {
        state_dir: dir.clone(),
        runtime_dir: dir.join("run"),
    };
    let driver = QemuDriver::open(paths)
        .await
        .map_err(|error| vgashot_rest::describe(&error))?;
    let https = match listen.as_deref().filter(|address| !address.is_empty()) {
        Some(address) => {
            let listener = HttpsListener::bind(address, &dir)
                .await
                .map_err(|error| vgashot_rest::describe(&error))?;
            tracing::info!(
                addresses = ?listener.identity().addresses,
                fingerprint = listener.identity().certificate_fingerprint,
                "vgashot daemon listening with TLS"
            );
            Some(listener)
        }
        None => None,
    };
    let daemon = Daemon::new(driver.clone());
    let socket = dir.join("unix.socket");
    tracing::info!(socket = %socket.display(), "vgashot daemon listening");
    daemon
        .serve(&socket, https, shutdown_signal())
        .await
        .map_err(|error| vgashot_rest::describe(&error))?;
    tracing::info!("shutting down; VMs keep running");
    driver.detach().await;
    Ok(())
}

/// `vgashot trust ...`: results on stdout, one a line, for scripts.
fn trust(store: &TrustStore, command: TrustCommand) -> Result<(), String> {
    let describe = |error: vgashot_rest::trust::TrustError| vgashot_rest::describe(&error);
    match command {
        TrustCommand::Add { file } => match store.add(&file).map_err(describe)? {
            Added::New(certificate) => println!("{}", certificate.fingerprint),
            Added::AlreadyTrusted(certificate) => {
                eprintln!("already trusted");
                println!("{}", certificate.fingerprint);
            }
        },
        TrustCommand::List => {
            for certificate in store.list().map_err(describe)? {
                println!("{}", certificate.fingerprint);
            }
        }
        TrustCommand::Remove { fingerprint } => {
            let removed = store.remove(&fingerprint).map_err(describe)?;
            println!("{}", removed.fingerprint);
        }
    }
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
