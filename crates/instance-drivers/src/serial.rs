//! Interactive serial consoles shared by several people: who sees the output, who may type.
//!
//! How a console is shared:
//! 1. One [`SerialHub`] per instance holds the sessions open on its serial console, at most
//!    [`MAX_CONSOLE_SESSIONS`]; one more is refused with [`DriverError::ConsoleSessions`], so a
//!    client cannot make the daemon keep any number of them.
//! 2. While at least one session is open, a driver bridges the guest's serial port to the hub
//!    ([`SerialHub::bridge_and_join`]): what the guest writes is broadcast to every session, in chunks
//!    of at most [`OUTPUT_CHUNK`] bytes, through a channel of [`OUTPUT_BACKLOG`] chunks. A
//!    session that falls further behind is told so ([`SerialOutput::Lagged`]) and ends, so a
//!    viewer that stops reading costs a bounded amount of memory and never slows the guest.
//! 3. Every session sees the output; **one** types. The typist is the session most recently
//!    opened with `force` (as `incus console --force`) while it stays open, and otherwise the
//!    oldest open session. So the first person to attach types, later ones watch, `--force`
//!    takes the keyboard, and when the typist leaves the keyboard passes to the next oldest
//!    session (or back to whoever had it before a forced session that ended). What a watcher
//!    sends is dropped ([`SerialSession::send`] says so).
//! 4. When the last session ends (dropped, in any way), the hub tells the bridge to stop, and
//!    the driver gives the serial port back to its console log.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::{DriverError, Result};

/// The most sessions one instance's serial console may have at once, connected or waiting for
/// their client: a console is watched by people, and eight of them at one serial line is
/// already a crowd, while each session holds a connection, a task and a backlog.
pub const MAX_CONSOLE_SESSIONS: usize = 8;

/// The largest chunk of output a session receives at once (and so the largest message a
/// websocket carrying it sends).
pub const OUTPUT_CHUNK: usize = 4096;

/// How many chunks of output a session may fall behind before it is ended: at most 1 MiB per
/// session, more than a serial line produces in the time a working client takes to read it.
pub const OUTPUT_BACKLOG: usize = 256;

/// How many typed chunks may wait for the guest to read them; more are dropped.
pub const INPUT_BACKLOG: usize = 64;

/// The two ends a driver's bridge holds while sessions are open.
#[derive(Debug)]
pub struct BridgeEnds {
    /// Where the bridge publishes what the guest writes.
    pub output: broadcast::Sender<Bytes>,
    /// What the typist typed, for the guest.
    pub input: mpsc::Receiver<Bytes>,
    /// Resolves when the last session has ended: the bridge should stop.
    pub stop: oneshot::Receiver<()>,
    /// Which bridge this is, for [`SerialHub::bridge_ended`].
    pub generation: u64,
}

/// One instance's open sessions and the bridge that serves them.
#[derive(Debug, Default)]
pub struct SerialHub {
    state: Mutex<HubState>,
}

#[derive(Debug, Default)]
struct HubState {
    next_id: u64,
    next_force: u64,
    generations: u64,
    /// Open sessions, oldest first.
    sessions: Vec<SessionEntry>,
    bridge: Option<Bridge>,
}

#[derive(Debug)]
struct SessionEntry {
    id: u64,
    /// When the session was opened with `force`, its place among forced sessions.
    forced: Option<u64>,
}

#[derive(Debug)]
struct Bridge {
    generation: u64,
    output: broadcast::Sender<Bytes>,
    input: mpsc::Sender<Bytes>,
    stop: oneshot::Sender<()>,
}

/// What a session receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialOutput {
    /// Bytes the guest wrote.
    Data(Bytes),
    /// The session fell more than [`OUTPUT_BACKLOG`] chunks behind and was ended.
    Lagged,
    /// The console ended: the VM stopped, or the bridge failed.
    Ended,
}

impl SerialHub {
    /// A hub without sessions.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Nothing panics while holding the lock; the state stays consistent if it did.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a bridge serves the sessions now.
    pub fn is_bridged(&self) -> bool {
        self.lock().bridge.is_some()
    }

    /// Installs a new bridge and opens the first session on it (see [`Self::join`]). The
    /// caller found no bridge with [`Self::join`] and holds its own lock on bridging, so no
    /// other bridge serves.
    pub fn bridge_and_join(self: &Arc<Self>, force: bool) -> (BridgeEnds, SerialSession) {
        let mut state = self.lock();
        let (output, _) = broadcast::channel(OUTPUT_BACKLOG);
        let (input, input_receiver) = mpsc::channel(INPUT_BACKLOG);
        let (stop, stop_receiver) = oneshot::channel();
        state.generations += 1;
        let generation = state.generations;
        let session = Self::add_session(self, &mut state, force, &output, &input);
        state.bridge = Some(Bridge {
            generation,
            output: output.clone(),
            input,
            stop,
        });
        let ends = BridgeEnds {
            output,
            input: input_receiver,
            stop: stop_receiver,
            generation,
        };
        (ends, session)
    }

    /// Forgets the bridge of `generation` after it ended by itself (the VM stopped): open
    /// sessions see [`SerialOutput::Ended`], and the next session needs a new bridge. A newer
    /// bridge is left alone.
    pub fn bridge_ended(&self, generation: u64) {
        let mut state = self.lock();
        if state
            .bridge
            .as_ref()
            .is_some_and(|bridge| bridge.generation == generation)
        {
            state.bridge = None;
        }
    }

    /// Opens a session on the installed bridge, as the typist when `force`; refused past
    /// [`MAX_CONSOLE_SESSIONS`]. `None` when no bridge is installed.
    pub fn join(self: &Arc<Self>, force: bool) -> Result<Option<SerialSession>> {
        let mut state = self.lock();
        if state.sessions.len() >= MAX_CONSOLE_SESSIONS {
            return Err(DriverError::ConsoleSessions {
                limit: MAX_CONSOLE_SESSIONS,
            });
        }
        let Some(bridge) = &state.bridge else {
            return Ok(None);
        };
        let (output, input) = (bridge.output.clone(), bridge.input.clone());
        Ok(Some(Self::add_session(
            self, &mut state, force, &output, &input,
        )))
    }

    fn add_session(
        hub: &Arc<Self>,
        state: &mut HubState,
        force: bool,
        output: &broadcast::Sender<Bytes>,
        input: &mpsc::Sender<Bytes>,
    ) -> SerialSession {
        let id = state.next_id;
        state.next_id += 1;
        let forced = force.then(|| {
            state.next_force += 1;
            state.next_force
        });
        state.sessions.push(SessionEntry { id, forced });
        SerialSession {
            id,
            hub: Arc::clone(hub),
            output: output.subscribe(),
            input: input.clone(),
        }
    }

    /// Whether a new session would be refused now.
    pub fn is_full(&self) -> bool {
        self.lock().sessions.len() >= MAX_CONSOLE_SESSIONS
    }

    /// The typist: the latest forced session, or else the oldest.
    fn typist(state: &HubState) -> Option<u64> {
        state
            .sessions
            .iter()
            .filter_map(|session| session.forced.map(|order| (order, session.id)))
            .max()
            .map(|(_, id)| id)
            .or_else(|| state.sessions.first().map(|session| session.id))
    }

    fn leave(&self, id: u64) {
        let mut state = self.lock();
        state.sessions.retain(|session| session.id != id);
        if state.sessions.is_empty()
            && let Some(bridge) = state.bridge.take()
        {
            // The bridge may have ended already; then nobody listens, which is fine.
            let _ = bridge.stop.send(());
        }
    }
}

/// One person's view of a serial console; leaving is dropping it.
#[derive(Debug)]
pub struct SerialSession {
    id: u64,
    hub: Arc<SerialHub>,
    output: broadcast::Receiver<Bytes>,
    input: mpsc::Sender<Bytes>,
}

impl SerialSession {
    /// Whether this session types now (see the module's step 3).
    pub fn may_type(&self) -> bool {
        SerialHub::typist(&self.hub.lock()) == Some(self.id)
    }

    /// Sends typed bytes to the guest when this session is the typist; `false` when they were
    /// dropped: a watcher's, more than [`INPUT_BACKLOG`] chunks the guest has not read yet (as
    /// a serial line drops what overruns it), or the console ended.
    pub fn send(&self, bytes: Bytes) -> bool {
        self.may_type() && self.input.try_send(bytes).is_ok()
    }

    /// The next output.
    pub async fn recv(&mut self) -> SerialOutput {
        match self.output.recv().await {
            Ok(bytes) => SerialOutput::Data(bytes),
            Err(broadcast::error::RecvError::Lagged(_)) => SerialOutput::Lagged,
            Err(broadcast::error::RecvError::Closed) => SerialOutput::Ended,
        }
    }
}

impl Drop for SerialSession {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_types_until_someone_forces() {
        let hub = SerialHub::new();
        assert!(hub.join(false).unwrap().is_none(), "no bridge yet");
        let (mut ends, first) = hub.bridge_and_join(false);
        let second = hub.join(false).unwrap().unwrap();
        assert!(first.may_type() && !second.may_type());
        assert!(first.send(Bytes::from_static(b"a")));
        assert!(!second.send(Bytes::from_static(b"b")));
        assert_eq!(ends.input.recv().await.unwrap(), "a");
        let forced = hub.join(true).unwrap().unwrap();
        assert!(forced.may_type() && !first.may_type());
        drop(forced);
        assert!(first.may_type(), "the keyboard goes back");
        drop(first);
        assert!(second.may_type(), "then to the next oldest");
        drop(second);
        ends.stop
            .try_recv()
            .expect("the last one leaving stops the bridge");
        assert!(!hub.is_bridged());
    }

    #[tokio::test]
    async fn sessions_are_bounded_and_see_the_output() {
        let hub = SerialHub::new();
        let (ends, first) = hub.bridge_and_join(false);
        let mut sessions: Vec<_> = std::iter::once(first)
            .chain((1..MAX_CONSOLE_SESSIONS).map(|_| hub.join(false).unwrap().unwrap()))
            .collect();
        assert!(hub.is_full());
        let refused = hub.join(true).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Too many console sessions open on this instance (at most 8); try again later"
        );
        ends.output.send(Bytes::from_static(b"hello")).unwrap();
        for session in &mut sessions {
            assert_eq!(
                session.recv().await,
                SerialOutput::Data(Bytes::from_static(b"hello"))
            );
        }
        for _ in 0..=OUTPUT_BACKLOG {
            ends.output.send(Bytes::from_static(b"x")).unwrap();
        }
        assert_eq!(sessions[0].recv().await, SerialOutput::Lagged);
        let generation = ends.generation;
        drop(ends);
        hub.bridge_ended(generation);
        assert_eq!(sessions[1].recv().await, SerialOutput::Lagged);
        let mut last = sessions.pop().unwrap();
        while last.recv().await != SerialOutput::Ended {}
    }
}
