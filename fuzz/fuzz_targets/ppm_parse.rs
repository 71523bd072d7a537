//! Feeds arbitrary bytes to the PPM decoder: it must return an error or a
//! frame, never panic, hang or allocate beyond its size limits.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vgashot_framebuffer::Frame::from_ppm(data);
});
