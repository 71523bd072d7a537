//! Retention: what goes so the store stays within its bounds.
//!
//! 1. Pinned screenshots never go (stop, shutdown, panic and crash screens are pinned, and
//!    whatever a client pinned); neither does an instance's latest screenshot under its own
//!    rules, since it is what the screen still shows (`at=` now finds it however old it is).
//! 2. By age ([`Retention::max_age`], `console.history.retention`): screenshots taken before
//!    `now - max_age` go.
//! 3. By bytes per instance ([`Retention::max_bytes`], `console.history.size`): the oldest go
//!    until the instance's distinct stored frames fit.
//! 4. Daemon-wide ([`crate::Limits::max_total_bytes`]), at every write: the oldest unpinned
//!    screenshots of any instance go until every stored frame together fits.
//! 5. A bound met is trimmed to nine tenths of it ([`below`]), so a store at its bound does
//!    not weigh every row again at every write.
//! 6. A frame no screenshot shows any longer goes with its last screenshot.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, params};

use crate::error::Result;
use crate::shot::to_micros;
use crate::store::History;

/// An instance's retention rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Screenshots older than this go (`None`: kept whatever their age).
    pub max_age: Option<Duration>,
    /// The instance's stored frames may take at most this many bytes (`None`: no bound but the
    /// daemon's).
    pub max_bytes: Option<u64>,
}

/// One screenshot as retention weighs it.
struct Weighed {
    id: i64,
    frame: i64,
    bytes: u64,
    pinned: bool,
}

impl History {
    /// Applies `retention` to the instance `identity` at `now`; returns how many screenshots
    /// went.
    pub fn trim(&self, identity: &str, retention: Retention, now: SystemTime) -> Result<usize> {
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        let Some(instance) = transaction
            .query_row(
                "SELECT id FROM instances WHERE identity = ?1",
                params![identity],
                |row| row.get::<_, i64>(0),
            )
            .ok()
        else {
            return Ok(0);
        };
        let latest: Option<i64> = transaction
            .query_row(
                "SELECT id FROM shots WHERE instance = ?1 ORDER BY taken_at DESC, id DESC LIMIT 1",
                params![instance],
                |row| row.get(0),
            )
            .ok();
        let mut removed = 0;
        if let Some(max_age) = retention.max_age {
            let cutoff = now.checked_sub(max_age).map_or(i64::MIN, to_micros);
            let aged = transaction.execute(
                "DELETE FROM shots WHERE instance = ?1 AND pinned = 0 AND taken_at < ?2 \
                 AND id IS NOT ?3",
                params![instance, cutoff, latest],
            )?;
            if aged > 0 {
                drop_unused_frames(&transaction)?;
            }
            removed += aged;
        }
        let over_size = match retention.max_bytes {
            Some(max_bytes) => instance_bytes(&transaction, instance)? > max_bytes,
            None => false,
        };
        if let (true, Some(max_bytes)) = (over_size, retention.max_bytes) {
            // Only then are the instance's rows read: a write under the bound costs one sum.
            let shots = weigh(&transaction, Some(instance))?;
            let doomed = oldest_past(&shots, below(max_bytes), latest);
            removed += delete_shots(&transaction, &doomed)?;
        }
        transaction.commit()?;
        Ok(removed)
    }
}

/// Makes every stored frame together fit `max_bytes`, taking the oldest unpinned screenshots of
/// any instance.
pub(crate) fn fit_total(connection: &Connection, max_bytes: u64) -> Result<()> {
    if total_bytes(connection)? <= max_bytes {
        return Ok(());
    }
    drop_unused_frames(connection)?;
    let shots = weigh(connection, None)?;
    let doomed = oldest_past(&shots, below(max_bytes), None);
    delete_shots(connection, &doomed)?;
    Ok(())
}

/// What a bound met is trimmed to: nine tenths of it.
fn below(max_bytes: u64) -> u64 {
    max_bytes - max_bytes / 10
}

/// The bytes of every stored frame (a row per instance: see the schema's `usage`).
pub(crate) fn total_bytes(connection: &Connection) -> Result<u64> {
    let total: i64 =
        connection.query_row("SELECT COALESCE(SUM(bytes), 0) FROM usage", [], |row| {
            row.get(0)
        })?;
    Ok(u64::try_from(total).unwrap_or_default())
}

/// The bytes of the instance's stored frames.
fn instance_bytes(connection: &Connection, instance: i64) -> Result<u64> {
    let bytes: i64 = connection.query_row(
        "SELECT COALESCE(SUM(bytes), 0) FROM usage WHERE instance = ?1",
        params![instance],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(bytes).unwrap_or_default())
}

/// Deletes the frames no screenshot shows.
pub(crate) fn drop_unused_frames(connection: &Connection) -> Result<()> {
    connection.execute(
        "DELETE FROM frames WHERE NOT EXISTS (SELECT 1 FROM shots WHERE shots.frame = frames.id)",
        [],
    )?;
    Ok(())
}

/// The screenshots of `instance` (of all when `None`), oldest first.
fn weigh(connection: &Connection, instance: Option<i64>) -> Result<Vec<Weighed>> {
    let mut statement = connection.prepare_cached(
        "SELECT s.id, s.frame, f.bytes, s.pinned FROM shots s JOIN frames f ON f.id = s.frame \
         WHERE ?1 IS NULL OR s.instance = ?1 ORDER BY s.taken_at, s.id",
    )?;
    let rows = statement.query_map(params![instance], |row| {
        Ok(Weighed {
            id: row.get(0)?,
            frame: row.get(1)?,
            bytes: row.get::<_, i64>(2)?.try_into().unwrap_or_default(),
            pinned: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The oldest unpinned screenshots (never `spared`) whose removal brings the distinct frames of
/// `shots` within `max_bytes`.
fn oldest_past(shots: &[Weighed], max_bytes: u64, spared: Option<i64>) -> Vec<i64> {
    let mut uses: HashMap<i64, (usize, u64)> = HashMap::new();
    for shot in shots {
        uses.entry(shot.frame).or_insert((0, shot.bytes)).0 += 1;
    }
    let mut bytes: u64 = uses.values().map(|(_, bytes)| bytes).sum();
    let mut doomed = Vec::new();
    for shot in shots {
        if bytes <= max_bytes {
            break;
        }
        if shot.pinned || Some(shot.id) == spared {
            continue;
        }
        doomed.push(shot.id);
        if let Some((count, frame_bytes)) = uses.get_mut(&shot.frame) {
            *count -= 1;
            if *count == 0 {
                bytes -= *frame_bytes;
            }
        }
    }
    doomed
}

/// Deletes the screenshots `ids` and the frames left unused.
fn delete_shots(connection: &Connection, ids: &[i64]) -> Result<usize> {
    let mut statement = connection.prepare_cached("DELETE FROM shots WHERE id = ?1")?;
    let mut removed = 0;
    for id in ids {
        removed += statement.execute(params![id])?;
    }
    drop_unused_frames(connection)?;
    Ok(removed)
}
