//! Prepares the guest in the default cache and prints how to boot it:
//! `cargo run -p vgashot-linux-guest --example prepare`.

use vgashot_linux_guest::Console;

fn main() {
    let cache = vgashot_linux_guest::LinuxGuest::default_cache_dir();
    match vgashot_linux_guest::LinuxGuest::prepare(&cache) {
        Ok(guest) => {
            for console in [Console::Framebuffer, Console::Text] {
                println!("kernel  {} ({console:?})", guest.kernel(console).display());
            }
            println!("initrd  {}", guest.initrd().display());
            println!("release {}", guest.release());
            println!("cmdline {}", guest.cmdline(&Default::default()));
        }
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            std::process::exit(1);
        }
    }
}
