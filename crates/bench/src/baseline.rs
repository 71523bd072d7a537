//! The plain ways to take a screendump, measured beside `vgashot-qmp`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::memfd::{MFdFlags, memfd_create};
use serde_json::{Value, json};
use vgashot_qmp::{AddFdInfo, Qmp, ScreendumpFormat};

use crate::Result;

/// One blocking QMP socket and a file path, as upstream Incus takes screenshots.
pub struct Baseline {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    target: PathBuf,
}

impl Baseline {
    /// Connects to `socket` and negotiates capabilities; captures go to a file in `dir`.
    pub fn connect(socket: &Path, dir: &Path) -> Result<Self> {
        let writer = UnixStream::connect(socket)?;
        let reader = BufReader::new(writer.try_clone()?);
        let mut baseline = Self {
            writer,
            reader,
            target: dir.join("screendump"),
        };
        baseline.read_line()?; // the greeting
        baseline.command(&json!({"execute": "qmp_capabilities"}))?;
        Ok(baseline)
    }

    /// `screendump` to the path, then read the file back and delete it.
    pub fn screendump(&mut self, format: ScreendumpFormat) -> Result<Vec<u8>> {
        let mut arguments = json!({"filename": self.target});
        if format == ScreendumpFormat::Png {
            arguments["format"] = json!("png");
        }
        self.command(&json!({"execute": "screendump", "arguments": arguments}))?;
        let image = std::fs::read(&self.target)?;
        std::fs::remove_file(&self.target)?;
        Ok(image)
    }

    fn command(&mut self, command: &Value) -> Result<Value> {
        let mut line = serde_json::to_vec(command)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        loop {
            let reply = self.read_line()?;
            if reply.get("event").is_some() {
                continue;
            }
            return match reply.get("return") {
                Some(value) => Ok(value.clone()),
                None => Err(format!("QEMU refused {command}: {reply}").into()),
            };
        }
    }

    fn read_line(&mut self) -> Result<Value> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }
}

/// A memfd reached through `/dev/fdset/N`: the path `vgashot-qmp` rejected, measured to show why.
///
/// QEMU duplicates the set's descriptor for each open, so the descriptor must be write-only and
/// the caller rewinds and truncates it before every capture.
pub struct FdsetCapture {
    memfd: File,
    write_only: File,
    info: AddFdInfo,
}

impl FdsetCapture {
    /// Creates the memfd and adds a write-only descriptor of it to a new fd set.
    pub async fn register(qmp: &Qmp) -> Result<Self> {
        let memfd = File::from(memfd_create(c"bench-fdset", MFdFlags::MFD_CLOEXEC)?);
        let write_only = OpenOptions::new().write(true).open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&memfd)
        ))?;
        let info = qmp.add_fd(write_only.as_fd(), None, Some("bench")).await?;
        Ok(Self {
            memfd,
            write_only,
            info,
        })
    }

    /// Rewinds and truncates, captures, reads back.
    pub async fn capture(&self, qmp: &Qmp, format: ScreendumpFormat) -> Result<Vec<u8>> {
        self.write_only.set_len(0)?;
        (&self.write_only).rewind()?;
        let mut arguments = json!({"filename": format!("/dev/fdset/{}", self.info.fdset_id)});
        if format == ScreendumpFormat::Png {
            arguments["format"] = json!("png");
        }
        qmp.execute("screendump", Some(arguments)).await?;
        let mut image = vec![0; usize::try_from(self.memfd.metadata()?.len())?];
        self.memfd.read_exact_at(&mut image, 0)?;
        Ok(image)
    }

    /// Removes the fd set from QEMU.
    pub async fn release(self, qmp: &Qmp) -> Result {
        qmp.remove_fd(self.info.fdset_id, None).await?;
        Ok(())
    }
}
