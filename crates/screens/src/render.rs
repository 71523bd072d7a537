//! Renderings of a frame, made lazily, once each, with a bound on the work running at once.
//!
//! 1. [`Encodings`] belong to one distinct frame (one pixel hash): the plain PNG and every
//!    variant asked for are made the first time one is asked for, and shared by every later
//!    request of that frame, across captures, as long as the pixels do not change.
//! 2. A rendering runs in a task of its own that fills the frame's cell: a request that goes
//!    away does not waste it, and requests for the same variant wait for the one rendering.
//! 3. The task renders on tokio's blocking pool through the [`RenderPool`]: at most
//!    [`RenderLimits::concurrent`] renderings run at once (every core but one by default), at most
//!    [`RenderLimits::queued`] wait for a slot, and any more are refused at once with
//!    [`ScreensError::Busy`], so a burst of thumbnails queues no work without bound.
//! 4. At most [`RenderLimits::variants_per_frame`] variants are kept per frame (the plain PNG
//!    always is): further ones are rendered for their request and not kept, so a client asking
//!    for every width cannot grow the cache.
//! 5. A failed or panicked rendering is not kept: the next request renders afresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OnceCell, Semaphore};
use vgashot_framebuffer::Frame;
use vgashot_stdext::MutexExt;

use crate::error::ScreensError;
use crate::variant::Variant;

/// The bounds of rendering work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderLimits {
    /// Renderings running at once. Default: every core but one, at least one (an encoding is
    /// CPU-bound: more would only make each one slower, and the core left over keeps the async
    /// workers, QMP and the accept loop answering whatever clients ask to render).
    pub concurrent: usize,
    /// Renderings waiting for a slot before new ones are refused as busy. Default: 16 per slot,
    /// well under a second of large-screen encodings, far below a client's timeout.
    pub queued: usize,
    /// Variants kept per frame besides the plain PNG. Default: 16, more than a page of
    /// thumbnails and a stream or two use, and at most a few MiB per screen.
    pub variants_per_frame: usize,
}

impl Default for RenderLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let concurrent = cores.saturating_sub(1).max(1);
        Self {
            concurrent,
            queued: 16 * concurrent,
            variants_per_frame: 16,
        }
    }
}

/// The slots for rendering work, shared by every screen.
#[derive(Debug)]
pub(crate) struct RenderPool {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    limits: RenderLimits,
    /// Images encoded so far, for the tests and the metrics.
    encoded: AtomicU64,
}

/// Counts a waiter out of the queue however its wait ends.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RenderPool {
    pub(crate) fn new(limits: RenderLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.concurrent.max(1))),
            waiting: AtomicUsize::new(0),
            limits,
            encoded: AtomicU64::new(0),
        }
    }

    /// Images encoded so far by this pool.
    pub(crate) fn encoded(&self) -> u64 {
        self.encoded.load(Ordering::Relaxed)
    }

    /// Renders `variant` of `frame` on the blocking pool once a slot is free.
    async fn render(&self, frame: Arc<Frame>, variant: Variant) -> Result<Bytes, ScreensError> {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.limits.queued {
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                    return Err(ScreensError::Busy {
                        limit: self.limits.queued,
                    });
                }
                let _queued = Queued(&self.waiting);
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ScreensError::Busy {
                        limit: self.limits.queued,
                    })?
            }
        };
        self.encoded.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            variant.render(&frame)
        })
        .await
        .map_err(|_| ScreensError::RenderPanicked)?
        .map(Bytes::from)
    }
}

/// The renderings of one distinct frame.
#[derive(Debug, Default)]
pub(crate) struct Encodings {
    cells: Mutex<HashMap<Variant, Arc<OnceCell<Bytes>>>>,
}

impl Encodings {
    /// `variant` of `frame`, rendered by the first request that asks and shared by the others.
    pub(crate) async fn get_or_render(
        &self,
        pool: &Arc<RenderPool>,
        frame: &Arc<Frame>,
        variant: Variant,
    ) -> Result<Bytes, ScreensError> {
        let cell = {
            let mut cells = self.cells.lock_unpoisoned();
            let kept_variants = cells.len() - usize::from(cells.contains_key(&Variant::plain()));
            match cells.get(&variant) {
                Some(cell) => cell.clone(),
                None if variant.is_plain() || kept_variants < pool.limits.variants_per_frame => {
                    cells.entry(variant).or_default().clone()
                }
                None => Arc::new(OnceCell::new()),
            }
        };
        if let Some(bytes) = cell.get() {
            return Ok(bytes.clone());
        }
        let (pool, frame) = (pool.clone(), frame.clone());
        tokio::spawn(async move {
            cell.get_or_try_init(|| pool.render(frame, variant))
                .await
                .cloned()
        })
        .await
        .map_err(|_| ScreensError::RenderPanicked)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renderings_past_the_queue_are_refused_as_busy() {
        let pool = Arc::new(RenderPool::new(RenderLimits {
            concurrent: 1,
            queued: 1,
            variants_per_frame: 16,
        }));
        let frame = Arc::new(Frame::new(2, 2, vec![5; 12]).unwrap());
        // The test holds the only slot, as a long rendering would.
        let slot = pool.slots.clone().try_acquire_owned().unwrap();
        let queued = {
            let (pool, frame) = (pool.clone(), frame.clone());
            tokio::spawn(async move { pool.render(frame, Variant::plain()).await })
        };
        while pool.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.render(frame.clone(), Variant::plain()).await;
        assert!(matches!(refused, Err(ScreensError::Busy { .. })));
        assert_eq!(pool.encoded(), 0);

        drop(slot);
        let png = queued.await.unwrap().unwrap();
        assert_eq!(png, frame.encode_png(Default::default()).unwrap());
        assert_eq!(pool.waiting.load(Ordering::Relaxed), 0);
        assert_eq!(pool.encoded(), 1);
    }
}
