//! Bounds on what clients may hold at once (connections, streams, event listeners, renderings),
//! and the errors a client meets at each.
//!
//! How a bound is kept:
//! 1. A [`Quota`] counts holders per key (a client address, an instance) against a per-key and
//!    a total limit; [`Quota::try_acquire`] either hands out a [`Slot`] or says which limit
//!    refused, never waits.
//! 2. A [`Slot`] gives its place back when dropped, so a holder that ends in any way (done,
//!    error, panic, cancelled task) frees it.
//! 3. A refusal is a [`LimitError`], which [`crate::ApiError::status`] maps to a 503 (the server
//!    is full) or a 429 (this client holds too much), answered as Incus's error envelope.
//!
//! The limits themselves are constants beside what they bound (`server`, `connection`,
//! `events`, `screens::stream`, `screens::variant`), each saying its value and why.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use vgashot_stdext::MutexExt;

/// A bound a client met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Every TCP (or Unix socket) connection slot is taken.
    #[error("Too many connections to the server (at most {limit}); try again later")]
    Connections {
        /// The bound.
        limit: usize,
    },
    /// This client address holds its share of the connections.
    #[error("Too many connections from this address (at most {limit})")]
    ConnectionsFromAddress {
        /// The bound.
        limit: usize,
    },
    /// Every stream slot of the server is taken.
    #[error("Too many screen streams open on the server (at most {limit}); try again later")]
    Streams {
        /// The bound.
        limit: usize,
    },
    /// This instance has its share of the streams.
    #[error("Too many screen streams open on this instance (at most {limit}); try again later")]
    InstanceStreams {
        /// The bound.
        limit: usize,
    },
    /// Every slot for a request waiting for a screen change (`wait=`) is taken.
    #[error("Too many requests waiting for a screen change (at most {limit}); try again later")]
    Waiters {
        /// The bound.
        limit: usize,
    },
    /// This instance has its share of the requests waiting for a screen change.
    #[error(
        "Too many requests waiting for a screen change of this instance (at most {limit}); try again later"
    )]
    InstanceWaiters {
        /// The bound.
        limit: usize,
    },
    /// Every event listener slot is taken.
    #[error("Too many event listeners (at most {limit}); try again later")]
    EventListeners {
        /// The bound.
        limit: usize,
    },
}

/// Which of a quota's two limits refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The total.
    Total(usize),
    /// The key's share.
    PerKey(usize),
}

impl Refused {
    /// The limit that refused.
    pub fn limit(self) -> usize {
        match self {
            Self::Total(limit) | Self::PerKey(limit) => limit,
        }
    }
}

/// Holders counted per key, against a per-key and a total limit.
#[derive(Debug)]
pub struct Quota<K> {
    state: Arc<Mutex<QuotaState<K>>>,
    per_key: usize,
    total: usize,
}

#[derive(Debug)]
struct QuotaState<K> {
    held: HashMap<K, usize>,
    total: usize,
}

impl<K> Clone for Quota<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            per_key: self.per_key,
            total: self.total,
        }
    }
}

impl<K: Hash + Eq + Clone> Quota<K> {
    /// At most `per_key` holders of one key and `total` holders in all.
    pub fn new(per_key: usize, total: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(QuotaState {
                held: HashMap::new(),
                total: 0,
            })),
            per_key,
            total,
        }
    }

    fn state(&self) -> MutexGuard<'_, QuotaState<K>> {
        // Every update is a pair of counter changes made together; a poisoned lock is still
        // consistent.
        self.state.lock_unpoisoned()
    }

    /// A place for `key`, or the limit that refuses it. Never waits.
    pub fn try_acquire(&self, key: K) -> Result<Slot<K>, Refused> {
        let mut state = self.state();
        if state.total >= self.total {
            return Err(Refused::Total(self.total));
        }
        let held = state.held.entry(key.clone()).or_default();
        if *held >= self.per_key {
            return Err(Refused::PerKey(self.per_key));
        }
        *held += 1;
        state.total += 1;
        drop(state);
        Ok(Slot {
            quota: self.clone(),
            key,
        })
    }

    /// How many places are held in all.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.state().total
    }

    fn release(&self, key: &K) {
        let mut state = self.state();
        state.total = state.total.saturating_sub(1);
        if let Some(held) = state.held.get_mut(key) {
            *held -= 1;
            if *held == 0 {
                // Keys that hold nothing are forgotten, so the map is as small as the holders.
                state.held.remove(key);
            }
        }
    }
}

/// A place in a [`Quota`], given back when dropped.
#[derive(Debug)]
pub struct Slot<K: Hash + Eq + Clone> {
    quota: Quota<K>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        self.quota.release(&self.key);
    }
}

/// Which clients share a per-address connection limit: one IPv4 address, or one IPv6 /64 (the
/// smallest network a site is given, so one client holds all its addresses); an IPv4 address
/// mapped into IPv6 counts as the IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_counts_per_key_and_in_all_and_frees_on_drop() {
        let quota = Quota::new(2, 3);
        let a1 = quota.try_acquire("a").unwrap();
        let a2 = quota.try_acquire("a").unwrap();
        assert_eq!(quota.try_acquire("a").unwrap_err(), Refused::PerKey(2));
        let b1 = quota.try_acquire("b").unwrap();
        assert_eq!(quota.held(), 3);
        // The total refuses before the key's share is looked at.
        assert_eq!(quota.try_acquire("c").unwrap_err(), Refused::Total(3));
        drop(a1);
        assert_eq!(quota.held(), 2);
        let c1 = quota.try_acquire("c").unwrap();
        drop((a2, b1, c1));
        assert_eq!(quota.held(), 0);
        assert!(
            quota.state().held.is_empty(),
            "keys holding nothing are forgotten"
        );
        // A refused request holds nothing.
        let _ = quota.try_acquire("a").unwrap();
        assert_eq!(quota.held(), 0);
    }

    #[test]
    fn clients_are_keyed_by_address_or_ipv6_network() {
        let key = |text: &str| client_key(text.parse().unwrap());
        assert_eq!(key("192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_eq!(key("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
