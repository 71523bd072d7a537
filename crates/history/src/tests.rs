//! The store's rules, on a database in a temporary directory.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vgashot_framebuffer::Frame;
use vgashot_screens::{FrameOrigin, TimedFrame};

use crate::timelapse::Bounds;
use crate::*;

const LIMITS: Limits = Limits {
    max_frame_pixels: 1 << 20,
    max_total_bytes: u64::MAX,
};

fn open(limits: Limits) -> (tempfile::TempDir, History) {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(&dir.path().join("history.sqlite"), limits).unwrap();
    (dir, history)
}

fn vm(name: &str) -> InstanceRef {
    InstanceRef {
        project: "default".into(),
        name: name.into(),
        identity: format!("default/{name}-created"),
    }
}

/// A 64x48 frame filled with noise seeded by `seed` (so PNG cannot make it tiny).
fn frame(seed: u32) -> Frame {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let rgb = (0..64 * 48 * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    Frame::new(64, 48, rgb).unwrap()
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
}

fn record(history: &History, instance: &InstanceRef, seed: u32, seconds: u64) -> i64 {
    record_as(history, instance, seed, seconds, Reason::Change, false)
}

fn record_as(
    history: &History,
    instance: &InstanceRef,
    seed: u32,
    seconds: u64,
    reason: Reason,
    pinned: bool,
) -> i64 {
    let frame = frame(seed);
    history
        .record(
            instance,
            NewShot {
                frame: &frame,
                hash: frame.pixel_hash(),
                taken_at: at(seconds),
                reason,
                pinned,
                note: "",
            },
        )
        .unwrap()
}

fn ids(history: &History, instance: &InstanceRef) -> Vec<i64> {
    history
        .list(&instance.identity, Filter::default())
        .unwrap()
        .iter()
        .map(|shot| shot.id)
        .collect()
}

#[test]
fn identical_frames_are_stored_once() {
    let (_dir, history) = open(LIMITS);
    let v1 = vm("v1");
    let first = record(&history, &v1, 1, 0);
    let bytes = history.total_bytes().unwrap();
    let again = record_as(&history, &v1, 1, 5, Reason::Manual, true);
    assert_eq!(history.total_bytes().unwrap(), bytes);
    record(&history, &v1, 2, 10);
    assert!(history.total_bytes().unwrap() > bytes);
    let shots = history.list(&v1.identity, Filter::default()).unwrap();
    assert_eq!(shots.len(), 3);
    assert_eq!(shots[0].hash, shots[1].hash);
    assert_eq!(shots[0].hash, frame(1).pixel_hash().to_hex());
    assert_eq!(
        (shots[1].id, shots[1].reason, shots[1].pinned),
        (again, Reason::Manual, true)
    );
    let (shot, image) = history.image(&v1.identity, first).unwrap();
    assert_eq!((shot.width, shot.height), (64, 48));
    assert_eq!(History::decode(&image).unwrap(), frame(1));
}

#[test]
fn at_finds_what_the_screen_showed() {
    let (_dir, history) = open(LIMITS);
    let v1 = vm("v1");
    let first = record(&history, &v1, 1, 10);
    let second = record(&history, &v1, 2, 20);
    assert!(matches!(
        history.at(&v1.identity, at(9)),
        Err(HistoryError::NotFound)
    ));
    assert_eq!(history.at(&v1.identity, at(10)).unwrap().id, first);
    assert_eq!(history.at(&v1.identity, at(19)).unwrap().id, first);
    assert_eq!(history.at(&v1.identity, at(1000)).unwrap().id, second);
    let filtered = history
        .list(
            &v1.identity,
            Filter {
                since: Some(at(15)),
                until: Some(at(25)),
                ..Filter::default()
            },
        )
        .unwrap();
    assert_eq!(filtered.iter().map(|s| s.id).collect::<Vec<_>>(), [second]);
    let manual = history
        .list(
            &v1.identity,
            Filter {
                reason: Some(Reason::Manual),
                ..Filter::default()
            },
        )
        .unwrap();
    assert!(manual.is_empty());
}

#[test]
fn age_retention_spares_pinned_and_latest() {
    let (_dir, history) = open(LIMITS);
    let v1 = vm("v1");
    let old = record(&history, &v1, 1, 0);
    let pinned = record_as(&history, &v1, 2, 1, Reason::Manual, true);
    let latest = record(&history, &v1, 3, 2);
    let retention = Retention {
        max_age: Some(Duration::from_secs(60)),
        max_bytes: None,
    };
    let removed = history.trim(&v1.identity, retention, at(1000)).unwrap();
    assert_eq!(removed, 1);
    assert_eq!(ids(&history, &v1), [pinned, latest]);
    assert!(matches!(
        history.get(&v1.identity, old),
        Err(HistoryError::NotFound)
    ));
}

#[test]
fn byte_retention_takes_the_oldest_unpinned_until_the_instance_fits() {
    let (_dir, history) = open(LIMITS);
    let v1 = vm("v1");
    let v2 = vm("v2");
    let shots: Vec<i64> = (0..6)
        .map(|seed| record(&history, &v1, seed, u64::from(seed)))
        .collect();
    let pinned = record_as(&history, &v1, 100, 0, Reason::Panic, true);
    let other = record(&history, &v2, 200, 0);
    let one_frame = history.get(&v1.identity, shots[0]).unwrap().stored_bytes;
    // Room for three frames: the pinned one and the two newest.
    let retention = Retention {
        max_age: None,
        max_bytes: Some(3 * one_frame + one_frame / 2),
    };
    history.trim(&v1.identity, retention, at(100)).unwrap();
    let mut expected = vec![pinned, shots[4], shots[5]];
    expected.sort();
    let mut kept = ids(&history, &v1);
    kept.sort();
    assert_eq!(kept, expected);
    assert_eq!(ids(&history, &v2), [other]);
}

#[test]
fn the_daemon_cap_spares_pinned_rows() {
    let (_dir, probe) = open(LIMITS);
    record(&probe, &vm("probe"), 0, 0);
    let one_frame = probe.total_bytes().unwrap();
    let (_dir, history) = open(Limits {
        max_total_bytes: 3 * one_frame + one_frame / 2,
        ..LIMITS
    });
    let (v1, v2) = (vm("v1"), vm("v2"));
    let pinned = record_as(&history, &v1, 1, 0, Reason::Stop, true);
    record(&history, &v2, 2, 1);
    record(&history, &v1, 3, 2);
    let newer = record(&history, &v2, 4, 3);
    let newest = record(&history, &v1, 5, 4);
    assert!(history.total_bytes().unwrap() <= 3 * one_frame + one_frame / 2);
    assert_eq!(ids(&history, &v1), [pinned, newest]);
    assert_eq!(ids(&history, &v2), [newer]);
}

/// The bytes of every frame, summed from the frames themselves.
fn summed_from_frames(history: &History) -> u64 {
    let sum: i64 = history
        .connection()
        .query_row("SELECT COALESCE(SUM(bytes), 0) FROM frames", [], |row| {
            row.get(0)
        })
        .unwrap();
    u64::try_from(sum).unwrap()
}

#[test]
fn the_usage_follows_every_write_and_a_version_1_file_gets_it() {
    let (dir, history) = open(LIMITS);
    let (v1, v2) = (vm("v1"), vm("v2"));
    for seed in 0..6 {
        record(&history, &v1, seed, u64::from(seed));
        record(&history, &v2, seed + 100, u64::from(seed));
    }
    record(&history, &v1, 0, 10); // a known frame: a row, no bytes
    let doomed = ids(&history, &v2)[0];
    history.delete(&v2.identity, doomed).unwrap();
    history
        .trim(
            &v1.identity,
            Retention {
                max_age: Some(Duration::from_secs(3)),
                max_bytes: None,
            },
            at(10),
        )
        .unwrap();
    assert_eq!(history.total_bytes().unwrap(), summed_from_frames(&history));
    history.forget_instance(&v2.identity).unwrap();
    let total = history.total_bytes().unwrap();
    assert_eq!(total, summed_from_frames(&history));
    assert!(total > 0);

    // The same store as version 1 wrote it: no usage at all.
    history
        .connection()
        .execute_batch(
            "DROP TRIGGER usage_of_a_new_frame; DROP TRIGGER usage_of_a_deleted_frame;
             DROP TABLE usage; PRAGMA user_version = 1;",
        )
        .unwrap();
    drop(history);
    let reopened = History::open(&dir.path().join("history.sqlite"), LIMITS).unwrap();
    assert_eq!(reopened.total_bytes().unwrap(), total);
    record(&reopened, &v1, 50, 20);
    assert_eq!(
        reopened.total_bytes().unwrap(),
        summed_from_frames(&reopened)
    );
}

#[test]
fn an_instance_takes_its_history_with_it() {
    let (_dir, history) = open(LIMITS);
    let (v1, v2) = (vm("v1"), vm("v2"));
    record_as(&history, &v1, 1, 0, Reason::Stop, true);
    record(&history, &v1, 2, 1);
    let kept = record(&history, &v2, 3, 0);
    history.forget_instance(&v1.identity).unwrap();
    assert!(ids(&history, &v1).is_empty());
    assert_eq!(ids(&history, &v2), [kept]);
    assert_eq!(
        history.identities().unwrap(),
        std::slice::from_ref(&v2.identity)
    );
    assert_eq!(
        history.total_bytes().unwrap(),
        history.get(&v2.identity, kept).unwrap().stored_bytes
    );
    // A new instance of the same name has another identity, and no history.
    let again = InstanceRef {
        identity: "default/v2-created-later".into(),
        ..v2.clone()
    };
    assert!(ids(&history, &again).is_empty());
}

#[test]
fn a_renamed_instance_keeps_its_history() {
    let (_dir, history) = open(LIMITS);
    let v1 = vm("v1");
    let first = record(&history, &v1, 1, 0);
    let renamed = InstanceRef {
        name: "v9".into(),
        ..v1.clone()
    };
    let second = record(&history, &renamed, 2, 1);
    assert_eq!(ids(&history, &renamed), [first, second]);
}

#[test]
fn updates_deletes_and_bounds() {
    let (_dir, history) = open(LIMITS);
    let v1 = vm("v1");
    let id = record(&history, &v1, 1, 0);
    let updated = history
        .update(&v1.identity, id, Some(true), Some("boot hung"))
        .unwrap();
    assert!(updated.pinned);
    assert_eq!(updated.note, "boot hung");
    let kept_note = history.update(&v1.identity, id, Some(false), None).unwrap();
    assert_eq!(
        (kept_note.pinned, kept_note.note.as_str()),
        (false, "boot hung")
    );
    let long = "x".repeat(MAX_NOTE_BYTES + 1);
    assert_eq!(
        history
            .update(&v1.identity, id, None, Some(&long))
            .unwrap_err()
            .to_string(),
        "A screenshot note may have at most 1024 bytes, not 1025"
    );
    // Another instance's id is not found through this one.
    assert!(matches!(
        history.get(&vm("v2").identity, id),
        Err(HistoryError::NotFound)
    ));
    history.delete(&v1.identity, id).unwrap();
    assert_eq!(history.total_bytes().unwrap(), 0);
    assert!(matches!(
        history.delete(&v1.identity, id),
        Err(HistoryError::NotFound)
    ));
    // An id is never given again.
    assert!(record(&history, &v1, 1, 0) > id);

    let (_dir, small) = open(Limits {
        max_frame_pixels: 64 * 47,
        ..LIMITS
    });
    let big = frame(1);
    let refused = small
        .record(
            &v1,
            NewShot {
                frame: &big,
                hash: big.pixel_hash(),
                taken_at: at(0),
                reason: Reason::Change,
                pinned: false,
                note: "",
            },
        )
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "The screen is 64x48, more than the 3008 pixels a screenshot may have"
    );
}

#[test]
fn final_screens_are_pinned_and_a_crash_pins_the_last_recorded() {
    let (_dir, history) = open(LIMITS);
    let v1 = vm("v1");
    assert!(matches!(
        history.record_final(&v1, FinalReason::Crash, None),
        Err(HistoryError::NothingRecorded)
    ));
    let panicked = TimedFrame {
        frame: std::sync::Arc::new(frame(7)),
        captured_at: at(5),
        origin: FrameOrigin::Screendump,
        version: None,
    };
    let id = history
        .record_final(&v1, FinalReason::Panic, Some(&panicked))
        .unwrap();
    let shot = history.get(&v1.identity, id).unwrap();
    assert_eq!(
        (shot.reason, shot.pinned, shot.taken_at),
        (Reason::Panic, true, at(5))
    );
    let crash = history.record_final(&v1, FinalReason::Crash, None).unwrap();
    let crashed = history.get(&v1.identity, crash).unwrap();
    assert_eq!((crashed.reason, crashed.pinned), (Reason::Crash, true));
    assert_eq!(crashed.hash, shot.hash);
    assert!(crashed.taken_at >= shot.taken_at);
}

#[test]
fn a_store_reopens_with_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    let v1 = vm("v1");
    let id = {
        let history = History::open(&path, LIMITS).unwrap();
        record(&history, &v1, 1, 0)
    };
    let history = History::open(&path, LIMITS).unwrap();
    let (_, image) = history.image(&v1.identity, id).unwrap();
    assert_eq!(History::decode(&image).unwrap(), frame(1));
}

#[test]
fn a_timelapse_has_every_frame_for_its_duration_within_bounds() {
    let (_dir, history) = open(LIMITS);
    let v1 = vm("v1");
    record(&history, &v1, 1, 0);
    record(&history, &v1, 2, 2);
    record(&history, &v1, 3, 100);
    let bounds = Bounds {
        width: 32,
        ..Bounds::default()
    };
    let apng = history
        .timelapse(&v1.identity, Some(at(0)), Some(at(101)), bounds)
        .unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&apng));
    let mut reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!((info.width, info.height), (32, 24));
    assert_eq!(info.animation_control.unwrap().num_frames, 3);
    let mut delays = Vec::new();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    while reader.next_frame(&mut buffer).is_ok() {
        let control = reader.info().frame_control.unwrap();
        delays.push((control.delay_num, control.delay_den));
    }
    // 2 s, then 98 s (past 65 s: whole seconds), then until the end of the range, 1 s.
    assert_eq!(delays, [(2000, 1000), (98, 1), (1000, 1000)]);

    let few = Bounds {
        max_frames: 2,
        ..bounds
    };
    assert_eq!(
        history
            .timelapse(&v1.identity, None, None, few)
            .unwrap_err()
            .to_string(),
        "The range holds 3 screenshots, more than the 2 a time-lapse may have: narrow since and until"
    );
    let tiny = Bounds {
        max_bytes: 100,
        ..bounds
    };
    assert!(matches!(
        history.timelapse(&v1.identity, None, None, tiny),
        Err(HistoryError::TimelapseTooLarge { max: 100 })
    ));
    assert!(matches!(
        history.timelapse(&v1.identity, Some(at(500)), None, bounds),
        Err(HistoryError::EmptyRange)
    ));
}
