//! One RFB session: the handshake, update requests, and the server's messages applied to our
//! copy of its screen.
//!
//! 1. [`Session::handshake`] reads `RFB 003.008`, answers the same, picks security None (1),
//!    reads its result, sends ClientInit with the shared flag (other viewers stay), reads
//!    ServerInit (the screen's size, bounded by [`Limits::max_pixels`] before the copy is
//!    allocated; the desktop name, bounded by [`MAX_REASON_BYTES`]), and sets our pixel format
//!    (32 bits, depth 24, little endian, true colour, red/green/blue at 16/8/0) and encodings:
//!    Raw, CopyRect and the DesktopSize pseudo-encoding.
//! 2. [`Session::request_update`] asks for the whole screen, incremental (only what changed; the
//!    server answers when something does, which is how a still screen costs nothing) or full.
//! 3. [`Session::next_event`] reads one server message and applies it: every rectangle is checked
//!    against the screen before a byte of it is read, pixels are read through one bounded row
//!    buffer (no allocation follows a size the server chose, except a DesktopSize within
//!    [`Limits::max_pixels`]), pixels nobody asked for are refused ([`RfbError::Unsolicited`]: one request
//!    waits at a time and is answered once),
//!    texts are skipped within [`MAX_CUT_TEXT_BYTES`], and an encoding we did not ask for ends
//!    the session (its length is unknown).
//! 4. Waiting for a message is not bounded (a still screen sends nothing); once one has begun
//!    its rest must arrive within [`Limits::message_timeout`]. A read cancelled in the middle of
//!    a message leaves the session [`RfbError::Interrupted`] for good.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::error::RfbError;
use crate::screen::{Rect, Screen};

/// The longest reason or desktop name we read: 4 KiB (QEMU's are a few words).
pub const MAX_REASON_BYTES: u32 = 4096;
/// The longest server cut text we skip: 1 MiB. QEMU sends none on a session without a clipboard
/// agent; a larger one ends the session rather than make us read without bound.
pub const MAX_CUT_TEXT_BYTES: u32 = 1 << 20;

const VERSION: &[u8; 12] = b"RFB 003.008\n";
const SECURITY_NONE: u8 = 1;
const ENCODING_RAW: i32 = 0;
const ENCODING_COPY_RECT: i32 = 1;
const ENCODING_DESKTOP_SIZE: i32 = -223;

/// What the caller bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most pixels the screen may have (the driver's `max_screen_pixels`).
    pub max_pixels: u64,
    /// How long the rest of a message may take once it has begun.
    pub message_timeout: Duration,
}

/// What one server message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A FramebufferUpdate was applied.
    Updated {
        /// Rectangles with pixels (Raw or CopyRect) it held.
        rects: u16,
        /// Whether the screen's size changed (DesktopSize).
        resized: bool,
    },
    /// Something without pixels: a bell, a colour map, a cut text.
    Other,
}

/// An RFB session over `R`/`W` (e.g. the halves of a Unix socket).
#[derive(Debug)]
pub struct Session<R, W> {
    reader: BufReader<R>,
    writer: W,
    limits: Limits,
    screen: Screen,
    name: String,
    /// Whether an update request was sent and not yet answered. One at a time: QEMU merges
    /// requests that wait into one answer, so a second would only blur which answer is whose.
    pending: bool,
    /// Set while a message is being read; still set afterwards only if that read was cancelled.
    mid_message: bool,
    /// One row of wire pixels (at most 65535 x 4 bytes), reused.
    row: Vec<u8>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// Runs the handshake (step 1). The caller bounds its time (a server that never answers
    /// makes it wait).
    pub async fn handshake(reader: R, writer: W, limits: Limits) -> Result<Self, RfbError> {
        let mut reader = BufReader::new(reader);
        let mut writer = writer;
        let mut greeting = [0; 12];
        reader.read_exact(&mut greeting).await?;
        if &greeting != VERSION {
            return Err(RfbError::Version {
                greeting: String::from_utf8_lossy(&greeting).into_owned(),
            });
        }
        writer.write_all(VERSION).await?;
        writer.flush().await?;

        let count = reader.read_u8().await?;
        if count == 0 {
            let reason = read_text(&mut reader, MAX_REASON_BYTES).await?;
            return Err(RfbError::Refused { reason });
        }
        let mut offered = vec![0; usize::from(count)];
        reader.read_exact(&mut offered).await?;
        if !offered.contains(&SECURITY_NONE) {
            return Err(RfbError::NoSecurityNone { offered });
        }
        writer.write_all(&[SECURITY_NONE]).await?;
        writer.flush().await?;
        if reader.read_u32().await? != 0 {
            let reason = read_text(&mut reader, MAX_REASON_BYTES).await?;
            return Err(RfbError::SecurityFailed { reason });
        }

        // ClientInit: shared.
        writer.write_all(&[1]).await?;
        writer.flush().await?;
        let width = reader.read_u16().await?;
        let height = reader.read_u16().await?;
        let mut server_format = [0; 16];
        reader.read_exact(&mut server_format).await?;
        let name = read_text(&mut reader, MAX_REASON_BYTES).await?;
        let screen = Screen::new(width, height, limits.max_pixels)?;

        let mut setup = Vec::with_capacity(20 + 16);
        // SetPixelFormat: 32 bpp, depth 24, little endian, true colour, 255 each, 16/8/0.
        setup.extend_from_slice(&[0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0]);
        setup.extend_from_slice(&[0, 0, 0]);
        // SetEncodings.
        let encodings = [ENCODING_RAW, ENCODING_COPY_RECT, ENCODING_DESKTOP_SIZE];
        setup.extend_from_slice(&[2, 0]);
        setup.extend_from_slice(&(encodings.len() as u16).to_be_bytes());
        for encoding in encodings {
            setup.extend_from_slice(&encoding.to_be_bytes());
        }
        writer.write_all(&setup).await?;
        writer.flush().await?;
        Ok(Self {
            reader,
            writer,
            limits,
            screen,
            name,
            pending: false,
            mid_message: false,
            row: Vec::new(),
        })
    }

    /// Our copy of the screen.
    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    /// The desktop name from ServerInit.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether an update request waits for its answer.
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// Asks for the whole screen (step 2): `incremental` for what changes from now on, or all
    /// of it. Sends nothing while a request waits for its answer (one at a time; after a
    /// DesktopSize the waiting request is answered with the whole new screen).
    pub async fn request_update(&mut self, incremental: bool) -> Result<(), RfbError> {
        if self.pending {
            return Ok(());
        }
        let mut request = [3, u8::from(incremental), 0, 0, 0, 0, 0, 0, 0, 0];
        request[6..8].copy_from_slice(&self.screen.width().to_be_bytes());
        request[8..10].copy_from_slice(&self.screen.height().to_be_bytes());
        self.writer.write_all(&request).await?;
        self.writer.flush().await?;
        self.pending = true;
        Ok(())
    }

    /// Reads one server message and applies it to the screen (steps 3 and 4). Not cancel-safe:
    /// dropped in the middle of a message, the session answers [`RfbError::Interrupted`] after.
    pub async fn next_event(&mut self) -> Result<Event, RfbError> {
        if self.mid_message {
            return Err(RfbError::Interrupted);
        }
        let kind = self.reader.read_u8().await?;
        self.mid_message = true;
        let timeout = self.limits.message_timeout;
        let event = tokio::time::timeout(timeout, self.message(kind))
            .await
            .map_err(|_| RfbError::Stalled { timeout })??;
        self.mid_message = false;
        Ok(event)
    }

    async fn message(&mut self, kind: u8) -> Result<Event, RfbError> {
        match kind {
            0 => self.update().await,
            1 => {
                let mut header = [0; 5];
                self.reader.read_exact(&mut header).await?;
                let colours = u16::from_be_bytes([header[3], header[4]]);
                self.skip(u64::from(colours) * 6).await?;
                Ok(Event::Other)
            }
            2 => Ok(Event::Other),
            3 => {
                let mut padding = [0; 3];
                self.reader.read_exact(&mut padding).await?;
                let bytes = self.reader.read_u32().await?;
                if bytes > MAX_CUT_TEXT_BYTES {
                    return Err(RfbError::TextTooLong {
                        bytes,
                        limit: MAX_CUT_TEXT_BYTES,
                    });
                }
                self.skip(u64::from(bytes)).await?;
                Ok(Event::Other)
            }
            kind => Err(RfbError::UnknownMessage { kind }),
        }
    }

    async fn update(&mut self) -> Result<Event, RfbError> {
        let _padding = self.reader.read_u8().await?;
        let count = self.reader.read_u16().await?;
        let (mut rects, mut resized) = (0, false);
        for _ in 0..count {
            let mut header = [0; 12];
            self.reader.read_exact(&mut header).await?;
            let field = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
            let rect = Rect {
                x: field(0),
                y: field(2),
                width: field(4),
                height: field(6),
            };
            let encoding = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
            match encoding {
                ENCODING_DESKTOP_SIZE => {
                    self.screen = Screen::new(rect.width, rect.height, self.limits.max_pixels)?;
                    resized = true;
                }
                ENCODING_RAW | ENCODING_COPY_RECT => {
                    if rects == 0 {
                        // The first rectangle with pixels answers the request.
                        if !self.pending {
                            return Err(RfbError::Unsolicited);
                        }
                        self.pending = false;
                    }
                    rects += 1;
                    let rect = self.screen.check(rect)?;
                    if encoding == ENCODING_RAW {
                        self.raw(rect).await?;
                    } else {
                        let source_x = self.reader.read_u16().await?;
                        let source_y = self.reader.read_u16().await?;
                        self.screen.check(Rect {
                            x: source_x,
                            y: source_y,
                            ..rect
                        })?;
                        self.screen.copy(rect, source_x, source_y);
                    }
                }
                encoding => return Err(RfbError::UnknownEncoding { encoding }),
            }
        }
        if rects == 0 && !resized {
            // An empty update answers a request too (some servers send one).
            self.pending = false;
        }
        Ok(Event::Updated { rects, resized })
    }

    async fn raw(&mut self, rect: Rect) -> Result<(), RfbError> {
        let row_bytes = usize::from(rect.width) * 4;
        self.row.resize(row_bytes, 0);
        for row in 0..rect.height {
            self.reader.read_exact(&mut self.row[..row_bytes]).await?;
            self.screen.put_row(rect, row, &self.row[..row_bytes]);
        }
        Ok(())
    }

    async fn skip(&mut self, bytes: u64) -> Result<(), RfbError> {
        let skipped =
            tokio::io::copy(&mut (&mut self.reader).take(bytes), &mut tokio::io::sink()).await?;
        if skipped < bytes {
            return Err(RfbError::Closed);
        }
        Ok(())
    }
}

/// A length-prefixed text of at most `limit` bytes.
async fn read_text<R: AsyncRead + Unpin>(reader: &mut R, limit: u32) -> Result<String, RfbError> {
    let bytes = reader.read_u32().await?;
    if bytes > limit {
        return Err(RfbError::TextTooLong { bytes, limit });
    }
    let mut text = vec![0; bytes as usize];
    reader.read_exact(&mut text).await?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}
