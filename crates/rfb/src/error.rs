//! The errors of the RFB client: one enum, every bound a server can hit named with its value.

use std::time::Duration;

/// What can go wrong talking to an RFB server.
#[derive(Debug, thiserror::Error)]
pub enum RfbError {
    /// Reading from or writing to the server failed.
    #[error("the VNC connection failed")]
    Io(#[source] std::io::Error),
    /// The server closed the connection (at a message boundary or in the middle of one).
    #[error("the VNC server closed the connection")]
    Closed,
    /// The server's greeting is not `RFB 003.008`.
    #[error("the VNC server speaks {greeting:?}, not RFB 003.008")]
    Version {
        /// The 12 bytes it sent, lossily as text.
        greeting: String,
    },
    /// The server refused the connection before security (no security type offered).
    #[error("the VNC server refused the connection: {reason}")]
    Refused {
        /// Its reason (at most [`crate::MAX_REASON_BYTES`] bytes).
        reason: String,
    },
    /// The server does not offer security type None (1).
    #[error("the VNC server does not offer security type None (it offers {offered:?})")]
    NoSecurityNone {
        /// The types it offered.
        offered: Vec<u8>,
    },
    /// The server refused security type None.
    #[error("the VNC server refused security type None: {reason}")]
    SecurityFailed {
        /// Its reason.
        reason: String,
    },
    /// The server announced a screen with more pixels than the caller allows.
    #[error("the VNC screen is {width}x{height}, more than {max_pixels} pixels")]
    ScreenTooLarge {
        /// Width announced.
        width: u16,
        /// Height announced.
        height: u16,
        /// The caller's bound ([`crate::Limits::max_pixels`]).
        max_pixels: u64,
    },
    /// A rectangle (or a CopyRect source) does not lie inside the screen.
    #[error(
        "the VNC server sent a rectangle {width}x{height} at {x},{y} outside its {screen_width}x{screen_height} screen"
    )]
    OutsideScreen {
        /// Left edge.
        x: u16,
        /// Top edge.
        y: u16,
        /// Width.
        width: u16,
        /// Height.
        height: u16,
        /// The screen's width.
        screen_width: u16,
        /// The screen's height.
        screen_height: u16,
    },
    /// A rectangle in an encoding we did not ask for (its length is unknown, so the stream
    /// cannot be followed further).
    #[error("the VNC server sent a rectangle in encoding {encoding}, which was not asked for")]
    UnknownEncoding {
        /// The encoding number.
        encoding: i32,
    },
    /// A message type RFB 3.8 does not define for servers.
    #[error("the VNC server sent an unknown message type {kind}")]
    UnknownMessage {
        /// The type byte.
        kind: u8,
    },
    /// Pixels arrived although no update request was outstanding (QEMU answers each request
    /// once; a server that floods us is cut off).
    #[error("the VNC server sent pixels that were not asked for")]
    Unsolicited,
    /// A text (server cut text, a reason, the desktop name) longer than its bound.
    #[error("the VNC server sent a text of {bytes} bytes, more than {limit}")]
    TextTooLong {
        /// Its announced length.
        bytes: u32,
        /// The bound.
        limit: u32,
    },
    /// A message began but its rest did not arrive in time.
    #[error("the VNC server stopped in the middle of a message for more than {timeout:?}")]
    Stalled {
        /// [`crate::Limits::message_timeout`].
        timeout: Duration,
    },
    /// An earlier read was cancelled in the middle of a message: the stream's position is lost.
    #[error("the VNC session was interrupted in the middle of a message")]
    Interrupted,
}

impl From<std::io::Error> for RfbError {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            Self::Closed
        } else {
            Self::Io(error)
        }
    }
}
