//! `vgashot ui` as a user runs it: the real binary over a test daemon's directory, its printed
//! address read from stdout, and the process killed when the test ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::Daemon;

/// A running `vgashot ui`.
pub struct UiProxy {
    child: Child,
    /// The address it printed, with its one-time token.
    pub url: String,
    /// Its origin, `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its `HOST:PORT`.
    pub address: String,
}

impl UiProxy {
    /// Starts `vgashot ui --no-browser` for `daemon` and waits for the address it prints.
    pub fn start(daemon: &Daemon) -> Self {
        let mut child = Command::new(super::daemon_binary())
            .args(["ui", "--no-browser"])
            .env("VGASHOT_DIR", daemon.dir.path())
            .env("VGASHOT_LOG", "warn")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        // The first line comes once the proxy listens, or stdout closes when it fails.
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_owned();
        let address = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
            .map(|(address, _)| address.to_owned())
            .unwrap_or_else(|| panic!("vgashot ui printed {line:?}"));
        Self {
            child,
            base: format!("http://{address}"),
            url,
            address,
        }
    }
}

impl Drop for UiProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
