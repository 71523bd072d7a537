//! `vgashot screenshot NAME`: one `GET /1.0/instances/NAME/console?type=vga` with the size,
//! format and screen asked for, saved to a file (or written to stdout), then one line saying
//! where it went and how large it is.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::connection::{self, ConnectionArgs};
use super::{CliError, instance_path, picture};

/// `vgashot screenshot ...`.
#[derive(Debug, Args)]
pub struct ScreenshotArgs {
    /// The instance whose screen to save.
    pub name: String,
    /// Where to save the image: a file, or `-` for standard output (nothing else is printed
    /// then) [default: NAME.png, NAME.jpg or NAME.webp, after the format].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Shrink to this width in pixels (at most the screen's); alone, the height follows the
    /// screen's aspect ratio.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub width: Option<u32>,
    /// Shrink to this height in pixels (at most the screen's); alone, the width follows the
    /// screen's aspect ratio.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub height: Option<u32>,
    /// The image format [default: from the extension of --output, else png].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// JPEG quality, 1-100 (the daemon's default is 80); PNG and WebP are lossless.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: Option<u8>,
    /// The screen as it was at this time, from the screen history (RFC 3339, UTC:
    /// 2026-12-02T01:30:00Z), also of a stopped instance.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    #[command(flatten)]
    pub screen: ScreenArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// An image format of the API's `format` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lossless, what Incus returns.
    Png,
    /// Lossy and small, with --quality.
    #[value(alias = "jpg")]
    Jpeg,
    /// Lossless and smaller than PNG.
    Webp,
}

impl Format {
    /// The value of the `format` parameter.
    fn parameter(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Webp => "webp",
        }
    }

    /// The usual file extension.
    fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }

    /// The format a file name's extension asks for.
    fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "png" => Some(Self::Png),
            "jpg" | "jpeg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

/// Errors of saving the image.
#[derive(Debug, thiserror::Error)]
pub enum ScreenshotError {
    /// The file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Standard output cannot be written (a closed pipe, for one).
    #[error("cannot write the image to standard output")]
    Stdout(#[source] std::io::Error),
}

/// Which screen: the options `screenshot` and `watch` share.
#[derive(Debug, Args)]
pub struct ScreenArgs {
    /// The display device (`video0` is the instance's own) [default: the primary console].
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// The head of a multi-head display device (`vgashot.vga.heads`), from 0.
    #[arg(long, value_name = "N", requires = "device")]
    pub head: Option<u32>,
    /// The project of the instance.
    #[arg(long, default_value = "default")]
    pub project: String,
}

impl ScreenArgs {
    /// The query of a screenshot request: `type=vga`, this screen, then `extra` (size, format,
    /// stream...), in the API's words.
    pub fn query<'a>(&self, extra: Vec<(&'a str, String)>) -> Vec<(&'a str, String)> {
        let mut pairs = vec![("type", "vga".to_owned())];
        if self.project != "default" {
            pairs.push(("project", self.project.clone()));
        }
        if let Some(device) = &self.device {
            pairs.push(("device", device.clone()));
        }
        if let Some(head) = self.head {
            pairs.push(("head", head.to_string()));
        }
        pairs.extend(extra);
        pairs
    }
}

/// Takes the screenshot and saves it.
pub async fn run(dir: &Path, args: ScreenshotArgs) -> Result<(), CliError> {
    let to_stdout = args.output.as_deref() == Some(Path::new("-"));
    let format = args
        .format
        .or_else(|| {
            args.output
                .as_deref()
                .filter(|_| !to_stdout)
                .and_then(Format::from_path)
        })
        .unwrap_or(Format::Png);
    let mut extra = Vec::new();
    if let Some(width) = args.width {
        extra.push(("width", width.to_string()));
    }
    if let Some(height) = args.height {
        extra.push(("height", height.to_string()));
    }
    if format != Format::Png {
        extra.push(("format", format.parameter().to_owned()));
    }
    if let Some(quality) = args.quality {
        extra.push(("quality", quality.to_string()));
    }
    if let Some(at) = &args.at {
        extra.push(("at", at.clone()));
    }
    let query = args.screen.query(extra);
    let client = connection::connect(dir, &args.connection).await?;
    let reply = client
        .request("GET", &instance_path(&args.name, "/console", &query), None)
        .await?;
    if reply.status != 200 {
        return Err(reply.error().into());
    }
    let image = &reply.body;
    if to_stdout {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(image)
            .and_then(|()| stdout.flush())
            .map_err(ScreenshotError::Stdout)?;
        return Ok(());
    }
    let path = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}.{}", args.name, format.extension())));
    std::fs::write(&path, image).map_err(|source| ScreenshotError::Write {
        path: path.clone(),
        source,
    })?;
    let size = picture::dimensions(image)
        .map(|(width, height)| format!("{width}x{height} "))
        .unwrap_or_default();
    println!(
        "Screenshot of {} saved to {} ({size}{}, {})",
        args.name,
        path.display(),
        picture::format_name(image),
        picture::byte_size(image.len())
    );
    Ok(())
}
