//! The real `incus` client against the daemon, and in a pseudo-terminal for the commands that
//! want one (`incus console` puts its terminal in raw mode): its output is collected by a
//! thread, and a test waits for a text with a deadline, types, and waits for it to exit.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use nix::pty::{Winsize, openpty};

nix::ioctl_read_bad!(bytes_waiting, nix::libc::FIONREAD, nix::libc::c_int);

use super::Daemon;

/// `incus` with `args`, pointed at `daemon` with a private configuration, as the README tells
/// people to (`INCUS_SOCKET`).
pub fn incus_command(incus: &Path, daemon: &Daemon, args: &[&str]) -> Command {
    let home = daemon.dir.path().join("incus-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut command = Command::new(incus);
    command
        .args(args)
        .env("INCUS_SOCKET", daemon.socket())
        .env("INCUS_CONF", home.join("config"))
        .env("HOME", &home)
        .env_remove("INCUS_DIR")
        .env_remove("INCUS_PROJECT");
    command
}

/// The time between two keys of [`Terminal::type_keys`]: a fast typist's.
pub const KEY_PACE: Duration = Duration::from_millis(200);

/// A command running in a pseudo-terminal of 80x24; killed when dropped.
pub struct Terminal {
    child: Child,
    master: File,
    /// Our copy of the command's end, to see what it has not read yet.
    slave: File,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Starts `command` with the terminal as its standard input, output and error.
    pub fn spawn(mut command: Command) -> Self {
        let size = Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).unwrap();
        let slave = File::from(pty.slave);
        command
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        let child = command.spawn().unwrap();
        let master = File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let collected = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Ends when the child and every copy of the slave are gone (EIO).
            while let Ok(length @ 1..) = reader.read(&mut buffer) {
                collected
                    .lock()
                    .unwrap()
                    .extend_from_slice(&buffer[..length]);
            }
        });
        Self {
            child,
            master,
            slave,
            output,
        }
    }

    /// Everything the command wrote so far, as text.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the output holds `text`, at most `deadline`; returns the output.
    pub fn wait_for(&self, text: &str, deadline: Duration) -> String {
        let started = Instant::now();
        loop {
            let output = self.output();
            if output.contains(text) {
                return output;
            }
            assert!(
                started.elapsed() < deadline,
                "{text:?} never appeared in the terminal:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `bytes`.
    pub fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Types `keys` one at a time, as a person types them: each once the command has read the
    /// one before, then [`KEY_PACE`] later. `incus console` sees ctrl+a q only when the two keys
    /// come to it in two reads, and what it does between them shows nowhere: its reading thread
    /// has taken the first key (which this waits for) well before it has handled it, so the
    /// second key follows at a typist's pace rather than at once.
    pub fn type_keys(&mut self, keys: &[u8], deadline: Duration) {
        for key in keys {
            std::thread::sleep(KEY_PACE);
            self.type_in(std::slice::from_ref(key));
            let started = Instant::now();
            loop {
                let mut waiting: nix::libc::c_int = 0;
                // SAFETY: FIONREAD writes one int, into `waiting`, for a descriptor we own.
                unsafe { bytes_waiting(self.slave.as_raw_fd(), &mut waiting) }.unwrap();
                if waiting == 0 {
                    break;
                }
                assert!(
                    started.elapsed() < deadline,
                    "the command never read {key:#x}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Waits for the command to exit, at most `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < deadline,
                "the command did not exit:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
