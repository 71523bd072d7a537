//! The database file: how it is opened and what tables it holds.
//!
//! 1. WAL journal with `synchronous = NORMAL`: a commit is a write to the log, readers never
//!    wait for the writer, and a process killed at any point (SIGKILL, a panic) loses no
//!    committed transaction; only a power cut may lose the last commits (never corrupt the file).
//! 2. Foreign keys on, so an instance's rows go with it (`ON DELETE CASCADE`).
//! 3. Three tables: `instances` (one per instance identity), `frames` (distinct pixels of one
//!    instance, keyed by their hash, stored compressed once), `shots` (a row per screenshot:
//!    when, why, pinned, note, and which frame). Shot ids are `AUTOINCREMENT`, so an id once
//!    given out (a URL) never names another screenshot.
//! 4. `usage` keeps the bytes of each instance's frames, kept current by triggers on `frames`
//!    (an insert adds, a delete, a cascaded one included, takes away), so the retention's bounds
//!    are checked at every write without reading the frames: a sum over the frames reads every
//!    page of their images, which measured 78 ms a write with 20,000 frames.
//! 5. The schema's version is `user_version`; a file of a later version is refused rather than
//!    misread. A file of version 1 (no `usage`) gets it, summed from its frames once, in the
//!    same transaction that sets the version.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::HistoryError;

/// The schema this version writes.
const VERSION: i64 = 2;

/// How long a statement waits for another connection's lock (only tests open a second one).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY,
    identity TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    instance INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    hash TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    image BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    UNIQUE (instance, hash)
);
CREATE TABLE IF NOT EXISTS shots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    frame INTEGER NOT NULL REFERENCES frames(id) ON DELETE CASCADE,
    taken_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS shots_by_time ON shots (instance, taken_at);
CREATE INDEX IF NOT EXISTS shots_by_frame ON shots (frame);
CREATE TABLE IF NOT EXISTS usage (
    instance INTEGER PRIMARY KEY REFERENCES instances(id) ON DELETE CASCADE,
    bytes INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS usage_of_a_new_frame AFTER INSERT ON frames BEGIN
    INSERT INTO usage (instance, bytes) VALUES (NEW.instance, NEW.bytes)
        ON CONFLICT (instance) DO UPDATE SET bytes = bytes + NEW.bytes;
END;
CREATE TRIGGER IF NOT EXISTS usage_of_a_deleted_frame AFTER DELETE ON frames BEGIN
    UPDATE usage SET bytes = bytes - OLD.bytes WHERE instance = OLD.instance;
END;
";

/// What makes a file of an earlier version this one's (step 5): the usage summed once.
const MIGRATION: &str = "
DELETE FROM usage;
INSERT INTO usage (instance, bytes) SELECT instance, SUM(bytes) FROM frames GROUP BY instance;
";

/// Opens (or makes) the database at `path`, in WAL mode, with the schema.
pub(crate) fn open(path: &Path) -> Result<Connection, HistoryError> {
    let failed = |source| HistoryError::Open {
        path: path.to_owned(),
        source,
    };
    let connection = Connection::open(path).map_err(failed)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(failed)?;
    connection
        .pragma_update(None, "synchronous", "NORMAL")
        .map_err(failed)?;
    connection
        .pragma_update(None, "foreign_keys", "ON")
        .map_err(failed)?;
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(failed)?;
    if version > VERSION {
        return Err(HistoryError::Corrupt {
            what: "schema version",
            value: version.to_string(),
        });
    }
    if version < VERSION {
        let upgrade =
            format!("BEGIN; {SCHEMA} {MIGRATION} PRAGMA user_version = {VERSION}; COMMIT;");
        connection.execute_batch(&upgrade).map_err(failed)?;
    }
    Ok(connection)
}
