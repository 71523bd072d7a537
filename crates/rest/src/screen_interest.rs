//! Who listens for `screen` events: a count of listeners per project, watched by the screen
//! events supervisor (`screen_events`), so that screens are followed for events only
//! while somebody wants them.
//!
//! 1. Each events listener that names the `screen` type holds an [`InterestGuard`] for its
//!    project (`None`: every project, `all-projects=true`) from its handshake until it ends.
//! 2. Taking and dropping a guard changes the counts in a [`watch`] channel, so the supervisor
//!    wakes at once when the first listener comes and when the last one goes, and sleeps
//!    (costs nothing) while there is none.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

/// Listeners of `screen` events per project; `None` counts listeners of every project.
pub type Listeners = BTreeMap<Option<String>, usize>;

/// The counts of `screen` listeners; cheap to clone, every clone counts into the same map.
#[derive(Debug, Clone, Default)]
pub struct ScreenInterest {
    counts: Arc<watch::Sender<Listeners>>,
}

impl ScreenInterest {
    /// Counts one more listener of `project` (`None`: of every project) until the guard drops.
    pub fn register(&self, project: Option<String>) -> InterestGuard {
        self.counts
            .send_modify(|counts| *counts.entry(project.clone()).or_default() += 1);
        InterestGuard {
            counts: self.counts.clone(),
            project,
        }
    }

    /// A receiver that sees every change of the counts.
    pub fn subscribe(&self) -> watch::Receiver<Listeners> {
        self.counts.subscribe()
    }
}

/// Whether `listeners` hold a listener for events of `project`.
pub fn wanted(listeners: &Listeners, project: &str) -> bool {
    listeners.keys().any(|listened| {
        listened
            .as_deref()
            .is_none_or(|listened| listened == project)
    })
}

/// One listener's interest; see [`ScreenInterest::register`].
#[derive(Debug)]
pub struct InterestGuard {
    counts: Arc<watch::Sender<Listeners>>,
    project: Option<String>,
}

impl Drop for InterestGuard {
    fn drop(&mut self) {
        self.counts.send_modify(|counts| {
            if let Some(count) = counts.get_mut(&self.project) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&self.project);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_lasts_as_long_as_a_listener_of_the_project_or_of_all() {
        let interest = ScreenInterest::default();
        let receiver = interest.subscribe();
        assert!(!wanted(&receiver.borrow(), "default"));
        let first = interest.register(Some("default".into()));
        let second = interest.register(Some("default".into()));
        assert!(wanted(&receiver.borrow(), "default"));
        assert!(!wanted(&receiver.borrow(), "other"));
        drop(first);
        assert!(wanted(&receiver.borrow(), "default"));
        drop(second);
        assert!(receiver.borrow().is_empty());
        let everywhere = interest.register(None);
        assert!(wanted(&receiver.borrow(), "other"));
        drop(everywhere);
        assert!(receiver.borrow().is_empty());
    }
}
