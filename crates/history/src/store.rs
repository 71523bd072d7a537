//! The store: one SQLite database per daemon, every call blocking (callers on an async runtime
//! use `spawn_blocking`).
//!
//! How a screenshot is recorded ([`History::record`]):
//! 1. Its size is checked against [`Limits::max_frame_pixels`] and its note against
//!    [`MAX_NOTE_BYTES`], so every write is bounded before anything is encoded.
//! 2. The instance's row is found by its identity (made on first use; its project and name are
//!    brought up to date, so a renamed instance keeps its history).
//! 3. Pixels already stored for this instance (the same pixel hash) are not encoded again: the
//!    new row points at the stored frame. New pixels are encoded ([`STORED_FORMAT`]) outside the
//!    database lock, then stored with the row in one transaction.
//! 4. Past the daemon-wide cap ([`Limits::max_total_bytes`]) the oldest unpinned screenshots of
//!    any instance go until the store fits again ([`crate::retention`]).
//!
//! Reading: [`History::list`] (a time range, a reason, newest last), [`History::get`],
//! [`History::image`] (the stored bytes), [`History::at`] (what the screen showed at a time:
//! the last screenshot taken at or before it). Changing: [`History::update`] (pinned, note),
//! [`History::delete`], [`History::forget_instance`] (the instance was deleted).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, Row, params};
use vgashot_framebuffer::{Frame, PixelHash, PngCompression};

use crate::error::{HistoryError, Result};
use crate::schema;
use crate::shot::{InstanceRef, Reason, Shot, from_micros, to_micros};

/// The longest note a screenshot may have, in bytes: a sentence or a ticket reference, not a
/// document (every write is bounded).
pub const MAX_NOTE_BYTES: usize = 1024;

/// How frames are stored: PNG at zlib level 6 (`PngCompression::Balanced`).
///
/// Measured on real screens captured from QEMU 7.2 (2-core AMD EPYC, release build, median of
/// 21; `examples/store_formats.rs`), encode ms / decode ms / bytes:
///
/// | screen | PNG level 2 | PNG level 6 (chosen) | PNG level 9 | WebP lossless |
/// |---|---|---|---|---|
/// | Linux text console 720x400 | 0.51 / 0.18 / 3590 | 0.59 / 0.18 / 3026 | 8.06 / 0.18 / 2665 | 0.80 / 0.39 / 1356 |
/// | counter fixture 640x400 | 0.26 / 0.11 / 1708 | 0.33 / 0.11 / 1676 | 6.81 / 0.10 / 1367 | 0.69 / 0.32 / 330 |
/// | mode 13h picture 640x400 | 0.45 / 0.48 / 8847 | 0.95 / 0.52 / 6020 | 8.00 / 0.61 / 4092 | 1.47 / 1.65 / 67422 |
/// | bars 1024x768 | 0.92 / 0.34 / 4346 | 1.23 / 0.28 / 4329 | 22.0 / 0.32 / 3688 | 3.83 / 1.25 / 700 |
/// | bars 1920x1080 | 5.71 / 1.05 / 8977 | 2.77 / 1.21 / 8959 | 39.5 / 0.83 / 8320 | 13.3 / 7.04 / 1288 |
///
/// Level 6 costs about a millisecond per distinct frame, which the history encodes once, and is
/// up to a third smaller than the live console's level 2; level 9 is 10-20 times slower for
/// 10-30% less. Lossless WebP (the only other encoder the framebuffer crate has) is 2-7 times
/// smaller on flat screens but 11 times larger on the mode 13h picture, and decodes 2-6 times
/// slower, while every thumbnail, `at=` lookup and time-lapse frame decodes. A PNG is also what
/// a client gets for the plain image, so the stored bytes are served as they are.
pub const STORED_FORMAT: PngCompression = PngCompression::Balanced;

/// The bounds of the whole store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most pixels a recorded frame may have (the driver's `--max-screen-pixels`).
    pub max_frame_pixels: u64,
    /// The most bytes of stored images, all instances together; past it the oldest unpinned
    /// screenshots go.
    pub max_total_bytes: u64,
}

/// A screenshot to record.
#[derive(Debug, Clone, Copy)]
pub struct NewShot<'a> {
    /// The pixels.
    pub frame: &'a Frame,
    /// Their hash, as the screens engine computed it.
    pub hash: PixelHash,
    /// When the screen showed them.
    pub taken_at: SystemTime,
    /// Why they are recorded.
    pub reason: Reason,
    /// Whether retention keeps it.
    pub pinned: bool,
    /// Free text, at most [`MAX_NOTE_BYTES`].
    pub note: &'a str,
}

/// Which screenshots [`History::list`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Taken at or after.
    pub since: Option<SystemTime>,
    /// Taken at or before.
    pub until: Option<SystemTime>,
    /// Only this reason.
    pub reason: Option<Reason>,
    /// At most this many, the oldest first (`None`: all).
    pub limit: Option<usize>,
}

/// The screen history of every instance of a daemon.
pub struct History {
    connection: Mutex<Connection>,
    limits: Limits,
    path: PathBuf,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The columns of a [`Shot`], in the order [`shot_from_row`] reads them.
const SHOT_COLUMNS: &str = "s.id, s.taken_at, s.reason, f.width, f.height, f.hash, s.pinned, \
                            s.note, f.bytes";

fn shot_from_row(row: &Row<'_>) -> rusqlite::Result<(Shot, String)> {
    Ok((
        Shot {
            id: row.get(0)?,
            taken_at: from_micros(row.get(1)?),
            reason: Reason::Change,
            width: row.get(3)?,
            height: row.get(4)?,
            hash: row.get(5)?,
            pinned: row.get(6)?,
            note: row.get(7)?,
            stored_bytes: row.get(8)?,
        },
        row.get(2)?,
    ))
}

/// A shot read with its reason's text checked.
fn checked((mut shot, reason): (Shot, String)) -> Result<Shot> {
    shot.reason = Reason::from_column(reason)?;
    Ok(shot)
}

impl History {
    /// Opens (or makes) the store at `path` (see [`crate::schema`]).
    pub fn open(path: &Path, limits: Limits) -> Result<Self> {
        Ok(Self {
            connection: Mutex::new(schema::open(path)?),
            limits,
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub(crate) fn connection(&self) -> MutexGuard<'_, Connection> {
        // A transaction that panicked was rolled back when its guard dropped.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `shot` of `instance` and returns its id (see the module's steps).
    pub fn record(&self, instance: &InstanceRef, shot: NewShot<'_>) -> Result<i64> {
        let (width, height) = (shot.frame.width(), shot.frame.height());
        if u64::from(width) * u64::from(height) > self.limits.max_frame_pixels {
            return Err(HistoryError::FrameTooLarge {
                width,
                height,
                max: self.limits.max_frame_pixels,
            });
        }
        check_note(shot.note)?;
        let hash = shot.hash.to_hex();
        let stored = {
            let connection = self.connection();
            let instance_id = ensure_instance(&connection, instance)?;
            frame_id(&connection, instance_id, &hash)?
        };
        // Encoded without holding the lock: readers and other instances go on meanwhile.
        let image = match stored {
            Some(_) => None,
            None => Some(
                shot.frame
                    .encode_png(STORED_FORMAT)
                    .map_err(HistoryError::Encode)?,
            ),
        };
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        let instance_id = ensure_instance(&transaction, instance)?;
        let frame = match (frame_id(&transaction, instance_id, &hash)?, image) {
            (Some(frame), _) => frame,
            (None, image) => {
                let image = match image {
                    Some(image) => image,
                    // Deleted between the two locks: encode it after all.
                    None => shot
                        .frame
                        .encode_png(STORED_FORMAT)
                        .map_err(HistoryError::Encode)?,
                };
                transaction.execute(
                    "INSERT INTO frames (instance, hash, width, height, image, bytes) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![instance_id, hash, width, height, image, image.len() as i64],
                )?;
                transaction.last_insert_rowid()
            }
        };
        transaction.execute(
            "INSERT INTO shots (instance, frame, taken_at, reason, pinned, note) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                instance_id,
                frame,
                to_micros(shot.taken_at),
                shot.reason.as_str(),
                shot.pinned,
                shot.note
            ],
        )?;
        let id = transaction.last_insert_rowid();
        crate::retention::fit_total(&transaction, self.limits.max_total_bytes)?;
        transaction.commit()?;
        Ok(id)
    }

    /// The screenshots of the instance `identity` that `filter` selects, oldest first.
    pub fn list(&self, identity: &str, filter: Filter) -> Result<Vec<Shot>> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {SHOT_COLUMNS} FROM shots s JOIN frames f ON f.id = s.frame \
             JOIN instances i ON i.id = s.instance \
             WHERE i.identity = ?1 AND s.taken_at >= ?2 AND s.taken_at <= ?3 \
             AND (?4 IS NULL OR s.reason = ?4) ORDER BY s.taken_at, s.id LIMIT ?5"
        ))?;
        let rows = statement.query_map(
            params![
                identity,
                filter.since.map_or(i64::MIN, to_micros),
                filter.until.map_or(i64::MAX, to_micros),
                filter.reason.map(Reason::as_str),
                filter
                    .limit
                    .map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
            shot_from_row,
        )?;
        rows.map(|row| checked(row?)).collect()
    }

    /// The screenshot `id` of the instance `identity`.
    pub fn get(&self, identity: &str, id: i64) -> Result<Shot> {
        self.one("s.id = ?2", identity, id)
    }

    /// What the screen of the instance `identity` showed at `time`: the last screenshot taken
    /// at or before it ([`HistoryError::NotFound`] before the first).
    pub fn at(&self, identity: &str, time: SystemTime) -> Result<Shot> {
        self.at_micros(identity, to_micros(time))
    }

    fn at_micros(&self, identity: &str, micros: i64) -> Result<Shot> {
        self.one(
            "s.taken_at <= ?2 ORDER BY s.taken_at DESC, s.id DESC",
            identity,
            micros,
        )
    }

    /// The latest screenshot of the instance `identity`, if any.
    pub fn latest(&self, identity: &str) -> Result<Option<Shot>> {
        match self.at_micros(identity, i64::MAX) {
            Ok(shot) => Ok(Some(shot)),
            Err(HistoryError::NotFound) => Ok(None),
            Err(other) => Err(other),
        }
    }

    fn one(&self, condition: &str, identity: &str, value: i64) -> Result<Shot> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {SHOT_COLUMNS} FROM shots s JOIN frames f ON f.id = s.frame \
             JOIN instances i ON i.id = s.instance WHERE i.identity = ?1 AND {condition} LIMIT 1"
        ))?;
        let row = statement
            .query_row(params![identity, value], shot_from_row)
            .optional()?;
        checked(row.ok_or(HistoryError::NotFound)?)
    }

    /// The screenshot `id` of the instance `identity` and its stored image (a PNG).
    pub fn image(&self, identity: &str, id: i64) -> Result<(Shot, Vec<u8>)> {
        let shot = self.get(identity, id)?;
        let image: Vec<u8> = self.connection().query_row(
            "SELECT f.image FROM shots s JOIN frames f ON f.id = s.frame WHERE s.id = ?1",
            params![id],
            |row| row.get(0),
        )?;
        Ok((shot, image))
    }

    /// The stored image of `shot` decoded back to pixels.
    pub fn decode(image: &[u8]) -> Result<Frame> {
        Frame::from_png(image).map_err(HistoryError::Decode)
    }

    /// Sets the screenshot's `pinned` and `note` where given, and returns it.
    pub fn update(
        &self,
        identity: &str,
        id: i64,
        pinned: Option<bool>,
        note: Option<&str>,
    ) -> Result<Shot> {
        if let Some(note) = note {
            check_note(note)?;
        }
        self.get(identity, id)?;
        self.connection().execute(
            "UPDATE shots SET pinned = COALESCE(?2, pinned), note = COALESCE(?3, note) \
             WHERE id = ?1",
            params![id, pinned, note],
        )?;
        self.get(identity, id)
    }

    /// Deletes the screenshot `id` (its frame too when no other screenshot shows it).
    pub fn delete(&self, identity: &str, id: i64) -> Result<()> {
        self.get(identity, id)?;
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        transaction.execute("DELETE FROM shots WHERE id = ?1", params![id])?;
        crate::retention::drop_unused_frames(&transaction)?;
        transaction.commit()?;
        Ok(())
    }

    /// Deletes the whole history of the instance `identity` (it was deleted).
    pub fn forget_instance(&self, identity: &str) -> Result<()> {
        self.connection().execute(
            "DELETE FROM instances WHERE identity = ?1",
            params![identity],
        )?;
        Ok(())
    }

    /// The identities that have a history, to find those whose instance is gone.
    pub fn identities(&self) -> Result<Vec<String>> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached("SELECT identity FROM instances")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The bytes of stored images, all instances together.
    pub fn total_bytes(&self) -> Result<u64> {
        crate::retention::total_bytes(&self.connection())
    }
}

fn check_note(note: &str) -> Result<()> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(HistoryError::NoteTooLong {
            length: note.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    Ok(())
}

/// The row of `instance`, made if new, its project and name brought up to date.
fn ensure_instance(connection: &Connection, instance: &InstanceRef) -> Result<i64> {
    connection.execute(
        "INSERT INTO instances (identity, project, name) VALUES (?1, ?2, ?3) \
         ON CONFLICT (identity) DO UPDATE SET project = excluded.project, name = excluded.name",
        params![instance.identity, instance.project, instance.name],
    )?;
    Ok(connection.query_row(
        "SELECT id FROM instances WHERE identity = ?1",
        params![instance.identity],
        |row| row.get(0),
    )?)
}

/// The stored frame of `hash` for the instance, if any.
fn frame_id(connection: &Connection, instance: i64, hash: &str) -> Result<Option<i64>> {
    Ok(connection
        .query_row(
            "SELECT id FROM frames WHERE instance = ?1 AND hash = ?2",
            params![instance, hash],
            |row| row.get(0),
        )
        .optional()?)
}
