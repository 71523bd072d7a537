//! Console screenshots of a running VM.
//!
//! How a capture works:
//! 1. Ask QEMU for a PPM (its cheapest format: a header and raw RGB) through a memfd we own
//!    (`Qmp::screenshot_within`). QEMU holds its main loop, and so the guest, only for that copy.
//! 2. Decode the PPM ([`Frame::from_ppm_vec`], bounded and checked) on tokio's blocking pool,
//!    away from QEMU and from the async workers: [`capture_frame`] stops there (the screens
//!    engine encodes lazily), [`capture`] also encodes the PNG ([`PngCompression::Fastest`]).
//! 3. [`PngEncoder::Qemu`] instead asks QEMU for its own PNG; QEMU older than 7.1 has no PNG
//!    screendump, so it gets the PPM path whatever was asked.
//! 4. QEMU's refusals become typed errors: an unknown device, a head that is not a console, a VM
//!    without any display.
//! 5. The guest chooses its screen mode, so the image's size is bounded before anything follows
//!    it: at most [`DriverOptions::max_screen_pixels`](crate::DriverOptions) pixels (default
//!    [`DEFAULT_MAX_SCREEN_PIXELS`]); a larger screen is [`DriverError::ScreenTooLarge`], and
//!    its image is never read into memory.

use std::time::SystemTime;

use vgashot_framebuffer::{Frame, PngCompression};
use vgashot_qmp::{ErrorClass, QemuVersion, Qmp, ScreendumpFormat, ScreenshotRequest};

use crate::error::{DriverError, Result};
use crate::instance::{PngEncoder, Screenshot, ScreenshotOptions};

/// The first QEMU whose `screendump` takes `format: "png"`.
const FIRST_QEMU_WITH_PNG: QemuVersion = QemuVersion {
    major: 7,
    minor: 1,
    micro: 0,
};

/// The most pixels a screen may have for its capture to be read, unless the daemon says
/// otherwise: 16 Mi pixels, 4096x4096, which holds every screen people use (4K UHD is 8.3 Mi, 5K
/// 14.7 Mi) while one capture holds at most 48 MiB of PPM and as much again of decoded frame,
/// where the framebuffer's own ceiling (64 Mi pixels) would let one guest make the daemon hold
/// four times that per capture.
pub const DEFAULT_MAX_SCREEN_PIXELS: u64 = 16 * 1024 * 1024;
/// Room for a PPM header (`P6\n16384 16384\n255\n` and more) above the pixels.
const PPM_HEADER_BYTES: u64 = 64;

/// Takes a screenshot through `qmp` of a screen of at most `max_pixels` pixels.
pub async fn capture(
    qmp: &Qmp,
    options: &ScreenshotOptions,
    max_pixels: u64,
) -> Result<Screenshot> {
    let native_png =
        options.encoder == PngEncoder::Qemu && qmp.greeting().version.qemu >= FIRST_QEMU_WITH_PNG;
    if !native_png {
        let (frame, captured_at) = capture_frame(qmp, options, max_pixels).await?;
        let (frame, png) = tokio::task::spawn_blocking(move || {
            let png = frame.encode_png(PngCompression::Fastest)?;
            Ok((frame, png))
        })
        .await
        .expect("encoding does not panic")
        .map_err(DriverError::Image)?;
        return Ok(Screenshot {
            width: frame.width(),
            height: frame.height(),
            png,
            frame: Some(frame),
            captured_at,
        });
    }
    let image = screendump(qmp, options, ScreendumpFormat::Png, max_pixels).await?;
    let captured_at = SystemTime::now();
    let (width, height) = png_dimensions(&image)?;
    Ok(Screenshot {
        png: image,
        frame: None,
        width,
        height,
        captured_at,
    })
}

/// The pixels of a screen of at most `max_pixels` through `qmp` and when QEMU gave them: its
/// PPM, decoded on tokio's blocking pool, with no PNG encoded (encodings are the caller's, made
/// when asked for).
pub async fn capture_frame(
    qmp: &Qmp,
    options: &ScreenshotOptions,
    max_pixels: u64,
) -> Result<(Frame, SystemTime)> {
    let image = screendump(qmp, options, ScreendumpFormat::Ppm, max_pixels).await?;
    let captured_at = SystemTime::now();
    let frame = tokio::task::spawn_blocking(move || Frame::from_ppm_vec(image))
        .await
        .expect("decoding does not panic")
        .map_err(DriverError::Image)?;
    Ok((frame, captured_at))
}

/// QEMU's image of the screen `options` names, in `format`, refused unread when it is larger
/// than a screen of `max_pixels` can make.
async fn screendump(
    qmp: &Qmp,
    options: &ScreenshotOptions,
    format: ScreendumpFormat,
    max_pixels: u64,
) -> Result<Vec<u8>> {
    if options.head.is_some() && options.device.is_none() {
        return Err(DriverError::HeadWithoutDevice);
    }
    let request = ScreenshotRequest {
        device: options.device.clone(),
        head: options.head,
        format,
    };
    // A PNG can be a little larger than its raw pixels (filter bytes, incompressible data).
    let limit = match format {
        ScreendumpFormat::Png => max_pixels.saturating_mul(4).saturating_add(1 << 20),
        ScreendumpFormat::Ppm => max_pixels
            .saturating_mul(3)
            .saturating_add(PPM_HEADER_BYTES),
    };
    qmp.screenshot_within(&request, limit)
        .await
        .map_err(|error| classify(error, options, max_pixels))
}

/// Turns QEMU's refusals into the errors a caller can act on.
fn classify(
    error: vgashot_qmp::Error,
    options: &ScreenshotOptions,
    max_pixels: u64,
) -> DriverError {
    let device = || options.device.clone().unwrap_or_default();
    if let vgashot_qmp::Error::ImageTooLarge { bytes, .. } = error {
        return DriverError::ScreenTooLarge {
            bytes,
            limit: max_pixels,
        };
    }
    if let Some(refusal) = error.qmp_error() {
        if refusal.class == ErrorClass::DeviceNotFound {
            return DriverError::DisplayNotFound { device: device() };
        }
        if refusal.desc.contains("is not bound to a QemuConsole") {
            return DriverError::HeadNotFound {
                device: device(),
                head: options.head.unwrap_or_default(),
            };
        }
        if refusal
            .desc
            .contains("There is no console to take a screendump from")
        {
            return DriverError::NoDisplay;
        }
    }
    DriverError::Qmp {
        operation: "take a screenshot",
        source: error,
    }
}

/// Width and height from a PNG's header, which QEMU wrote.
fn png_dimensions(png_bytes: &[u8]) -> Result<(u32, u32)> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let reader = decoder.read_info().map_err(DriverError::QemuPng)?;
    let info = reader.info();
    Ok((info.width, info.height))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, IoSliceMut, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use serde_json::{Value, json};
    use vgashot_qmp::Config;

    use super::*;

    /// Plays a QEMU 6.2 (before `screendump` had `format`) for one capture: receives the memfd
    /// with `add-fd`, then writes a 2x1 PPM where `screendump` says, checking it was not sent a
    /// `format`. It runs in this process, so `/proc/self/fd/N` is the descriptor it received.
    fn old_qemu(listener: UnixListener) -> Value {
        let (mut stream, _) = listener.accept().unwrap();
        let greeting = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 6}, "package": ""}, "capabilities": []}}"#;
        writeln!(stream, "{greeting}").unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let negotiate: Value = serde_json::from_str(&line).unwrap();
        writeln!(stream, "{}", json!({"return": {}, "id": negotiate["id"]})).unwrap();

        let mut buffer = vec![0; 4096];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let Some(ControlMessageOwned::ScmRights(fds)) = message.cmsgs().unwrap().next() else {
            panic!("add-fd came without a descriptor");
        };
        let length = message.bytes;
        let add_fd: Value = serde_json::from_slice(&buffer[..length]).unwrap();
        assert_eq!(add_fd["execute"], "add-fd");
        // SAFETY: the kernel just created this descriptor for us.
        let memfd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        let reply = json!({"return": {"fdset-id": 1, "fd": memfd.as_raw_fd()}, "id": add_fd["id"]});
        writeln!(stream, "{reply}").unwrap();

        line.clear();
        reader.read_line(&mut line).unwrap();
        let screendump: Value = serde_json::from_str(&line).unwrap();
        let path = screendump["arguments"]["filename"].as_str().unwrap();
        std::fs::write(path, b"P6\n2 1\n255\n\xff\x00\x00\x00\x00\xff").unwrap();
        writeln!(stream, "{}", json!({"return": {}, "id": screendump["id"]})).unwrap();
        screendump
    }

    #[tokio::test]
    async fn qemu_older_than_7_1_gets_the_ppm_path_even_when_its_png_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let peer = std::thread::spawn(move || old_qemu(listener));
        let qmp = Qmp::connect(&socket, Config::default()).await.unwrap();
        let options = ScreenshotOptions {
            encoder: PngEncoder::Qemu,
            ..Default::default()
        };
        let shot = capture(&qmp, &options, DEFAULT_MAX_SCREEN_PIXELS)
            .await
            .unwrap();
        let screendump = peer.join().unwrap();
        assert_eq!(screendump["arguments"].get("format"), None);
        let frame = shot.frame.expect("the PPM path");
        assert_eq!((shot.width, shot.height), (2, 1));
        assert_eq!(frame.rgb(), [0xff, 0, 0, 0, 0, 0xff]);
        assert!(shot.png.starts_with(b"\x89PNG"));
    }
}
