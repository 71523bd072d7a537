//! `vgashot ui`: the web page in a local browser, for whoever may use the daemon's socket.
//!
//! 1. Ask the daemon for `GET /1.0` over its socket first, so a user who may not use it (or a
//!    daemon that is not running) hears so now, not from every request of the page.
//! 2. Bind the loopback proxy ([`vgashot_ui_proxy::UiProxy`]) on `--listen` or a free port of
//!    127.0.0.1, and print the page's address with its one-time token on stdout, alone on its
//!    line, for people and scripts.
//! 3. Open it with the desktop's opener (`xdg-open`) when there is a desktop (`DISPLAY` or
//!    `WAYLAND_DISPLAY`) and `--no-browser` is not given; without one, or when the opener is
//!    missing or fails, the printed address is all, and nothing fails.
//! 4. Serve until SIGTERM or SIGINT (Ctrl-C).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Args;
use vgashot_client::Client;
use vgashot_ui_proxy::UiProxy;

use super::CliError;

/// `vgashot ui`'s options.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// The loopback address to serve the page on [default: a free port of 127.0.0.1].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// The local daemon's Unix socket [default: $VGASHOT_DIR/unix.socket].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Only print the page's address; do not open a browser.
    #[arg(long)]
    no_browser: bool,
}

/// Runs `vgashot ui` (steps 1 to 4).
pub async fn run(dir: &Path, args: UiArgs) -> Result<(), CliError> {
    let socket = args.socket.unwrap_or_else(|| dir.join("unix.socket"));
    Client::new(socket.clone())
        .request("GET", "/1.0", None)
        .await?;
    let address = args
        .listen
        .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let proxy = UiProxy::bind(address, socket).await?;
    let url = proxy.url();
    println!("{url}");
    eprintln!(
        "The web page is at the address above, for a browser on this machine (its token is good \
         once). Ctrl-C stops it."
    );
    if !args.no_browser {
        open_in_browser(&url);
    }
    proxy.serve(super::daemon::shutdown_signal()).await;
    Ok(())
}

/// Step 3: hands `url` to `xdg-open` when there is a desktop; reaps it in the background.
fn open_in_browser(url: &str) {
    let desktop = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    if !desktop {
        return;
    }
    let opened = tokio::process::Command::new("xdg-open")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match opened {
        Ok(mut opener) => {
            tokio::spawn(async move {
                let _ = opener.wait().await;
            });
        }
        Err(error) => eprintln!("(cannot run xdg-open: {error}; open the address yourself)"),
    }
}
