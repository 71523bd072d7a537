//! Poison-tolerant locks.
//!
//! A `std` lock is poisoned when a holder panics; every later `lock()` then fails. vgashot's
//! locks guard maps and small records that each critical section leaves consistent (no
//! invariant spans a point where code may panic), so a panic elsewhere (a bug in one request)
//! must not turn every later request into a panic too: the guard is taken as it is.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`] that ignores poisoning.
pub trait MutexExt<T: ?Sized> {
    /// The guard, whether or not a holder panicked.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`RwLock::read`] and [`RwLock::write`] that ignore poisoning.
pub trait RwLockExt<T: ?Sized> {
    /// A read guard, whether or not a writer panicked.
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    /// The write guard, whether or not a writer panicked.
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicked_holder_leaves_the_value_usable() {
        let mutex = Mutex::new(1);
        let lock = RwLock::new(2);
        std::thread::scope(|scope| {
            let _ = scope
                .spawn(|| {
                    let _held = mutex.lock().unwrap();
                    let _written = lock.write().unwrap();
                    panic!("a holder panics");
                })
                .join();
        });
        assert!(mutex.is_poisoned() && lock.is_poisoned());
        *mutex.lock_unpoisoned() += 1;
        assert_eq!(*mutex.lock_unpoisoned(), 2);
        *lock.write_unpoisoned() += 1;
        assert_eq!(*lock.read_unpoisoned(), 3);
    }
}
