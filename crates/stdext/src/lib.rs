//! Small extensions of std that several of vgashot's crates need, each written once:
//!
//! 1. [`sync`]: locks that survive a panic of another holder ([`MutexExt::lock_unpoisoned`],
//!    [`RwLockExt`]), for state that every critical section leaves consistent.
//! 2. [`time`]: times as Incus writes them, RFC 3339 in UTC with nanoseconds ([`rfc3339`],
//!    [`now_rfc3339`]).
//! 3. [`fs`]: a file written whole or not at all ([`write_atomically`]).

pub mod fs;
pub mod sync;
pub mod time;

pub use fs::write_atomically;
pub use sync::{MutexExt, RwLockExt};
pub use time::{now_rfc3339, rfc3339};
