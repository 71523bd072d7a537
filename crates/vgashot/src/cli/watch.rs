//! `vgashot watch NAME`: the screen in the terminal, redrawn in place when it changes.
//!
//! 1. The instance must exist and run (`GET /1.0/instances/NAME`), so a typo fails at once.
//! 2. A terminal that shows no images ([`terminal::Graphics::protocol`]) gets the address of the
//!    screen's MJPEG stream and the curl command that fetches it, and the command ends there.
//! 3. Otherwise the terminal switches to its alternate screen and, `fps` times a second, asks
//!    for the plain PNG with `If-None-Match` set to the `ETag` it shows: an unchanged screen is a
//!    304 without a body, and nothing is redrawn. The plain PNG is the one every other viewer
//!    shares, so watching adds no encoding on the daemon.
//! 4. Ctrl-C (or SIGTERM) restores the terminal and ends with status 0; the instance stopping
//!    ends it with the daemon's error. A resized window is redrawn at its new size.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::time::Duration;

use clap::Args;
use http::header::{ETAG, IF_NONE_MATCH, LAST_MODIFIED};
use tokio::signal::unix::{SignalKind, signal};
use vgashot_client::{Client, ClientError};
use vgashot_framebuffer::Frame;

use super::connection::{self, ConnectionArgs};
use super::screenshot::ScreenArgs;
use super::terminal::{self, Graphics, Placement, Protocol, WindowSize};
use super::{CliError, instance_path, picture};

/// `vgashot watch ...`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The instance whose screen to watch.
    pub name: String,
    /// How many times a second to look for a change (1-30); an unchanged screen costs a 304
    /// without a body.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub fps: u32,
    /// How to draw: guess from the terminal, a given protocol, or `none` to only print where the
    /// stream is.
    #[arg(long, value_enum, default_value_t = Graphics::Auto, env = "VGASHOT_GRAPHICS")]
    pub graphics: Graphics,
    #[command(flatten)]
    pub screen: ScreenArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Errors of drawing on the terminal.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Standard output cannot be written.
    #[error("cannot draw on the terminal")]
    Terminal(#[source] std::io::Error),
    /// Signals cannot be caught, so Ctrl-C could not restore the terminal.
    #[error("cannot listen for Ctrl-C")]
    Signals(#[source] std::io::Error),
    /// The daemon sent a picture that does not decode (for sixel, drawn from pixels).
    #[error("cannot decode the screenshot")]
    Decode(#[source] vgashot_framebuffer::FrameError),
}

/// Watches the screen, or prints where its stream is.
pub async fn run(dir: &Path, args: WatchArgs) -> Result<(), CliError> {
    let client = connection::connect(dir, &args.connection).await?;
    let mut project = Vec::new();
    if args.screen.project != "default" {
        project.push(("project", args.screen.project.clone()));
    }
    let named = (args.screen.project != "default").then_some(args.screen.project.as_str());
    let instance = client.instance(&args.name, named).await?;
    if instance.status != "Running" {
        return Err(ClientError::Api {
            status: 400,
            message: "Instance is not running".to_owned(),
        }
        .into());
    }
    let protocol = args
        .graphics
        .protocol(std::io::stdout().is_terminal(), |name| {
            std::env::var(name).ok()
        });
    let Some(protocol) = protocol else {
        print!("{}", stream_help(dir, &args)?);
        return Ok(());
    };
    let path = instance_path(&args.name, "/console", &args.screen.query(Vec::new()));
    let mut screen = Screen::enter(protocol).map_err(WatchError::Terminal)?;
    let outcome = watch(&client, &path, &args, &mut screen).await;
    drop(screen);
    outcome
}

/// Redraws until Ctrl-C or SIGTERM.
async fn watch(
    client: &Client,
    path: &str,
    args: &WatchArgs,
    screen: &mut Screen,
) -> Result<(), CliError> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(WatchError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(WatchError::Signals)?;
    let mut resized = signal(SignalKind::window_change()).map_err(WatchError::Signals)?;
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / args.fps);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut etag: Option<String> = None;
    loop {
        let fetch = async {
            ticks.tick().await;
            let headers: Vec<(http::HeaderName, &str)> = etag
                .as_deref()
                .map(|tag| (IF_NONE_MATCH, tag))
                .into_iter()
                .collect();
            client.request_with("GET", path, &headers, None).await
        };
        let reply = tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            _ = resized.recv() => {
                // Drawn again at the new size on the next tick.
                etag = None;
                screen.clear().map_err(WatchError::Terminal)?;
                continue;
            }
            reply = fetch => reply?,
        };
        match reply.status {
            304 => {}
            200 => {
                etag = reply.header(ETAG).map(str::to_owned);
                let status = format!(
                    "{} | {} | changed {} | Ctrl-C to quit",
                    args.name,
                    picture::dimensions(&reply.body)
                        .map(|(width, height)| format!("{width}x{height}"))
                        .unwrap_or_default(),
                    reply.header(LAST_MODIFIED).unwrap_or("-"),
                );
                screen.draw(&reply.body, &status)?;
            }
            _ => return Err(reply.error().into()),
        }
    }
}

/// Where the stream is, and how to fetch it, for a terminal that cannot show it.
fn stream_help(dir: &Path, args: &WatchArgs) -> Result<String, CliError> {
    let extra = vec![
        ("stream", "mjpeg".to_owned()),
        ("fps", args.fps.to_string()),
    ];
    let path = instance_path(&args.name, "/console", &args.screen.query(extra));
    let file = format!("{}.mjpeg", args.name);
    let (place, url, curl) = match connection::curl_options(dir, &args.connection)? {
        connection::Curl::Unix { socket, options } => (
            format!("on the Unix socket {socket}"),
            format!("http://vgashot{path}"),
            options,
        ),
        connection::Curl::Tls { base, options } => {
            (format!("at {base}"), format!("{base}{path}"), options)
        }
    };
    Ok(format!(
        "This terminal shows no images (kitty, iTerm2 or sixel; see --graphics).\n\
         The screen of {name} streams as MJPEG (multipart/x-mixed-replace) {place}:\n  \
         GET {path}\n\
         Fetch it with:\n  \
         curl -N {curl} '{url}' -o {file}\n",
        name = args.name,
    ))
}

/// The terminal while watching: the alternate screen, no cursor, no echo; all restored when
/// dropped, whatever ended the watch.
struct Screen {
    protocol: Protocol,
    placement: Option<Placement>,
    saved: Option<libc::termios>,
}

impl Screen {
    fn enter(protocol: Protocol) -> std::io::Result<Self> {
        let saved = quiet_input();
        let screen = Self {
            protocol,
            placement: None,
            saved,
        };
        write_out(b"\x1b[?1049h\x1b[?25l\x1b[2J\x1b[H")?;
        Ok(screen)
    }

    fn clear(&mut self) -> std::io::Result<()> {
        self.placement = None;
        let mut out = Vec::new();
        if self.protocol == Protocol::Kitty {
            out.extend_from_slice(terminal::KITTY_CLEAR.as_bytes());
        }
        out.extend_from_slice(b"\x1b[2J\x1b[H");
        write_out(&out)
    }

    /// Draws `png` at the top left, fitted to the window, with `status` on the line below.
    fn draw(&mut self, png: &[u8], status: &str) -> Result<(), WatchError> {
        let window = WindowSize::of_stdout();
        let size = picture::dimensions(png).unwrap_or((640, 480));
        let placement = terminal::fit(size, window);
        if self.placement.is_some_and(|last| last != placement) {
            // A smaller picture would leave the old one's edges behind.
            self.clear().map_err(WatchError::Terminal)?;
        }
        self.placement = Some(placement);
        let mut out = b"\x1b[H".to_vec();
        match self.protocol {
            Protocol::Kitty => out.extend(terminal::kitty(png, placement)),
            Protocol::Iterm2 => out.extend(terminal::iterm2(png, placement)),
            Protocol::Sixel => {
                let frame = Frame::from_png(png).map_err(WatchError::Decode)?;
                let frame = frame
                    .resize(placement.width, placement.height)
                    .map_err(WatchError::Decode)?;
                out.extend(terminal::sixel(&frame));
            }
        }
        let width = usize::from(window.cols);
        let status: String = status.chars().take(width).collect();
        out.extend_from_slice(format!("\x1b[{};1H\x1b[2K{status}", placement.rows + 1).as_bytes());
        write_out(&out).map_err(WatchError::Terminal)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = Vec::new();
        if self.protocol == Protocol::Kitty {
            out.extend_from_slice(terminal::KITTY_CLEAR.as_bytes());
        }
        out.extend_from_slice(b"\x1b[?25h\x1b[?1049l");
        let _ = write_out(&out);
        if let Some(saved) = self.saved {
            // SAFETY: restores the settings read from the same descriptor by `quiet_input`.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved) };
        }
    }
}

/// Stops the terminal from echoing keys over the picture (Ctrl-C still interrupts); the
/// previous settings, to restore, or `None` when stdin is no terminal.
fn quiet_input() -> Option<libc::termios> {
    // SAFETY: `termios` is plain data that tcgetattr fills in; it is read only on success.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid for writes of one `termios`.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
        return None;
    }
    let mut quiet = saved;
    quiet.c_lflag &= !(libc::ECHO | libc::ICANON);
    // SAFETY: the pointer is valid for reads of one `termios`.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) };
    Some(saved)
}

fn write_out(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}
