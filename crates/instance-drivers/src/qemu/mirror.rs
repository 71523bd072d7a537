//! A mirror of a VM's primary screen through QEMU's own VNC server, on a socket we pass to it:
//! a still screen costs neither QEMU nor us anything, and a change reaches followers at once.
//!
//! How a screen is mirrored:
//! 1. QEMU runs with `-vnc none` (a VNC server listening nowhere). On demand (a screenshot of
//!    the primary screen, or a follower of it), [`Mirror`] checks that QEMU has a VNC server
//!    (`query-vnc-servers`: QEMU's `add_client` accepts a socket it cannot serve without a
//!    word, and keeps it), makes a `socketpair`, passes one end
//!    to QEMU (`getfd`) and makes it a client of the VNC server (`add_client`, `skipauth`: the
//!    socket is ours, nobody else can reach it). Our RFB client (`vgashot-rfb`) talks on the
//!    other end, bounded by the driver's `max_screen_pixels`.
//! 2. The session asks for the whole screen once, then for incremental updates: QEMU answers
//!    only when pixels changed, so on a still screen nothing moves. Each answer is applied to
//!    our copy; resolution changes (DesktopSize) are followed, the copy being withheld until
//!    the whole new screen has been asked for and has arrived ([`Completeness`]: one full
//!    update more per resize, which happens at mode switches only). The picture and a
//!    generation number (the change signal of [`ChangeFeed`]) move only when an update carried
//!    pixels.
//! 3. Paced: after an answer, the next request waits until the instance's
//!    `console.screenshot.min_interval` has passed since the last one, so a guest repainting
//!    constantly costs QEMU and us one update per interval. An interval of at most
//!    [`MIN_PERIOD`] (`0` included) asks again at once: QEMU's own refresh timer (30 ms at its
//!    fastest) is then the bound, and a request is always waiting when it fires (QEMU slows
//!    its timer down at every tick that finds no request waiting, measured here as half the
//!    updates of a screen changing 18 times a second lost when we asked 33 ms apart).
//! 4. A screenshot of the primary screen is copied from the picture while the session has one
//!    ([`FrameOrigin::Mirror`]), with its version (the session and its generation number); the
//!    screens engine asks for the version first ([`Mirror::version`]) and copies nothing while
//!    it has not moved, so a still screen asked for every second costs a lock and a compare. Before the first full update has arrived (about 30 ms after a
//!    connection on this machine), a request does not wait for it: it takes a screendump, as
//!    every other head does (the VNC session shows only the primary console), so the first
//!    request after a quiet period costs what it did before the mirror.
//! 5. The session lives while a follower holds its interest ([`ChangeFeed::interest`]) or a
//!    screenshot asked for it within [`LINGER`]; then it is let go, and an unviewed VM holds no
//!    session and no picture.
//! 6. A session that fails (QEMU without a VNC server, a peer breaking a bound) ends; its
//!    picture goes at once, its feeds close, so followers poll; screenshots take screendumps; a
//!    new session is tried no sooner than [`RETRY_AFTER_FAILURE`]. Every failure is logged with
//!    its cause. A session that ends because its QEMU is going (QMP closes within
//!    [`QEMU_GOING`]) is no failure: nothing is logged, and a restarted VM mirrors at once.
//! 7. QEMU's VNC server looks for changes on a refresh timer that slows to 3 s on a screen that
//!    stays still (`VNC_REFRESH_INTERVAL_MAX`) and speeds up to 30 ms while it changes: the
//!    first change after a long still period reaches the mirror within 3 s, later ones within
//!    tens of milliseconds.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use vgashot_framebuffer::Frame;
use vgashot_qmp::Qmp;
use vgashot_rfb::{Event, Limits, RfbError, Session};
use vgashot_screens::{ChangeFeed, FrameVersion};

/// How long a session outlives the last demand for it: 15 s. The page asks for a thumbnail
/// every second while it is visible, so a tab hidden for a moment or a card scrolled away and
/// back keeps its session; an idle session on a still screen costs nothing, and on a changing
/// one at most one update per interval for these 15 s.
pub const LINGER: Duration = Duration::from_secs(15);
/// How soon after a failed session another is tried: 30 s, so a QEMU without a VNC server (one
/// started by an older daemon) costs one failed `add_client` per 30 s, not one per request.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// The interval at and below which the next update is asked for as soon as one arrives: 33 ms,
/// the 30 frames a second an MJPEG stream may ask for at most, about QEMU's fastest refresh.
pub const MIN_PERIOD: Duration = Duration::from_millis(33);
/// How long QEMU has to finish the handshake, and the rest of a message once begun: 5 s.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after a session ended QEMU may take to show it is going (its QMP connection
/// closing) for the end to count as the VM's, not as the session's failure.
const QEMU_GOING: Duration = Duration::from_secs(1);
/// How often an idle session checks whether it is still wanted.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Why a mirror session ended early (logged; screenshots fall back to screendump).
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The socket pair could not be made.
    #[error("cannot make a socket pair for the VNC session")]
    Socket(#[source] std::io::Error),
    /// QEMU refused our end of the socket or the VNC client, or could not list its VNC servers.
    #[error("QEMU refused the VNC session")]
    Qmp(#[source] vgashot_qmp::Error),
    /// QEMU runs without a VNC server (`-vnc` missing, as an older daemon started it), which
    /// `add_client` would not say: it would keep our socket unused.
    #[error("QEMU has no VNC server")]
    NoVncServer,
    /// QEMU did not finish the handshake in time.
    #[error("QEMU's VNC server did not answer within {0:?}")]
    Handshake(Duration),
    /// The session broke the protocol or a bound, or closed.
    #[error(transparent)]
    Rfb(#[from] RfbError),
}

/// Names for the descriptors we pass, unique in this process.
static NEXT_FD_NAME: AtomicU64 = AtomicU64::new(0);
/// Numbers for sessions, unique in this process: a picture's [`FrameVersion`] names its session.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(0);

/// The mirror of one VM's primary screen: at most one session at a time.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    /// Shared with the session's task, which clears it when the session ends.
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    live: Option<Arc<Live>>,
    failed_at: Option<Instant>,
}

/// What a session shares with the screenshots and followers it serves.
#[derive(Debug)]
struct Live {
    /// Which session this is, for the versions of its pictures.
    session: u64,
    /// The screen and its generation, once a full update has arrived; `None` while a new size
    /// awaits its content.
    picture: Mutex<Option<(Arc<Frame>, u64)>>,
    /// The generation number: moves when the picture does. Followers' feeds close when the
    /// session ends and this goes.
    changes: watch::Sender<u64>,
    /// Cloned into every follower's feed: more than one strong count means followers.
    interest: Arc<()>,
    /// When a screenshot last asked for the picture.
    last_demand: Mutex<Instant>,
    /// The instance's minimum interval now (step 3): a change of its configuration paces the
    /// running session from its next request on.
    period: Mutex<Duration>,
    /// The QEMU it mirrors: a session of a QEMU that has gone is not reused.
    qmp: Qmp,
    /// Set when the mirror goes (its instance was dropped): nobody will ask again.
    abandoned: AtomicBool,
}

impl Live {
    /// Whether anyone wants the session: a follower, or a screenshot within [`LINGER`].
    fn wanted(&self) -> bool {
        !self.abandoned.load(Ordering::Relaxed)
            && (Arc::strong_count(&self.interest) > 1 || lock(&self.last_demand).elapsed() < LINGER)
    }

    fn publish(&self, picture: Option<Frame>) {
        let mut slot = lock(&self.picture);
        *slot = picture.map(|frame| {
            self.changes.send_modify(|generation| *generation += 1);
            (Arc::new(frame), *self.changes.borrow())
        });
    }

    fn version(&self, generation: u64) -> FrameVersion {
        FrameVersion {
            session: self.session,
            generation,
        }
    }
}

/// What the mirror needs from the VM for a session.
#[derive(Debug, Clone)]
pub(crate) struct SessionSpec {
    /// The running VM's QMP connection.
    pub qmp: Qmp,
    /// The driver's `max_screen_pixels`.
    pub max_pixels: u64,
    /// The instance's minimum interval when the session starts (raised to [`MIN_PERIOD`]);
    /// [`Mirror::set_period`] changes it.
    pub period: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is one assignment; a poisoned lock is consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Mirror {
    fn drop(&mut self) {
        // The task holds the session; without it nobody will ask again.
        if let Some(live) = lock(&self.state).live.take() {
            live.abandoned.store(true, Ordering::Relaxed);
        }
    }
}

impl Mirror {
    /// The mirrored picture (shared, not copied) and its version, if a session has one; either
    /// way a session is wanted from now on (step 4): one is started if none runs (and none
    /// failed lately).
    pub(crate) fn picture(
        &self,
        spec: impl FnOnce() -> Option<SessionSpec>,
    ) -> Option<(Arc<Frame>, FrameVersion)> {
        let live = self.live(spec)?;
        *lock(&live.last_demand) = Instant::now();
        let (picture, generation) = lock(&live.picture).clone()?;
        Some((picture, live.version(generation)))
    }

    /// The version of the running session's picture, if it has one, without copying it; a
    /// demand as [`Self::picture`] is, but it starts no session (step 4).
    pub(crate) fn version(&self) -> Option<FrameVersion> {
        let live = lock(&self.state).live.clone()?;
        if live.qmp.lost().is_some() {
            return None;
        }
        *lock(&live.last_demand) = Instant::now();
        let generation = lock(&live.picture).as_ref()?.1;
        Some(live.version(generation))
    }

    /// Paces the running session, if any, by the instance's new minimum interval.
    pub(crate) fn set_period(&self, period: Duration) {
        if let Some(live) = &lock(&self.state).live {
            *lock(&live.period) = period;
        }
    }

    /// A change feed of the primary screen for a follower, starting a session if needed.
    pub(crate) fn feed(&self, spec: impl FnOnce() -> Option<SessionSpec>) -> Option<ChangeFeed> {
        let live = self.live(spec)?;
        Some(ChangeFeed {
            changes: live.changes.subscribe(),
            interest: Box::new(live.interest.clone()),
        })
    }

    /// The running session, or a new one (if a tokio runtime runs, `spec` gives one, and no
    /// session failed within [`RETRY_AFTER_FAILURE`]).
    fn live(&self, spec: impl FnOnce() -> Option<SessionSpec>) -> Option<Arc<Live>> {
        let mut state = lock(&self.state);
        if let Some(live) = state.live.take_if(|live| live.qmp.lost().is_some()) {
            // Its QEMU has gone (the VM stopped or restarted): the task ends by itself.
            live.abandoned.store(true, Ordering::Relaxed);
        }
        if let Some(live) = &state.live {
            return Some(live.clone());
        }
        if state
            .failed_at
            .is_some_and(|failed| failed.elapsed() < RETRY_AFTER_FAILURE)
        {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let spec = spec()?;
        let live = Arc::new(Live {
            session: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            picture: Mutex::new(None),
            changes: watch::Sender::new(0),
            interest: Arc::new(()),
            last_demand: Mutex::new(Instant::now()),
            period: Mutex::new(spec.period),
            qmp: spec.qmp.clone(),
            abandoned: AtomicBool::new(false),
        });
        state.live = Some(live.clone());
        let shared = Arc::downgrade(&self.state);
        let session = live.clone();
        runtime.spawn(async move {
            let outcome = run(&spec, &session).await;
            // The picture goes with the session at once: a screenshot meanwhile takes a
            // screendump, not the last picture of a session that ended; after a failure, no
            // new session is tried for a while.
            let ended = Instant::now();
            if let Some(shared) = shared.upgrade() {
                let mut state = lock(&shared);
                let ours = state
                    .live
                    .as_ref()
                    .is_some_and(|live| Arc::ptr_eq(live, &session));
                if ours {
                    state.live = None;
                    if outcome.is_err() {
                        state.failed_at = Some(ended);
                    }
                }
            }
            let Err(error) = outcome else { return };
            // A session of a QEMU that is going ends with it, often a moment before QMP says
            // so: that is the VM's end, not a failure, and a restarted VM mirrors at once.
            if tokio::time::timeout(QEMU_GOING, spec.qmp.closed())
                .await
                .is_ok()
            {
                if let Some(shared) = shared.upgrade() {
                    lock(&shared).failed_at.take_if(|failed| *failed == ended);
                }
                return;
            }
            tracing::warn!(
                error = %ErrorChain(&error),
                "the VNC mirror failed; screenshots use screendump"
            );
        });
        Some(live)
    }
}

/// An error with its causes, for the log.
struct ErrorChain<'a>(&'a MirrorError);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(self.0);
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

/// Runs one session until nobody wants it (`Ok`) or it fails (steps 1 to 3, 5 and 6).
async fn run(spec: &SessionSpec, live: &Live) -> Result<(), MirrorError> {
    let mut session = connect(spec).await?;
    session.request_update(false).await?;
    let mut last_request = Instant::now();
    let mut completeness = Completeness::default();
    loop {
        let event = {
            let next = session.next_event();
            tokio::pin!(next);
            loop {
                tokio::select! {
                    event = &mut next => break Some(event),
                    () = tokio::time::sleep(IDLE_CHECK) => {
                        if !live.wanted() {
                            break None;
                        }
                    }
                }
            }
        };
        let Some(event) = event else {
            return Ok(());
        };
        if let Event::Updated { rects, resized } = event? {
            match completeness.after_update(rects, resized) {
                Publish::Picture => live.publish(frame_of(session.screen())),
                Publish::Withhold => live.publish(None),
                Publish::Nothing => {}
            }
        }
        if !session.pending() {
            let period = lock(&live.period).max(MIN_PERIOD);
            if period > MIN_PERIOD {
                tokio::time::sleep_until(last_request + period).await;
            }
            session
                .request_update(completeness.next_request_is_incremental())
                .await?;
            last_request = Instant::now();
        }
    }
}

/// What an update means for the published picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// The session's screen is the picture now.
    Picture,
    /// The screen changed size: no picture until the new one is whole.
    Withhold,
    /// Nothing to publish.
    Nothing,
}

/// Whether the session's screen is whole (step 2): after a resize its content is only what
/// updates drew since, so the picture is withheld until the answer to a request for the whole
/// screen has arrived. Requests are answered in order and one at a time (the next is sent only
/// once the last is answered), so the first update with pixels after that request answers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Completeness {
    /// The screen is whole.
    #[default]
    Whole,
    /// It changed size; the whole screen is still to be asked for.
    Resized,
    /// The whole screen is asked for.
    Asked,
}

impl Completeness {
    fn after_update(&mut self, rects: u16, resized: bool) -> Publish {
        if resized {
            *self = Self::Resized;
            return Publish::Withhold;
        }
        match (*self, rects) {
            (_, 0) | (Self::Resized, _) => Publish::Nothing,
            (Self::Whole | Self::Asked, _) => {
                *self = Self::Whole;
                Publish::Picture
            }
        }
    }

    /// Whether the next request may be incremental: not when the whole screen is to be asked.
    fn next_request_is_incremental(&mut self) -> bool {
        if *self == Self::Resized {
            *self = Self::Asked;
            return false;
        }
        true
    }
}

/// A session with QEMU's VNC server on a socket passed to it.
async fn connect(
    spec: &SessionSpec,
) -> Result<Session<tokio::net::unix::OwnedReadHalf, tokio::net::unix::OwnedWriteHalf>, MirrorError>
{
    let servers = spec
        .qmp
        .execute("query-vnc-servers", None)
        .await
        .map_err(MirrorError::Qmp)?;
    if servers.as_array().is_none_or(Vec::is_empty) {
        return Err(MirrorError::NoVncServer);
    }
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(MirrorError::Socket)?;
    let name = format!(
        "vgashot-vnc-{}",
        NEXT_FD_NAME.fetch_add(1, Ordering::Relaxed)
    );
    spec.qmp
        .getfd(&name, theirs.as_fd())
        .await
        .map_err(MirrorError::Qmp)?;
    drop(theirs);
    let arguments = json!({"protocol": "vnc", "fdname": name, "skipauth": true});
    if let Err(error) = spec.qmp.execute("add_client", Some(arguments)).await {
        // QEMU keeps a descriptor it did not use under its name: close it.
        let _ = spec.qmp.closefd(&name).await;
        return Err(MirrorError::Qmp(error));
    }
    ours.set_nonblocking(true).map_err(MirrorError::Socket)?;
    let (reader, writer) = tokio::net::UnixStream::from_std(ours)
        .map_err(MirrorError::Socket)?
        .into_split();
    let limits = Limits {
        max_pixels: spec.max_pixels,
        message_timeout: PEER_TIMEOUT,
    };
    tokio::time::timeout(PEER_TIMEOUT, Session::handshake(reader, writer, limits))
        .await
        .map_err(|_| MirrorError::Handshake(PEER_TIMEOUT))?
        .map_err(MirrorError::Rfb)
}

/// Our copy of the screen as a frame; `None` for a screen a frame cannot hold (empty, or wider
/// than the framebuffer's bound), which screenshots then take by screendump.
fn frame_of(screen: &vgashot_rfb::Screen) -> Option<Frame> {
    Frame::new(
        u32::from(screen.width()),
        u32::from(screen.height()),
        screen.rgb().to_vec(),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resized_screen_is_withheld_until_the_whole_of_it_was_asked_for_and_came() {
        let mut completeness = Completeness::default();
        assert_eq!(completeness.after_update(3, false), Publish::Picture);
        assert!(completeness.next_request_is_incremental());
        assert_eq!(completeness.after_update(0, false), Publish::Nothing);
        // A resize in the middle of an update: what came after it is not the whole screen, nor
        // is the answer to the incremental request that was waiting.
        assert_eq!(completeness.after_update(2, true), Publish::Withhold);
        assert_eq!(completeness.after_update(1, false), Publish::Nothing);
        assert!(
            !completeness.next_request_is_incremental(),
            "the whole screen"
        );
        assert_eq!(completeness.after_update(0, false), Publish::Nothing);
        assert_eq!(completeness.after_update(4, false), Publish::Picture);
        assert!(completeness.next_request_is_incremental());
        // A resize while the whole screen is asked for asks again.
        assert_eq!(completeness.after_update(0, true), Publish::Withhold);
        assert!(!completeness.next_request_is_incremental());
        assert_eq!(completeness.after_update(0, true), Publish::Withhold);
        assert!(!completeness.next_request_is_incremental());
        assert_eq!(completeness.after_update(1, false), Publish::Picture);
    }
}
