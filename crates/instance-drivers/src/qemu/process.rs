//! Watching a detached QEMU process, which is not our child: no `waitpid`, only its pid.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Whether `pid` is a live process (a zombie, which is dead but not yet reaped by whoever
/// adopted it, counts as gone).
pub fn alive(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => !zombie(pid),
        Err(_) => false,
    }
}

fn zombie(pid: i32) -> bool {
    // /proc/PID/stat is "PID (COMM) STATE ..."; COMM may hold spaces and parentheses, so the
    // state is the first field after the last ')'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after) = stat.rsplit_once(')')?;
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// Whether `pid` is the QEMU that serves `qmp_socket`, so a pid reused by another process after
/// a reboot or a crash is never mistaken for our VM.
pub fn is_qemu_serving(pid: i32, qmp_socket: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // The command line holds the path with its commas doubled (QEMU's option escape).
    let socket = vgashot_qemu_process::escape_commas(qmp_socket.as_os_str());
    let socket = socket.as_encoded_bytes();
    cmdline
        .split(|&byte| byte == 0)
        .any(|arg| arg.windows(socket.len()).any(|window| window == socket))
}

/// Sends `signal` to `pid`; a process already gone is not an error.
pub fn signal(pid: i32, signal: Signal) {
    if let Err(error) = kill(Pid::from_raw(pid), signal) {
        tracing::debug!(pid, %error, "could not signal QEMU");
    }
}

/// Waits up to `bound` for `pid` to be gone, polling; returns whether it is.
pub async fn wait_gone(pid: i32, bound: Duration) -> bool {
    let started = Instant::now();
    loop {
        if !alive(pid) {
            return true;
        }
        if started.elapsed() >= bound {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a running process uses, read from `/proc`.
pub fn usage(pid: i32) -> Option<crate::instance::ResourceUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which ends at the last ')': state is field 3, so index i
    // here is field i + 3. utime 14, stime 15, starttime 22 (clock ticks).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let tick = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    let ticks_per_second = clock_ticks_per_second();
    let cpu_ticks = tick(14)? + tick(15)?;
    let started_ticks = tick(22)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let boot = boot_time()?;
    Some(crate::instance::ResourceUsage {
        memory_bytes: rss_kib * 1024,
        cpu_nanoseconds: cpu_ticks * 1_000_000_000 / ticks_per_second,
        started_at: boot + Duration::from_millis(started_ticks * 1000 / ticks_per_second),
    })
}

fn clock_ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|ticks| u64::try_from(ticks).ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// When the machine booted, from `btime` in `/proc/stat`.
fn boot_time() -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let seconds: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn an_unreaped_child_counts_as_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let started = Instant::now();
        while !zombie(pid) {
            assert!(started.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!alive(pid));
        child.wait().unwrap();
    }

    #[test]
    fn usage_of_this_process_is_plausible() {
        let usage = usage(std::process::id() as i32).unwrap();
        assert!(usage.memory_bytes > 0);
        let age = std::time::SystemTime::now()
            .duration_since(usage.started_at)
            .unwrap();
        assert!(age < Duration::from_secs(3600), "{age:?}");
    }

    #[test]
    fn another_process_does_not_serve_our_socket() {
        let pid = std::process::id() as i32;
        assert!(!is_qemu_serving(
            pid,
            Path::new("/run/vgashot/nope/qmp.sock")
        ));
    }
}
