//! Whatever a VNC server (or anything pretending to be one) sends, the session never panics,
//! never holds a screen beyond its pixel bound, and ends when the bytes do.
//!
//! Random bytes rarely get past RFB's version string, so an input whose first byte is even is
//! played after a well-formed greeting (QEMU's, for a screen whose size the next four bytes
//! give): the fuzzer then explores the server messages (updates, rectangles, resizes, colour
//! maps, texts). An odd first byte plays the rest as the whole conversation, handshake included.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vgashot_rfb::{Limits, Session};

const LIMITS: Limits = Limits {
    max_pixels: 1 << 16,
    message_timeout: Duration::from_secs(1),
};

/// What QEMU says up to ServerInit for a `width` x `height` screen named `QEMU`.
fn greeting(width: [u8; 2], height: [u8; 2]) -> Vec<u8> {
    let mut bytes = b"RFB 003.008\n".to_vec();
    bytes.extend_from_slice(&[1, 1, 0, 0, 0, 0]);
    bytes.extend_from_slice(&width);
    bytes.extend_from_slice(&height);
    bytes.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    bytes.extend_from_slice(&[0, 0, 0, 4]);
    bytes.extend_from_slice(b"QEMU");
    bytes
}

fuzz_target!(|input: &[u8]| {
    let server = match input {
        [mode, w0, w1, h0, h1, messages @ ..] if mode % 2 == 0 => {
            let mut server = greeting([*w0, *w1], [*h0, *h1]);
            server.extend_from_slice(messages);
            server
        }
        [_, conversation @ ..] => conversation.to_vec(),
        [] => return,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let Ok(mut session) = Session::handshake(&server[..], tokio::io::sink(), LIMITS).await
        else {
            return;
        };
        loop {
            let screen = session.screen();
            let pixels = u64::from(screen.width()) * u64::from(screen.height());
            assert!(pixels <= LIMITS.max_pixels);
            assert_eq!(screen.rgb().len() as u64, pixels * 3);
            if session.request_update(true).await.is_err() || session.next_event().await.is_err()
            {
                return;
            }
        }
    });
});
