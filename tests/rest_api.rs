//! The REST API end to end: the real `vgashot daemon` on its Unix socket, real QEMU VMs.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Daemon, decode_png, wait_for_picture};
use vgashot_fixtures::Fixture;

/// Checks an Incus error envelope and its status.
fn assert_error(reply: &support::Reply, status: u16, message: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");
    assert_eq!(
        support::json(reply),
        json!({"type": "error", "status": "", "status_code": 0, "operation": "",
            "error_code": status, "error": message, "metadata": null})
    );
}

#[tokio::test]
async fn server_information_and_every_error_path() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };

    let root = daemon.request("GET", "/", None).await;
    assert_eq!(root.json().unwrap()["metadata"], json!(["/1.0"]));
    let server = daemon.request("GET", "/1.0", None).await.json().unwrap();
    assert_eq!(server["type"], "sync");
    let metadata = &server["metadata"];
    assert_eq!(metadata["auth"], "trusted");
    assert_eq!(metadata["api_version"], "1.0");
    assert_eq!(metadata["environment"]["driver"], "qemu");
    let extensions: Vec<&str> = metadata["api_extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    assert_eq!(extensions, vgashot_rest::extensions::API_EXTENSIONS);

    assert_error(
        &daemon.request("GET", "/1.0/nope", None).await,
        404,
        "not found",
    );
    assert_error(
        &daemon
            .request("GET", "/1.0/instances/nope/console?type=vga", None)
            .await,
        404,
        "Failed to fetch instance \"nope\" in project \"default\": Instance not found",
    );
    assert_error(
        &daemon
            .request("GET", "/1.0/instances/nope?project=nope", None)
            .await,
        404,
        "Project not found",
    );
    assert_error(
        &daemon
            .request_raw("POST", "/1.0/instances", b"{\"name\": ")
            .await,
        400,
        "EOF while parsing a value at line 1 column 9",
    );
    let bad_name = json!({"name": "-v1", "type": "virtual-machine", "source": {"type": "none"}});
    assert_error(
        &daemon
            .request("POST", "/1.0/instances", Some(bad_name))
            .await,
        400,
        "Invalid instance name: Name must not start with \"-\" character",
    );
    let unknown_field = json!({"name": "v1", "source": {"type": "none"}, "colour": "blue"});
    let reply = daemon
        .request("POST", "/1.0/instances", Some(unknown_field))
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        support::json(&reply)["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`")
    );
    let image = json!({"name": "v1", "type": "virtual-machine", "source": {"type": "image", "alias": "debian"}});
    let reply = daemon.request("POST", "/1.0/instances", Some(image)).await;
    assert_eq!(reply.status, 400, "{:?}", support::json(&reply));
    let container = json!({"name": "c1", "type": "container", "source": {"type": "none"}});
    let reply = daemon
        .request("POST", "/1.0/instances", Some(container))
        .await;
    assert_eq!(reply.status, 400, "{:?}", support::json(&reply));

    // A stopped VM: the console log is empty, the screen is refused, a bad type is a 400.
    daemon
        .operation(
            "POST",
            "/1.0/instances",
            Some(json!({"name": "v1", "type": "virtual-machine", "source": {"type": "none"}})),
        )
        .await;
    let taken = json!({"name": "v1", "type": "virtual-machine", "source": {"type": "none"}});
    assert_error(
        &daemon.request("POST", "/1.0/instances", Some(taken)).await,
        409,
        "Instance \"v1\" already exists",
    );
    assert_error(
        &daemon
            .request("GET", "/1.0/instances/v1/console?type=vga", None)
            .await,
        400,
        "Instance is not running",
    );
    assert_error(
        &daemon
            .request("GET", "/1.0/instances/v1/console?type=bogus", None)
            .await,
        400,
        "Invalid value for type parameter: bogus",
    );
    let log = daemon
        .request("GET", "/1.0/instances/v1/console", None)
        .await;
    assert_eq!(log.status, 200);
    assert_eq!(log.headers["content-type"], "application/octet-stream");
    let stop = json!({"action": "stop", "timeout": -1, "force": true, "stateful": false});
    assert_error(
        &daemon
            .request("PUT", "/1.0/instances/v1/state", Some(stop))
            .await,
        400,
        "The instance is already stopped",
    );
    let bad_action = json!({"action": "explode"});
    assert_error(
        &daemon
            .request("PUT", "/1.0/instances/v1/state", Some(bad_action))
            .await,
        400,
        "Unknown action explode",
    );
    let bad_config = json!({"config": {"limits.memory": "lots"}});
    let reply = daemon
        .request("PATCH", "/1.0/instances/v1", Some(bad_config))
        .await;
    assert_eq!(reply.status, 400, "{:?}", support::json(&reply));
    daemon.operation("DELETE", "/1.0/instances/v1", None).await;
    assert_eq!(
        daemon
            .request("GET", "/1.0/instances/v1", None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_vm_from_create_to_delete_with_its_screen() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::bars(1024, 768);
    let created = daemon.create_vm("v1", Some(fixture), json!({}), true).await;
    assert_eq!(created.resources["instances"], ["/1.0/instances/v1"]);

    let listed = daemon
        .request("GET", "/1.0/instances", None)
        .await
        .json()
        .unwrap();
    assert_eq!(listed["metadata"], json!(["/1.0/instances/v1"]));
    let full = daemon
        .request("GET", "/1.0/instances?recursion=2", None)
        .await
        .json()
        .unwrap();
    let vm = &full["metadata"][0];
    assert_eq!(vm["name"], "v1");
    assert_eq!(vm["type"], "virtual-machine");
    assert_eq!(vm["status"], "Running");
    assert_eq!(vm["status_code"], 103);
    assert!(vm["state"]["pid"].as_i64().unwrap() > 0);
    assert!(vm["state"]["memory"]["usage"].as_i64().unwrap() > 0);

    wait_for_picture(&daemon, "v1", fixture).await;
    let shot = daemon
        .request("GET", "/1.0/instances/v1/console?type=vga", None)
        .await;
    assert_eq!(shot.headers["content-type"], "image/png");
    assert_eq!(
        shot.headers["content-length"].to_str().unwrap(),
        shot.body.len().to_string()
    );
    assert!(
        shot.headers.get("content-disposition").is_none(),
        "no host path in any header"
    );
    let (width, height, _) = decode_png(&shot.body);
    assert_eq!((width, height), (1024, 768));

    // The guest's serial line is in the log.
    let log = daemon
        .request("GET", "/1.0/instances/v1/console", None)
        .await;
    assert!(
        log.body
            .ends_with(vgashot_fixtures::SERIAL_GREETING.as_bytes())
    );
    let cleared = daemon
        .request("DELETE", "/1.0/instances/v1/console", None)
        .await;
    assert_eq!(cleared.status, 200);

    let freeze = json!({"action": "freeze"});
    daemon
        .operation("PUT", "/1.0/instances/v1/state", Some(freeze))
        .await;
    assert_eq!(daemon.state("v1").await.status, "Frozen");
    let unfreeze = json!({"action": "unfreeze"});
    daemon
        .operation("PUT", "/1.0/instances/v1/state", Some(unfreeze))
        .await;

    let delete_running = daemon.request("DELETE", "/1.0/instances/v1", None).await;
    assert_eq!(delete_running.status, 400);
    let stop = json!({"action": "stop", "timeout": -1, "force": true, "stateful": false});
    daemon
        .operation("PUT", "/1.0/instances/v1/state", Some(stop))
        .await;
    let stopped = daemon
        .request("GET", "/1.0/instances/v1", None)
        .await
        .json()
        .unwrap();
    assert_eq!(stopped["metadata"]["status"], "Stopped");
    // Straight after the stop, within the capture interval: no screen, not a stale one.
    assert_error(
        &daemon
            .request("GET", "/1.0/instances/v1/console?type=vga", None)
            .await,
        400,
        "Instance is not running",
    );
    daemon.operation("DELETE", "/1.0/instances/v1", None).await;
    let empty = daemon
        .request("GET", "/1.0/instances", None)
        .await
        .json()
        .unwrap();
    assert_eq!(empty["metadata"], json!([]));
}

#[tokio::test]
async fn fifty_concurrent_screenshots_of_one_vm_are_all_valid() {
    let Some(daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::bars(640, 480);
    daemon.create_vm("v1", Some(fixture), json!({}), true).await;
    wait_for_picture(&daemon, "v1", fixture).await;

    let daemon = std::sync::Arc::new(daemon);
    let mut shots = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let daemon = daemon.clone();
        shots.spawn(async move {
            daemon
                .request("GET", "/1.0/instances/v1/console?type=vga", None)
                .await
        });
    }
    let expected = fixture.expected_rgb().unwrap();
    for shot in shots.join_all().await {
        assert_eq!(shot.status, 200);
        let (_, _, rgb) = decode_png(&shot.body);
        assert!(rgb == expected, "a concurrent screenshot differs");
    }
}

#[tokio::test]
async fn a_restarted_daemon_still_serves_its_running_vm() {
    let Some(mut daemon) = Daemon::start().await else {
        return;
    };
    let fixture = Fixture::Mode13;
    daemon.create_vm("v1", Some(fixture), json!({}), true).await;
    let before = daemon.state("v1").await.pid;

    daemon.terminate();
    daemon.spawn().await;

    let state = daemon.state("v1").await;
    assert_eq!(state.status, "Running");
    assert_eq!(state.pid, before, "the same QEMU, not a new one");
    wait_for_picture(&daemon, "v1", fixture).await;
    let stop = json!({"action": "stop", "force": true});
    daemon
        .operation("PUT", "/1.0/instances/v1/state", Some(stop))
        .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
