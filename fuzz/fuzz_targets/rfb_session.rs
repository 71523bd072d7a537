//! Whatever a VNC server (or anything pretending to be one) sends, the session never panics,
//! never holds a screen beyond its pixel bound, and ends when the bytes do.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vgashot_rfb::{Limits, Session};

const LIMITS: Limits = Limits {
    max_pixels: 1 << 16,
    message_timeout: Duration::from_secs(1),
};

fuzz_target!(|server: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let Ok(mut session) = Session::handshake(server, tokio::io::sink(), LIMITS).await else {
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
