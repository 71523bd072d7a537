//! The command line: the daemon, its trust store, and client commands for people who live in a
//! terminal.
//!
//! How a client command runs:
//! 1. clap parses the command; every client command takes the same connection options
//!    ([`connection::ConnectionArgs`]): the local socket by default, or `--remote`.
//! 2. [`connection::connect`] makes a [`vgashot_client::Client`] for either transport,
//!    pinning a remote's certificate as `incus remote add` does.
//! 3. The command talks to the API; any failure comes back here as a [`CliError`] and is printed
//!    as the `incus` client prints errors, `Error: MESSAGE` on stderr with exit status 1, so
//!    scripts and people see the daemon's own words (`Error: Instance is not running`).

pub mod connection;
pub mod daemon;
pub mod history;
pub mod list;
pub mod picture;
pub mod screenshot;
pub mod terminal;
pub mod ui;
pub mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vgashot_client::ClientError;

/// QEMU virtual machines behind an Incus-compatible REST API, with screenshots of their screens.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    /// Where the daemon keeps its socket (`unix.socket`), TLS certificate (`server.crt`,
    /// `server.key`), trust store (`trust/`), instance definitions and VM run-time files.
    /// Client commands find the local daemon's socket here.
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
        #[command(flatten)]
        host: daemon::HostArgs,
    },
    /// Manage the client certificates trusted over TLS.
    Trust {
        #[command(subcommand)]
        command: daemon::TrustCommand,
    },
    /// Save a screenshot of an instance's screen to a file.
    Screenshot(screenshot::ScreenshotArgs),
    /// List an instance's screen history: what its screen showed, when and why.
    History(history::HistoryArgs),
    /// List instances, with their status and type (and screen sizes with --screens).
    List(list::ListArgs),
    /// Show an instance's screen in the terminal, redrawn when it changes.
    ///
    /// The screen is drawn with the kitty graphics protocol, iTerm2 inline images or sixel,
    /// whichever the terminal supports (told by TERM, TERM_PROGRAM and similar variables, or
    /// chosen with --graphics). A terminal that shows no images gets the URL of the screen's
    /// MJPEG stream and the curl command that fetches it.
    Watch(watch::WatchArgs),
    /// Manage this client's access to remote daemons.
    Remote {
        #[command(subcommand)]
        command: connection::RemoteCommand,
    },
    /// Serve the web page on a loopback port for this machine's browser, through the local
    /// daemon's socket, and open it.
    ///
    /// Prints the page's address, with a token that is good once: the browser that opens it gets
    /// a session cookie, and every other request is refused. Needs no TLS listener and no client
    /// certificate, only the right to use the daemon's socket.
    Ui(ui::UiArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (vgashot.1 and one per command) into a directory.
    #[command(hide = true)]
    Manpage {
        /// The directory, made if missing.
        dir: PathBuf,
    },
}

impl Cli {
    /// Whether this runs the daemon (which logs its work) rather than a one-shot command.
    pub fn is_daemon(&self) -> bool {
        matches!(self.command, Command::Daemon { .. })
    }
}

/// Why a command failed; printed as `Error: ...`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon refused or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The connection options could not be turned into a client.
    #[error(transparent)]
    Connection(#[from] connection::ConnectionError),
    /// The screenshot could not be saved.
    #[error(transparent)]
    Screenshot(#[from] screenshot::ScreenshotError),
    /// The terminal could not be drawn on.
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
    /// The daemon or the trust store failed; the daemon reports through its log.
    #[error("{0}")]
    Daemon(String),
    /// The web page's proxy could not start.
    #[error(transparent)]
    Ui(#[from] vgashot_ui_proxy::UiProxyError),
    /// The man pages could not be written.
    #[error("cannot write the man pages in {}", dir.display())]
    Manpage {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Tokio could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Runs the command and turns its outcome into the exit status.
pub fn run(cli: Cli) -> ExitCode {
    let dir = cli.dir;
    let outcome = match cli.command {
        Command::Daemon { listen, host } => runtime(true).and_then(|runtime| {
            runtime
                .block_on(daemon::daemon(dir, listen, host))
                .map_err(CliError::Daemon)
        }),
        Command::Trust { command } => daemon::trust(&dir, command).map_err(CliError::Daemon),
        Command::Remote { command } => connection::remote(command).map_err(CliError::from),
        Command::Screenshot(args) => {
            runtime(false).and_then(|runtime| runtime.block_on(screenshot::run(&dir, args)))
        }
        Command::History(args) => {
            runtime(false).and_then(|runtime| runtime.block_on(history::run(&dir, args)))
        }
        Command::List(args) => {
            runtime(false).and_then(|runtime| runtime.block_on(list::run(&dir, args)))
        }
        Command::Watch(args) => {
            runtime(false).and_then(|runtime| runtime.block_on(watch::run(&dir, args)))
        }
        Command::Ui(args) => {
            runtime(true).and_then(|runtime| runtime.block_on(ui::run(&dir, args)))
        }
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "vgashot",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Manpage { dir } => write_man_pages(&dir),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Daemon(message)) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("Error: {}", vgashot_rest::describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// Writes `vgashot.1` and `vgashot-COMMAND.1` for each command (and subcommand) into `dir`.
fn write_man_pages(dir: &std::path::Path) -> Result<(), CliError> {
    use clap::CommandFactory as _;
    let failed = |source| CliError::Manpage {
        dir: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(failed)
}

/// The daemon serves many clients at once; a client command needs one thread.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, CliError> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(CliError::Runtime)
}

pub use vgashot_client::instance_path;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
