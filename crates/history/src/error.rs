//! The errors of the screen history: one enum; the REST layer maps each to its status in
//! `crates/rest/src/error.rs`.

use std::path::PathBuf;

/// What can go wrong with the screen history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The database file cannot be opened or set up (WAL, schema).
    #[error("cannot open the screen history at {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement failed (disk full, I/O error, a corrupt file).
    #[error("the screen history failed")]
    Database(#[from] rusqlite::Error),
    /// No screenshot of that id in this instance's history (404).
    #[error("Screenshot not found")]
    NotFound,
    /// The frame is larger than the daemon captures (400): `--max-screen-pixels`.
    #[error("The screen is {width}x{height}, more than the {max} pixels a screenshot may have")]
    FrameTooLarge {
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// The most pixels allowed.
        max: u64,
    },
    /// A note longer than [`crate::MAX_NOTE_BYTES`] (400).
    #[error("A screenshot note may have at most {max} bytes, not {length}")]
    NoteTooLong {
        /// Its length in bytes.
        length: usize,
        /// The most allowed.
        max: usize,
    },
    /// `crash` with no frame given and no screenshot recorded to pin (404).
    #[error("No screenshot of this instance is recorded")]
    NothingRecorded,
    /// A stored frame could not be encoded (500).
    #[error("cannot encode the screen for the history")]
    Encode(#[source] vgashot_framebuffer::FrameError),
    /// A stored frame could not be decoded (500): the file was changed behind our back.
    #[error("a stored screen cannot be decoded")]
    Decode(#[source] vgashot_framebuffer::FrameError),
    /// A time-lapse of more frames than allowed (400).
    #[error(
        "The range holds {count} screenshots, more than the {max} a time-lapse may have: narrow since and until"
    )]
    TooManyFrames {
        /// Screenshots in the range.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// A time-lapse whose image would exceed its byte bound (413).
    #[error(
        "The time-lapse would be larger than {max} bytes: narrow since and until, or ask for a smaller width"
    )]
    TimelapseTooLarge {
        /// The bound.
        max: usize,
    },
    /// A time-lapse of a range without any screenshot (404).
    #[error("No screenshot in this range")]
    EmptyRange,
    /// A time-lapse could not be written (500).
    #[error("cannot write the time-lapse")]
    Animation(#[source] png::EncodingError),
    /// A stored row holds a value this version does not know (500).
    #[error("the screen history holds an unknown {what}: {value}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// The value found.
        value: String,
    },
}

/// The result of history operations.
pub type Result<T, E = HistoryError> = std::result::Result<T, E>;
