//! Console screenshots of a running VM.
//!
//! How a capture works:
//! 1. Ask QEMU for a PPM (its cheapest format: a header and raw RGB) through a memfd we own
//!    (`Qmp::screenshot`). QEMU holds its main loop, and so the guest, only for that copy.
//! 2. Decode the PPM ([`Frame::from_ppm_vec`], bounded and checked) and encode the PNG ourselves
//!    ([`PngCompression::Fastest`]) on tokio's blocking pool, away from QEMU and from the async
//!    workers.
//! 3. [`PngEncoder::Qemu`] instead asks QEMU for its own PNG; QEMU older than 7.1 has no PNG
//!    screendump, so it gets the PPM path whatever was asked.
//! 4. QEMU's refusals become typed errors: an unknown device, a head that is not a console, a VM
//!    without any display.

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

/// Takes a screenshot through `qmp`.
pub async fn capture(qmp: &Qmp, options: &ScreenshotOptions) -> Result<Screenshot> {
    if options.head.is_some() && options.device.is_none() {
        return Err(DriverError::HeadWithoutDevice);
    }
    let native_png =
        options.encoder == PngEncoder::Qemu && qmp.greeting().version.qemu >= FIRST_QEMU_WITH_PNG;
    let request = ScreenshotRequest {
        device: options.device.clone(),
        head: options.head,
        format: if native_png {
            ScreendumpFormat::Png
        } else {
            ScreendumpFormat::Ppm
        },
    };
    let image = qmp
        .screenshot(&request)
        .await
        .map_err(|error| classify(error, options))?;
    let captured_at = SystemTime::now();

    if native_png {
        let (width, height) = png_dimensions(&image)?;
        return Ok(Screenshot {
            png: image,
            frame: None,
            width,
            height,
            captured_at,
        });
    }
    let (frame, png) = tokio::task::spawn_blocking(move || {
        let frame = Frame::from_ppm_vec(image)?;
        let png = frame.encode_png(PngCompression::Fastest)?;
        Ok((frame, png))
    })
    .await
    .expect("decoding and encoding do not panic")
    .map_err(DriverError::Image)?;
    Ok(Screenshot {
        width: frame.width(),
        height: frame.height(),
        png,
        frame: Some(frame),
        captured_at,
    })
}

/// Turns QEMU's refusals into the errors a caller can act on.
fn classify(error: vgashot_qmp::Error, options: &ScreenshotOptions) -> DriverError {
    let device = || options.device.clone().unwrap_or_default();
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
