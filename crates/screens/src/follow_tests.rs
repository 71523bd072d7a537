//! Followers against a scripted source that can push, with tokio's clock paused so intervals
//! are exact and "nothing happens" can be shown over simulated minutes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::watch;
use vgashot_framebuffer::Frame;

use crate::{
    ChangeFeed, DisplayDevice, Displays, FrameOrigin, FrameSource, InstanceKey, RenderLimits,
    ScreenId, Screens, ScreensError, SourceError, TimedFrame,
};

const INTERVAL: Duration = Duration::from_millis(100);

/// A screen of one grey that the test repaints; it pushes changes when `push` is set, and
/// counts its captures and the interests held.
struct Painted {
    grey: AtomicU8,
    captures: AtomicUsize,
    running: AtomicBool,
    push: std::sync::Mutex<Option<watch::Sender<u64>>>,
    interest: Arc<()>,
}

impl Painted {
    fn new(push: bool) -> Arc<Self> {
        Arc::new(Self {
            grey: AtomicU8::new(0),
            captures: AtomicUsize::new(0),
            running: AtomicBool::new(true),
            push: std::sync::Mutex::new(push.then(|| watch::Sender::new(0))),
            interest: Arc::new(()),
        })
    }

    /// Repaints the screen and, if it pushes, says so.
    fn paint(&self, grey: u8) {
        self.grey.store(grey, Ordering::SeqCst);
        if let Some(push) = &*self.push.lock().unwrap() {
            push.send_modify(|generation| *generation += 1);
        }
    }

    /// Stops pushing (a session that failed): every feed closes.
    fn stop_pushing(&self) {
        self.push.lock().unwrap().take();
    }

    fn captures(&self) -> usize {
        self.captures.load(Ordering::SeqCst)
    }

    fn followers(&self) -> usize {
        Arc::strong_count(&self.interest) - 1
    }
}

#[async_trait]
impl FrameSource for Painted {
    async fn frame(&self, _screen: &ScreenId) -> Result<TimedFrame, SourceError> {
        self.captures.fetch_add(1, Ordering::SeqCst);
        let grey = self.grey.load(Ordering::SeqCst);
        Ok(TimedFrame {
            frame: Arc::new(Frame::new(2, 1, vec![grey; 6]).unwrap()),
            captured_at: SystemTime::UNIX_EPOCH,
            origin: FrameOrigin::Mirror,
            version: None,
        })
    }

    fn displays(&self) -> Displays {
        Displays {
            devices: vec![DisplayDevice {
                id: "video0".into(),
                heads: 1,
            }],
        }
    }

    fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn change_feed(&self, _screen: &ScreenId) -> Option<ChangeFeed> {
        Some(ChangeFeed {
            changes: self.push.lock().unwrap().as_ref()?.subscribe(),
            interest: Box::new(self.interest.clone()),
        })
    }
}

fn key() -> InstanceKey {
    InstanceKey {
        project: "default".into(),
        name: "v1".into(),
    }
}

fn grey_of(answer: &crate::Answer) -> u8 {
    answer.capture.frame().rgb()[0]
}

/// Whether `follower` yields nothing for `period` of simulated time.
async fn quiet_for(follower: &mut crate::Follower<'_>, period: Duration) -> bool {
    tokio::time::timeout(period, follower.changed())
        .await
        .is_err()
}

#[tokio::test(start_paused = true)]
async fn a_pushed_still_screen_costs_no_capture_and_a_change_arrives_at_once() {
    let screens = Screens::new(RenderLimits::default());
    let painted = Painted::new(true);
    let source: Arc<dyn FrameSource> = painted.clone();
    let mut follower = screens
        .follow(&key(), &source, &ScreenId::default(), INTERVAL)
        .unwrap();
    assert!(follower.pushed());
    assert_eq!(painted.followers(), 1);
    assert_eq!(grey_of(&follower.changed().await.unwrap()), 0);
    assert!(quiet_for(&mut follower, Duration::from_secs(600)).await);
    assert_eq!(
        painted.captures(),
        1,
        "a still screen is never captured again"
    );

    painted.paint(7);
    let before = tokio::time::Instant::now();
    assert_eq!(grey_of(&follower.changed().await.unwrap()), 7);
    assert_eq!(before.elapsed(), Duration::ZERO, "no interval to wait out");
    assert_eq!(painted.captures(), 2);
    drop(follower);
    assert_eq!(
        painted.followers(),
        0,
        "the interest goes with the follower"
    );
}

#[tokio::test(start_paused = true)]
async fn a_guest_repainting_constantly_costs_one_capture_per_interval() {
    let screens = Arc::new(Screens::new(RenderLimits::default()));
    let painted = Painted::new(true);
    let source: Arc<dyn FrameSource> = painted.clone();
    let painter = {
        let painted = painted.clone();
        tokio::spawn(async move {
            for grey in 1..=200u8 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                painted.paint(grey);
            }
        })
    };
    let mut follower = screens
        .follow(&key(), &source, &ScreenId::default(), INTERVAL)
        .unwrap();
    let mut yielded = 0;
    while !painter.is_finished() {
        let _ = tokio::time::timeout(INTERVAL, follower.changed()).await;
        yielded += 1;
    }
    // 1 s of painting every 5 ms: 200 changes, at most one capture per 100 ms (and the first).
    assert!(painted.captures() <= 12, "{} captures", painted.captures());
    assert!(yielded >= 9, "{yielded} frames yielded");
}

#[tokio::test(start_paused = true)]
async fn a_change_just_after_a_requests_capture_is_not_lost() {
    let screens = Screens::new(RenderLimits::default());
    let painted = Painted::new(true);
    let source: Arc<dyn FrameSource> = painted.clone();
    let mut follower = screens
        .follow(&key(), &source, &ScreenId::default(), INTERVAL)
        .unwrap();
    follower.changed().await.unwrap();
    tokio::time::advance(INTERVAL).await;
    // A request captures the old picture; the change comes right after, within its interval.
    screens
        .capture(&key(), &source, &ScreenId::default(), INTERVAL)
        .await
        .unwrap();
    painted.paint(9);
    let before = tokio::time::Instant::now();
    assert_eq!(grey_of(&follower.changed().await.unwrap()), 9);
    assert_eq!(
        before.elapsed(),
        INTERVAL,
        "delayed by the interval, not lost"
    );
}

#[tokio::test(start_paused = true)]
async fn a_source_that_cannot_push_is_polled_at_the_interval() {
    let screens = Screens::new(RenderLimits::default());
    let painted = Painted::new(false);
    let source: Arc<dyn FrameSource> = painted.clone();
    let mut follower = screens
        .follow(&key(), &source, &ScreenId::default(), INTERVAL)
        .unwrap();
    assert!(!follower.pushed());
    follower.changed().await.unwrap();
    assert!(quiet_for(&mut follower, Duration::from_millis(1050)).await);
    assert_eq!(painted.captures(), 11, "one poll per interval");
    painted.paint(3);
    assert_eq!(grey_of(&follower.changed().await.unwrap()), 3);
}

#[tokio::test(start_paused = true)]
async fn a_feed_that_closes_falls_back_to_polling() {
    let screens = Screens::new(RenderLimits::default());
    let painted = Painted::new(true);
    let source: Arc<dyn FrameSource> = painted.clone();
    let mut follower = screens
        .follow(&key(), &source, &ScreenId::default(), INTERVAL)
        .unwrap();
    follower.changed().await.unwrap();
    painted.stop_pushing();
    // A repaint that nobody pushes: only polling can see it, once the feed is gone.
    painted.paint(4);
    let Some(answer) = tokio::time::timeout(Duration::from_secs(1), follower.changed())
        .await
        .ok()
    else {
        panic!("the change was not seen by polling");
    };
    assert_eq!(grey_of(&answer.unwrap()), 4);
}

#[tokio::test(start_paused = true)]
async fn following_a_stopped_instance_or_a_missing_screen_fails_like_a_capture() {
    let screens = Screens::new(RenderLimits::default());
    let painted = Painted::new(true);
    let source: Arc<dyn FrameSource> = painted.clone();
    let head = ScreenId {
        device: Some("video1".into()),
        head: None,
    };
    assert!(matches!(
        screens.follow(&key(), &source, &head, INTERVAL),
        Err(ScreensError::DisplayNotFound { .. })
    ));
    assert_eq!(screens.screen_count(), 0);
    let mut follower = screens
        .follow(&key(), &source, &ScreenId::default(), INTERVAL)
        .unwrap();
    painted.running.store(false, Ordering::SeqCst);
    assert!(matches!(
        follower.changed().await,
        Err(ScreensError::NotRunning)
    ));
    assert!(matches!(
        screens.follow(&key(), &source, &ScreenId::default(), INTERVAL),
        Err(ScreensError::NotRunning)
    ));
}
