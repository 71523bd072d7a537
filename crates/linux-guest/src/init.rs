//! The guest's `/init` and the kernel command line that steers it.
//!
//! What the init does, in order:
//! 1. Installs busybox's applets as links in `/bin`, mounts `/proc`, `/sys` and `/dev`, and
//!    reads its choices from the kernel command line (`/proc/cmdline`), each one documented on
//!    [`BootOptions`].
//! 2. Loads the kernel modules listed in `/lib/modules/load-order` (see [`crate::modules`]):
//!    the bochs DRM driver, which gives the std VGA a framebuffer console (skipped with
//!    `vgashot.framebuffer=0`, for [`Console::Text`]), and pvpanic, which tells QEMU when the
//!    guest kernel panics. A module whose device is absent loads harmlessly.
//! 3. Prints [`KERNEL_LINE_PREFIX`] with the kernel release and then [`READY_LINE`] on the VGA
//!    console (`tty1`) and the serial port (`ttyS0`), so a test sees the same lines on the screen
//!    and in the console log.
//! 4. Acts on them: `vgashot.panic_after=SECONDS` panics the kernel that many seconds later
//!    (`echo c > /proc/sysrq-trigger`, after printing [`PANIC_LINE`]);
//!    `vgashot.poweroff_after=SECONDS` powers the machine off that many seconds later (`poweroff
//!    -f`, ACPI's soft-off, after printing [`POWEROFF_LINE`]); `vgashot.serial_shell=1`
//!    runs a shell on `ttyS0`, which echoes what it reads; `vgashot.tty_shell=0` leaves `tty1`
//!    without a shell. The kernel's own `consoleblank=SECONDS` blanks the screen.
//! 5. Runs the shells, started again whenever they exit, and otherwise idles: PID 1 never exits,
//!    which would panic the kernel by accident.

use std::fmt::Write;
use std::time::Duration;

/// The line the init prints once the guest is up.
pub const READY_LINE: &str = "vgashot guest ready";
/// The start of the line the init prints with the kernel release (`uname -r`) after it.
pub const KERNEL_LINE_PREFIX: &str = "vgashot guest kernel ";
/// The line the init prints just before it panics the kernel on request.
pub const PANIC_LINE: &str = "vgashot guest panics now";
/// The line the init prints just before it powers the machine off on request.
pub const POWEROFF_LINE: &str = "vgashot guest powers off now";

/// The `/init` script (busybox `sh`).
pub(crate) const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
# vgashot's test guest; see crates/linux-guest/src/init.rs for what each step is for.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

framebuffer=1
panic_after=
poweroff_after=
serial_shell=0
tty_shell=1
for parameter in $(cat /proc/cmdline); do
    case "$parameter" in
        vgashot.framebuffer=*) framebuffer="${parameter#*=}" ;;
        vgashot.panic_after=*) panic_after="${parameter#*=}" ;;
        vgashot.poweroff_after=*) poweroff_after="${parameter#*=}" ;;
        vgashot.serial_shell=*) serial_shell="${parameter#*=}" ;;
        vgashot.tty_shell=*) tty_shell="${parameter#*=}" ;;
    esac
done

while read -r group module; do
    [ "$group" = framebuffer ] && [ "$framebuffer" = 0 ] && continue
    [ -d "/sys/module/$(echo "$module" | tr - _)" ] && continue
    insmod "/lib/modules/$module.ko" || echo "vgashot guest: cannot load $module" > /dev/ttyS0
done < /lib/modules/load-order

say() {
    echo "$*" > /dev/tty1
    echo "$*" > /dev/ttyS0
}

say "vgashot guest kernel $(uname -r)"
say "vgashot guest ready"

# A shell on a terminal, started again when it exits (`exit` or Ctrl-D).
shell_on() {
    while true; do
        setsid -c sh -i < "$1" > "$1" 2>&1
    done
}
[ "$tty_shell" = 1 ] && shell_on /dev/tty1 &
[ "$serial_shell" = 1 ] && shell_on /dev/ttyS0 &

if [ -n "$panic_after" ]; then
    sleep "$panic_after"
    say "vgashot guest panics now"
    echo c > /proc/sysrq-trigger
fi
if [ -n "$poweroff_after" ]; then
    sleep "$poweroff_after"
    say "vgashot guest powers off now"
    poweroff -f
fi
while true; do
    sleep 3600
done
"#;

/// Which console the guest's screen shows; each needs its own kernel file
/// ([`crate::LinuxGuest::kernel`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Console {
    /// fbcon on the bochs DRM driver, 1280x800: the fast boot; a panic does not reach the
    /// screen.
    #[default]
    Framebuffer,
    /// The VGA text console, 80x25 (720x400): a slower boot under TCG; a panic shows.
    Text,
}

impl Console {
    /// The kernel's file name in the cache.
    pub(crate) fn kernel_file(self) -> &'static str {
        match self {
            Self::Framebuffer => "vmlinux",
            Self::Text => "vmlinuz",
        }
    }
}

/// The guest's choices, written on the kernel command line by [`BootOptions::cmdline`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootOptions {
    /// The console on the screen; [`Console::Text`] adds `vgashot.framebuffer=0`, so the init
    /// does not load the bochs driver over the text console. Boot its kernel with it.
    pub console: Console,
    /// `vgashot.panic_after=SECONDS`: panic the guest kernel this long after [`READY_LINE`]
    /// (whole seconds; zero panics at once). `None`: never, unless asked from a shell with
    /// `echo c > /proc/sysrq-trigger`.
    pub panic_after: Option<Duration>,
    /// `vgashot.poweroff_after=SECONDS`: power the machine off (ACPI soft-off, as `poweroff -f`)
    /// this long after [`READY_LINE`] (whole seconds), a guest-initiated shutdown. `None`: never.
    pub poweroff_after: Option<Duration>,
    /// `vgashot.serial_shell=1`: a shell on the serial port `ttyS0`, for an interactive serial
    /// console; its terminal echoes what it reads.
    pub serial_shell: bool,
    /// `vgashot.tty_shell=0` when true: no shell on the VGA console `tty1`, whose screen then
    /// keeps the boot messages and the known lines only. On by default.
    pub no_tty_shell: bool,
    /// `consoleblank=SECONDS`, read by the kernel itself: blank the screen after that many
    /// seconds without input (`Some(0)` never blanks; `None` keeps the kernel's default, never).
    pub console_blank: Option<u32>,
    /// `quiet`: the kernel prints only warnings and worse, on the screen and the serial port.
    pub quiet: bool,
}

impl BootOptions {
    /// The kernel command line for these options.
    ///
    /// Messages go to both consoles; the serial port is last, so it is also `/dev/console`.
    /// The kernel never reboots by itself after a panic (`panic=0`): QEMU's pvpanic device
    /// reports it, and the screen keeps showing it.
    pub fn cmdline(&self) -> String {
        let mut line = String::from("console=tty1 console=ttyS0,115200 panic=0");
        if self.quiet {
            line.push_str(" quiet");
        }
        if self.console == Console::Text {
            line.push_str(" vgashot.framebuffer=0");
        }
        if let Some(seconds) = self.console_blank {
            let _ = write!(line, " consoleblank={seconds}");
        }
        if let Some(after) = self.panic_after {
            let _ = write!(line, " vgashot.panic_after={}", after.as_secs());
        }
        if let Some(after) = self.poweroff_after {
            let _ = write!(line, " vgashot.poweroff_after={}", after.as_secs());
        }
        if self.serial_shell {
            line.push_str(" vgashot.serial_shell=1");
        }
        if self.no_tty_shell {
            line.push_str(" vgashot.tty_shell=0");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_command_line_names_both_consoles_only() {
        assert_eq!(
            BootOptions::default().cmdline(),
            "console=tty1 console=ttyS0,115200 panic=0"
        );
    }

    #[test]
    fn each_option_is_one_parameter_the_init_reads() {
        let options = BootOptions {
            console: Console::Text,
            panic_after: Some(Duration::from_secs(3)),
            poweroff_after: Some(Duration::from_secs(4)),
            serial_shell: true,
            no_tty_shell: true,
            console_blank: Some(5),
            quiet: true,
        };
        let line = options.cmdline();
        assert_eq!(
            line,
            "console=tty1 console=ttyS0,115200 panic=0 quiet vgashot.framebuffer=0 \
             consoleblank=5 vgashot.panic_after=3 vgashot.poweroff_after=4 vgashot.serial_shell=1 vgashot.tty_shell=0"
        );
        for parameter in line.split(' ').filter(|p| p.starts_with("vgashot.")) {
            let key = parameter.split('=').next().unwrap();
            assert!(INIT_SCRIPT.contains(&format!("{key}=*)")), "{key}");
        }
    }

    #[test]
    fn the_script_prints_the_known_lines() {
        for line in [
            READY_LINE,
            PANIC_LINE,
            POWEROFF_LINE,
            KERNEL_LINE_PREFIX.trim_end(),
        ] {
            assert!(INIT_SCRIPT.contains(&format!("say \"{line}")), "{line}");
        }
    }
}
