//! The store against a real directory: round trips, crashes between steps, bad names.
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};

use super::*;
use crate::definition::InstanceType;

fn definition(project: &str, name: &str) -> InstanceDefinition {
    InstanceDefinition {
        name: name.into(),
        project: project.into(),
        instance_type: InstanceType::VirtualMachine,
        description: String::new(),
        config: BTreeMap::from([("limits.cpu".into(), "2".into())]),
        devices: BTreeMap::new(),
        profiles: vec!["default".into()],
        ephemeral: false,
        created_at: "2026-11-29T18:00:00Z".into(),
        last_used_at: String::new(),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file in the store, relative to its `instances/` directory.
fn files(root: &Path) -> Vec<String> {
    let instances = root.join(INSTANCES_DIR);
    let mut files: Vec<String> = read_dir(&instances)
        .unwrap()
        .into_iter()
        .flat_map(|dir| read_dir(&dir).unwrap())
        .map(|path| path.strip_prefix(&instances).unwrap().display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn create_load_update_delete_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let mut v1 = definition("default", "v1");
    store.create(&v1).unwrap();
    assert_eq!(store.load("default", "v1").unwrap(), v1);

    v1.description = "changed".into();
    store.update(&v1).unwrap();
    assert_eq!(store.load("default", "v1").unwrap(), v1);
    let text = fs::read_to_string(root.path().join("instances/default/v1.json")).unwrap();
    assert!(text.starts_with("{\n  \""), "pretty JSON: {text}");
    assert!(text.ends_with("}\n"));

    store.begin_delete("default", "v1").unwrap();
    assert!(matches!(
        store.load("default", "v1"),
        Err(StoreError::NotFound { .. })
    ));
    store.finish_delete("default", "v1").unwrap();
    assert!(files(root.path()).is_empty());
}

#[test]
fn an_interrupted_delete_leaves_a_tombstone_until_it_is_finished() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    store.create(&definition("default", "v1")).unwrap();
    store.create(&definition("default", "v2")).unwrap();
    store.begin_delete("default", "v1").unwrap();
    // The crash: the daemon dies before `finish_delete`. The next one sees the tombstone.
    let store = Store::open(root.path()).unwrap();
    let loaded = store.load_all().unwrap();
    let names: Vec<_> = loaded.definitions.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["v2"]);
    assert!(loaded.corrupt.is_empty(), "{:?}", loaded.corrupt);
    assert_eq!(loaded.tombstones, [("default".into(), "v1".into())]);
    assert!(matches!(
        store.load("default", "v1"),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        files(root.path()),
        ["default/v1.deleted", "default/v2.json"]
    );

    // The name is free at once, even before the delete is finished.
    let mut again = definition("default", "v1");
    again.description = "new".into();
    store.create(&again).unwrap();
    store.finish_delete("default", "v1").unwrap();
    assert_eq!(store.load("default", "v1").unwrap(), again);
    let loaded = store.load_all().unwrap();
    assert!(loaded.tombstones.is_empty());
    assert_eq!(files(root.path()), ["default/v1.json", "default/v2.json"]);
    // Finishing twice, or without a delete, is harmless.
    store.finish_delete("default", "v1").unwrap();
    store.finish_delete("default", "v3").unwrap();
    assert_eq!(store.load("default", "v1").unwrap(), again);
}

#[test]
fn a_tombstone_with_an_invalid_name_is_ignored() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    store.create(&definition("default", "v1")).unwrap();
    fs::write(root.path().join("instances/default/Bad_Name.deleted"), b"").unwrap();
    let loaded = store.load_all().unwrap();
    assert!(loaded.tombstones.is_empty());
    assert_eq!(loaded.definitions.len(), 1);
}

#[test]
fn create_never_clobbers() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let first = definition("default", "v1");
    store.create(&first).unwrap();
    let mut second = first.clone();
    second.description = "second".into();
    let error = store.create(&second).unwrap_err();
    assert!(
        matches!(error, StoreError::AlreadyExists { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "Instance \"v1\" already exists in project \"default\""
    );
    assert_eq!(store.load("default", "v1").unwrap(), first);
    // The same name in another project is another instance.
    store.create(&definition("other", "v1")).unwrap();
    assert_eq!(files(root.path()), ["default/v1.json", "other/v1.json"]);
}

#[test]
fn missing_instances_are_not_found() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    store.create(&definition("default", "v1")).unwrap();
    let not_found = |result: Result<(), StoreError>| {
        assert!(
            matches!(result, Err(StoreError::NotFound { .. })),
            "{result:?}"
        );
    };
    not_found(store.update(&definition("default", "v2")));
    not_found(store.update(&definition("nowhere", "v1")));
    not_found(store.begin_delete("default", "v2"));
    not_found(store.load("default", "v2").map(drop));
    not_found(store.load("nowhere", "v1").map(drop));
    assert_eq!(files(root.path()), ["default/v1.json"]);
}

#[test]
fn interrupted_writes_are_cleaned_up() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    store.create(&definition("default", "v1")).unwrap();
    // A crash between writing the temporary file and linking it.
    let leftover = root.path().join("instances/default/.v2.4242.0.tmp");
    fs::write(&leftover, b"{\"half\":").unwrap();
    assert_eq!(store.load_all().unwrap().definitions.len(), 1);
    assert!(store.load_all().unwrap().corrupt.is_empty());

    let store = Store::open(root.path()).unwrap();
    assert!(!leftover.exists());
    assert_eq!(files(root.path()), ["default/v1.json"]);
    assert_eq!(store.load_all().unwrap().definitions.len(), 1);
}

#[test]
fn a_rename_never_clobbers_and_survives_a_crash_between_its_steps() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    for name in ["a", "b"] {
        store.create(&definition("default", name)).unwrap();
    }
    assert!(matches!(
        store.rename("default", "a", "b"),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.rename("default", "nope", "c"),
        Err(StoreError::NotFound { .. })
    ));
    let renamed = store.rename("default", "a", "c").unwrap();
    assert_eq!(renamed.name, "c");
    assert_eq!(store.load("default", "c").unwrap(), renamed);
    assert!(matches!(
        store.load("default", "a"),
        Err(StoreError::NotFound { .. })
    ));
    // A crash after the file's rename, before its contents were rewritten.
    let dir = root.path().join("instances/default");
    fs::rename(dir.join("b.json"), dir.join("d.json")).unwrap();
    let loaded = store.load_all().unwrap();
    assert!(loaded.corrupt.is_empty(), "{:?}", loaded.corrupt);
    assert_eq!(loaded.renamed, [("default".into(), "b".into(), "d".into())]);
    assert_eq!(store.load("default", "d").unwrap().name, "d");
    assert!(store.load_all().unwrap().renamed.is_empty());
}

#[test]
fn a_corrupt_file_does_not_hide_the_others() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    for (project, name) in [("default", "b"), ("default", "a"), ("alpha", "z")] {
        store.create(&definition(project, name)).unwrap();
    }
    let broken = root.path().join("instances/default/broken.json");
    fs::write(&broken, b"{ not json").unwrap();
    let moved = root.path().join("instances/default/moved.json");
    fs::copy(root.path().join("instances/default/a.json"), &moved).unwrap();
    let badly_named = root.path().join("instances/default/Bad_Name.json");
    fs::write(&badly_named, b"{}").unwrap();

    let loaded = store.load_all().unwrap();
    let names: Vec<_> = loaded
        .definitions
        .iter()
        .map(|definition| format!("{}/{}", definition.project, definition.name))
        .collect();
    assert_eq!(names, ["alpha/z", "default/a", "default/b"]);
    let corrupt: Vec<_> = loaded.corrupt.iter().map(|(path, _)| path).collect();
    assert_eq!(corrupt, [&badly_named, &broken, &moved]);
    assert!(matches!(
        loaded.corrupt[0].1,
        StoreError::InvalidName { .. }
    ));
    assert!(matches!(loaded.corrupt[1].1, StoreError::Parse { .. }));
    assert!(matches!(loaded.corrupt[2].1, StoreError::Misplaced { .. }));
    // load of a corrupt file reports why rather than "not found".
    assert!(matches!(
        store.load("default", "broken"),
        Err(StoreError::Parse { .. })
    ));
}

#[test]
fn names_that_could_escape_are_rejected() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    for (project, name) in [
        ("default", "../x"),
        ("default", "a/b"),
        ("default", ".hidden"),
        ("..", "v1"),
        ("a/b", "v1"),
        ("", "v1"),
    ] {
        let invalid = |result: Result<(), StoreError>| {
            assert!(
                matches!(result, Err(StoreError::InvalidName { .. })),
                "{project:?}/{name:?}: {result:?}"
            );
        };
        invalid(store.create(&definition(project, name)));
        invalid(store.update(&definition(project, name)));
        invalid(store.load(project, name).map(drop));
        invalid(store.begin_delete(project, name));
        invalid(store.finish_delete(project, name));
    }
    let error = store.load("default", "a/b").unwrap_err();
    assert_eq!(error.to_string(), "invalid instance name \"a/b\"");
    assert!(
        read_dir(&root.path().join(INSTANCES_DIR))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn files_are_private_and_no_temporary_file_remains() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let mut v1 = definition("default", "v1");
    store.create(&v1).unwrap();
    v1.ephemeral = true;
    store.update(&v1).unwrap();
    assert_eq!(files(root.path()), ["default/v1.json"]);
    assert_eq!(mode(&root.path().join("instances")), 0o700);
    assert_eq!(mode(&root.path().join("instances/default")), 0o700);
    assert_eq!(mode(&root.path().join("instances/default/v1.json")), 0o600);
}

#[test]
fn of_concurrent_creates_exactly_one_wins() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut v1 = definition("default", "v1");
                v1.description = format!("thread {thread}");
                barrier.wait();
                store.create(&v1).map(|()| v1)
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    let winners: Vec<_> = results
        .iter()
        .filter_map(|result| result.as_ref().ok())
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|result| matches!(result, Ok(_) | Err(StoreError::AlreadyExists { .. })))
    );
    assert_eq!(&store.load("default", "v1").unwrap(), winners[0]);
    assert_eq!(files(root.path()), ["default/v1.json"]);
}
