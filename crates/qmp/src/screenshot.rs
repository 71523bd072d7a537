//! Screenshots into memory we own: QEMU writes the image into a memfd passed to it, never a path
//! on the host.
//!
//! How a capture works:
//! 1. Take a capture file from the connection's pool, or make one: `memfd_create`, then `add-fd`
//!    with the memfd attached by SCM_RIGHTS. QEMU answers with its own number `M` for it.
//! 2. `screendump` with `filename: "/proc/self/fd/M"`. QEMU opens that path with
//!    `O_WRONLY|O_CREAT|O_TRUNC`, which for a memfd makes a fresh open file description: offset 0
//!    and truncated, whatever earlier captures left.
//! 3. When QEMU answers, the image is complete in the memfd (QEMU writes and closes it before
//!    replying). Its size is checked against the caller's bound before anything is allocated
//!    (the guest chooses its screen mode, so the size is the guest's choice): a larger image is
//!    [`Error::ImageTooLarge`]. Then, on tokio's blocking pool, it is read with `pread` from
//!    offset 0 and the memfd truncated to free its pages, and the file goes back to the pool.
//!
//! Why `/proc/self/fd/M` and not `/dev/fdset/N`: QEMU resolves `/dev/fdset/N` by `dup`ing a
//! descriptor of the set whose access mode matches, so it needs a write-only descriptor (a memfd
//! is read-write; it would have to be reopened write-only), the dup shares our file offset (it must
//! be rewound and truncated before every capture, and two captures could never share the file),
//! and QEMU tracks the dup in the set. `/proc/self/fd/M` has none of that and works for memfds and
//! pipes alike. It needs `/proc` inside QEMU's mount namespace, which every QEMU launched by us has.
//!
//! Why a pool: registering a file costs two extra QMP round trips (`add-fd`, `remove-fd`) and a
//! `memfd_create`, several percent of a 2.5 ms PPM capture. The pool keeps at most
//! [`MAX_IDLE_CAPTURE_FILES`] registered files per connection; concurrent captures beyond that
//! get files of their own, released after use. [`Qmp::release_capture_files`] empties the pool, so
//! a caller can leave QEMU exactly as it found it.
//!
//! Why a capture can be cancelled at any point without leaving anything in QEMU: a file taken from
//! the pool is lent to one capture ([`Loan`]); a loan dropped before it is settled (the caller's
//! future was dropped while QEMU may be writing) removes the file from QEMU in the background
//! instead of returning it. A new file is registered in a task of its own
//! ([`crate::fds::register_detached`]), so a capture cancelled during `add-fd` cannot leave a set
//! in QEMU that nobody knows of: the task puts such a file into the pool.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::capture_pool::CaptureFile;
pub use crate::capture_pool::MAX_IDLE_CAPTURE_FILES;
use crate::client::Qmp;
use crate::commands::{Screendump, ScreendumpFormat};
use crate::error::{Error, Result};
use crate::fds::{register_detached, spawn_undo};

/// The largest image [`Qmp::screenshot`] reads: a PPM of 64 Mi RGB pixels (the most
/// `vgashot-framebuffer` decodes) and its header. Callers that bound screens more tightly use
/// [`Qmp::screenshot_within`].
pub const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024 * 3 + 64;

/// What to capture, and in which format QEMU should write it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenshotRequest {
    /// The display device (QOM id); the primary console when `None`.
    pub device: Option<String>,
    /// The head of a multi-head device; QEMU requires `device` with it.
    pub head: Option<u32>,
    /// The format QEMU writes. PPM is sent without a `format` argument, so it works on every
    /// QEMU, including those older than 7.1, which do not know the argument.
    pub format: ScreendumpFormat,
}

impl CaptureFile {
    /// Reads the whole image QEMU wrote, if it is at most `limit` bytes, then truncates the file
    /// so the idle pool holds no pages. Blocking.
    fn take_image(&self, limit: u64) -> Result<Vec<u8>> {
        let capture_error = |operation| move |source| Error::CaptureFile { operation, source };
        let length = self
            .memfd
            .metadata()
            .map_err(capture_error("measure the image"))?
            .len();
        if length > limit {
            self.memfd
                .set_len(0)
                .map_err(capture_error("truncate the file"))?;
            return Err(Error::ImageTooLarge {
                bytes: length,
                limit,
            });
        }
        let length = usize::try_from(length)
            .map_err(|_| capture_error("measure the image")(io::ErrorKind::FileTooLarge.into()))?;
        let mut image = vec![0; length];
        self.memfd
            .read_exact_at(&mut image, 0)
            .map_err(capture_error("read the image"))?;
        self.memfd
            .set_len(0)
            .map_err(capture_error("truncate the file"))?;
        Ok(image)
    }
}

/// A capture file lent to one capture. Settled with [`Loan::give_back`] (the file is fit for the
/// next capture) or [`Loan::discard`]; dropped unsettled, when the capture's future is dropped
/// midway, it removes the file from QEMU in the background, since QEMU may still write into it.
struct Loan {
    qmp: Qmp,
    file: Option<CaptureFile>,
}

impl Loan {
    fn file(&self) -> &CaptureFile {
        self.file
            .as_ref()
            .expect("a loan holds its file until settled")
    }

    /// Returns the file to the pool, or removes it from QEMU when the pool is full.
    fn give_back(mut self) {
        if let Some(file) = self.file.take() {
            self.qmp.return_capture_file(file);
        }
    }

    /// Removes the file from QEMU; it is never reused.
    fn discard(self) {
        drop(self);
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            self.qmp.discard_capture_file(file);
        }
    }
}

impl Qmp {
    /// Captures the screen into memory and returns the image bytes QEMU wrote (PPM or PNG, as
    /// requested).
    ///
    /// QEMU never opens a host path: it writes into a memfd this process owns (see the module
    /// documentation). Concurrent calls are fine; each has a capture file of its own.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn run(qmp: vgashot_qmp::Qmp) -> vgashot_qmp::Result<()> {
    /// use vgashot_qmp::{ScreendumpFormat, ScreenshotRequest};
    /// let png = qmp
    ///     .screenshot(&ScreenshotRequest { format: ScreendumpFormat::Png, ..Default::default() })
    ///     .await?;
    /// std::fs::write("screen.png", png).unwrap();
    /// # Ok(()) }
    /// ```
    pub async fn screenshot(&self, request: &ScreenshotRequest) -> Result<Vec<u8>> {
        self.screenshot_within(request, MAX_IMAGE_BYTES).await
    }

    /// [`Qmp::screenshot`] of an image of at most `limit` bytes; a larger one is
    /// [`Error::ImageTooLarge`], never read into memory.
    pub async fn screenshot_within(
        &self,
        request: &ScreenshotRequest,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let loan = self.take_capture_file().await?;
        let arguments = Screendump {
            filename: format!("/proc/self/fd/{}", loan.file().qemu_fd),
            device: request.device.clone(),
            head: request.head,
            format: match request.format {
                ScreendumpFormat::Ppm => None,
                ScreendumpFormat::Png => Some(ScreendumpFormat::Png),
            },
        };
        match self.screendump(&arguments).await {
            Ok(()) => {
                // Read off the async workers. The loan travels with the read, so a capture
                // cancelled meanwhile still settles it: dropped unsettled, it removes the file.
                let (loan, image) = tokio::task::spawn_blocking(move || {
                    let image = loan.file().take_image(limit);
                    (loan, image)
                })
                .await
                .map_err(|error| Error::CaptureFile {
                    operation: "read the image",
                    source: io::Error::other(error),
                })?;
                loan.give_back();
                image
            }
            // QEMU refused before or while writing; the file is still ours and registered, and
            // the next capture truncates it on open.
            Err(error @ Error::Command { .. }) => {
                loan.give_back();
                Err(error)
            }
            // After a timeout QEMU may still write into the file later: never reuse it.
            Err(error) => {
                loan.discard();
                Err(error)
            }
        }
    }

    /// Removes every idle capture file from QEMU, so it holds no descriptor of ours.
    pub async fn release_capture_files(&self) -> Result<()> {
        let mut outcome = Ok(());
        for file in self.captures().drain() {
            let removed = self.remove_fd(file.fdset_id, None).await;
            outcome = outcome.and(removed);
        }
        outcome
    }

    /// Lends a file from the pool, or registers a new one.
    async fn take_capture_file(&self) -> Result<Loan> {
        let lend = |file| Loan {
            qmp: self.clone(),
            file: Some(file),
        };
        if let Some(file) = self.captures().take() {
            return Ok(lend(file));
        }
        let memfd =
            memfd_create(c"vgashot-screendump", MFdFlags::MFD_CLOEXEC).map_err(|errno| {
                Error::CaptureFile {
                    operation: "create the memory file",
                    source: errno.into(),
                }
            })?;
        let qmp = self.clone();
        let register = async move {
            let info = qmp
                .add_fd(memfd.as_fd(), None, Some("vgashot screendump"))
                .await?;
            Ok(CaptureFile {
                memfd: File::from(memfd),
                fdset_id: info.fdset_id,
                qemu_fd: info.fd,
            })
        };
        let orphan_owner = self.clone();
        let registered = register_detached(register, move |file| {
            orphan_owner.return_capture_file(file);
        })
        .await
        .unwrap_or_else(|| Err(Error::runtime_stopping()))?;
        Ok(lend(registered))
    }

    fn return_capture_file(&self, file: CaptureFile) {
        if let Some(surplus) = self.captures().put(file) {
            self.discard_capture_file(surplus);
        }
    }

    /// Removes the file from QEMU in the background; our end closes when `file` drops.
    fn discard_capture_file(&self, file: CaptureFile) {
        let qmp = self.clone();
        spawn_undo(async move {
            let removed = qmp.remove_fd(file.fdset_id, None).await;
            drop(file);
            removed
        });
    }
}
