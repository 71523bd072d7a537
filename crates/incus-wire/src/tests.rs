//! The wire model against upstream incusd's own answers.

use super::*;
use serde::Serialize;
use serde_json::{Value, json};

/// `metadata` of the oracle's `get-1.0` (incusd 6.0.4 on the Unix socket), with
/// `api_extensions` cut to its first and last entries (the full list is 450 names).
const ORACLE_GET_1_0: &str = r#"{
    "config": {},
    "api_extensions": ["storage_zfs_remove_snapshots", "container_host_shutdown_timeout",
        "instance_console_screenshot", "instance_state_cpu_time", "network_io_bus",
        "disk_io_bus_usb"],
    "api_status": "stable",
    "api_version": "1.0",
    "auth": "trusted",
    "public": false,
    "auth_methods": ["tls"],
    "auth_user_name": "root",
    "auth_user_method": "unix",
    "environment": {
        "addresses": [],
        "architectures": ["x86_64", "i686"],
        "certificate": "<PEM certificate of the server>",
        "certificate_fingerprint": "<sha256 hex>",
        "driver": "lxc",
        "driver_version": "5.0.2",
        "firewall": "nftables",
        "kernel": "Linux",
        "kernel_architecture": "x86_64",
        "kernel_features": {"idmapped_mounts": "true", "netnsid_getifaddrs": "true",
            "seccomp_listener": "true", "seccomp_listener_continue": "true",
            "uevent_injection": "true", "unpriv_binfmt": "true", "unpriv_fscaps": "true"},
        "kernel_version": "6.18.44-fc-v669",
        "lxc_features": {"cgroup2": "true", "core_scheduling": "true", "devpts_fd": "true",
            "idmapped_mounts_v2": "true", "mount_injection_file": "true",
            "network_gateway_device_route": "true", "network_ipvlan": "true",
            "network_l2proxy": "true", "network_phys_macvlan_mtu": "true",
            "network_veth_router": "true", "pidfd": "true",
            "seccomp_allow_deny_syntax": "true", "seccomp_notify": "true",
            "seccomp_proxy_send_notify_fd": "true"},
        "os_name": "Debian GNU/Linux",
        "os_version": "12",
        "project": "default",
        "server": "incus",
        "server_clustered": false,
        "server_event_mode": "full-mesh",
        "server_name": "<hostname>",
        "server_pid": 12345,
        "server_version": "6.0.4",
        "storage": "",
        "storage_version": "",
        "storage_supported_drivers": [{"Name": "dir", "Version": "1", "Remote": false}]
    }
}"#;

/// `metadata` of the oracle's `get-profile-default`.
const ORACLE_PROFILE_DEFAULT: &str = r#"{"config": {}, "description": "Default Incus profile",
    "devices": {}, "name": "default", "used_by": [], "project": "default"}"#;

/// A VM as `GET /1.0/instances/v1?recursion=1` of incusd 6.0.x shows it, running.
const FULL_VM: &str = r#"{
    "architecture": "x86_64",
    "config": {"volatile.uuid": "8b7e2f0c-1f5e-4d2a-9c1e-2b4f5a6d7e8f"},
    "devices": {},
    "ephemeral": false,
    "profiles": ["default"],
    "stateful": false,
    "description": "",
    "created_at": "2026-11-25T03:06:29.912394528Z",
    "expanded_config": {"volatile.uuid": "8b7e2f0c-1f5e-4d2a-9c1e-2b4f5a6d7e8f"},
    "expanded_devices": {"root": {"path": "/", "pool": "default", "type": "disk"}},
    "name": "v1",
    "status": "Running",
    "status_code": 103,
    "last_used_at": "2026-11-25T03:07:01.5Z",
    "location": "none",
    "type": "virtual-machine",
    "project": "default",
    "backups": [],
    "state": {
        "status": "Running",
        "status_code": 103,
        "disk": {"root": {"usage": 4096, "total": 0}},
        "memory": {"usage": 0, "usage_peak": 0, "total": 0, "swap_usage": 0,
            "swap_usage_peak": 0},
        "network": {"eth0": {"addresses": [{"family": "inet", "address": "10.0.0.2",
            "netmask": "24", "scope": "global"}], "counters": {"bytes_received": 1,
            "bytes_sent": 2, "packets_received": 3, "packets_sent": 4, "errors_received": 0,
            "errors_sent": 0, "packets_dropped_outbound": 0, "packets_dropped_inbound": 0},
            "hwaddr": "00:16:3e:00:00:01", "host_name": "tap0", "mtu": 1500, "state": "up",
            "type": "broadcast"}},
        "pid": 4242,
        "processes": -1,
        "cpu": {"usage": 0, "allocated_time": 1000000000},
        "started_at": "2026-11-25T03:07:01.5Z",
        "os_info": null
    },
    "snapshots": []
}"#;

/// Where each key first appears in the JSON text `text` (serde_json's `Value` keeps no order
/// without `preserve_order`, so the order is read from the text).
fn key_order(text: &str, keys: &[&str]) -> Vec<usize> {
    keys.iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("no key {k} in {text}"))
        })
        .collect()
}

fn assert_in_order(text: &str, keys: &[&str]) {
    let positions = key_order(text, keys);
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys out of order: {keys:?} in {text}"
    );
}

#[test]
fn server_round_trips_the_oracle() {
    let expected: Value = serde_json::from_str(ORACLE_GET_1_0).unwrap();
    let server: Server = serde_json::from_str(ORACLE_GET_1_0).unwrap();
    assert_eq!(server.untrusted.auth, "trusted");
    assert_eq!(server.environment.server_pid, 12345);
    assert_eq!(server.environment.storage_supported_drivers[0].name, "dir");
    let text = serde_json::to_string(&server).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
    assert_in_order(
        &text,
        &[
            "config",
            "api_extensions",
            "api_status",
            "api_version",
            "auth",
            "public",
            "auth_methods",
            "auth_user_name",
            "auth_user_method",
            "environment",
        ],
    );
    assert_in_order(
        &text,
        &[
            "addresses",
            "certificate",
            "kernel_features",
            "os_name",
            "server_event_mode",
            "storage_supported_drivers",
        ],
    );
}

/// The whole oracle, where this checkout has it next to the repository.
#[test]
fn server_round_trips_the_full_oracle_file() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/incus-oracle/incus-6.0.4.json"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("skipped: no oracle at {path}");
        return;
    };
    let oracle: Value = serde_json::from_str(&text).unwrap();
    for (name, check) in [
        ("get-1.0", round_trip::<Server> as fn(&Value) -> Value),
        ("get-profile-default", round_trip::<Profile>),
        ("get-instances-r1", round_trip::<Vec<Instance>>),
    ] {
        let metadata = &oracle[name]["body"]["metadata"];
        assert_eq!(&check(metadata), metadata, "{name}");
    }
}

fn round_trip<T: serde::de::DeserializeOwned + Serialize>(value: &Value) -> Value {
    let parsed: T = serde_json::from_value(value.clone()).unwrap();
    serde_json::to_value(parsed).unwrap()
}

#[test]
fn untrusted_server_round_trips() {
    let body = json!({"config": {}, "api_extensions": ["instance_console_screenshot"],
        "api_status": "stable", "api_version": "1.0", "auth": "untrusted", "public": false,
        "auth_methods": ["tls"]});
    assert_eq!(round_trip::<ServerUntrusted>(&body), body);
}

#[test]
fn profile_round_trips_the_oracle() {
    let expected: Value = serde_json::from_str(ORACLE_PROFILE_DEFAULT).unwrap();
    let profile: Profile = serde_json::from_str(ORACLE_PROFILE_DEFAULT).unwrap();
    let text = serde_json::to_string(&profile).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
    assert_in_order(
        &text,
        &[
            "config",
            "description",
            "devices",
            "name",
            "used_by",
            "project",
        ],
    );
}

#[test]
fn full_instance_round_trips_in_go_order() {
    let expected: Value = serde_json::from_str(FULL_VM).unwrap();
    let full: InstanceFull = serde_json::from_str(FULL_VM).unwrap();
    assert_eq!(full.instance.kind, "virtual-machine");
    assert_eq!(full.state.as_ref().unwrap().pid, 4242);
    let text = serde_json::to_string(&full).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
    assert_in_order(
        &text,
        &[
            "architecture",
            "ephemeral",
            "profiles",
            "stateful",
            "description",
            "created_at",
            "expanded_config",
            "expanded_devices",
            "name",
            "status_code",
            "last_used_at",
            "location",
            "project",
            "backups",
            "state",
            "snapshots",
        ],
    );
}

#[test]
fn unset_times_are_go_zero_times_and_empty_expansions_are_left_out() {
    let value = serde_json::to_value(Instance::default()).unwrap();
    assert_eq!(value["created_at"], ZERO_TIME);
    assert_eq!(value["last_used_at"], ZERO_TIME);
    assert!(value.get("expanded_config").is_none());
    assert!(value.get("expanded_devices").is_none());
    assert_eq!(
        serde_json::to_value(InstanceState::default()).unwrap()["started_at"],
        ZERO_TIME
    );
    let stopped = serde_json::to_value(InstanceState::default()).unwrap();
    assert_eq!(stopped["network"], Value::Null);
    assert_eq!(stopped["os_info"], Value::Null);
}

#[test]
fn go_nulls_read_as_empty() {
    let full: InstanceFull = serde_json::from_value(json!({"name": "v1", "config": null,
        "devices": null, "profiles": null, "backups": null, "snapshots": null, "state": null}))
    .unwrap();
    assert!(full.instance.config.is_empty() && full.snapshots.is_empty() && full.state.is_none());
}

/// The body `incus init --empty --vm v2` (6.0.4) sends, byte for byte (Go's encoder).
const CLIENT_INIT_EMPTY_VM: &str = r#"{"architecture":"","config":{},"devices":{},"ephemeral":false,"profiles":null,"stateful":false,"description":"","name":"v2","source":{"type":"none","certificate":"","allow_inconsistent":false},"instance_type":"","type":"virtual-machine","start":false}"#;

#[test]
fn the_clients_create_request_parses() {
    let req: InstancesPost = serde_json::from_str(CLIENT_INIT_EMPTY_VM).unwrap();
    assert_eq!(req.name, "v2");
    assert_eq!(req.kind, "virtual-machine");
    assert_eq!(req.source.kind, "none");
    assert_eq!(req.profiles, None);
    assert!(!req.start);
    // And we write it back as the client wrote it.
    assert_eq!(serde_json::to_string(&req).unwrap(), CLIENT_INIT_EMPTY_VM);
    assert_eq!(req.instance_put().profiles, None);
}

#[test]
fn create_requests_of_other_shapes_parse() {
    // `incus launch --no-profiles -c limits.cpu=2 --vm` with a description: `[]` stays `[]`.
    let req: InstancesPost = serde_json::from_value(json!({"architecture": "", "config":
        {"limits.cpu": "2"}, "devices": {}, "ephemeral": false, "profiles": [],
        "stateful": false, "description": "d", "name": "v3", "source": {"type": "none",
        "certificate": "", "allow_inconsistent": false}, "instance_type": "",
        "type": "virtual-machine", "start": true}))
    .unwrap();
    assert_eq!(req.profiles, Some(vec![]));
    assert!(req.start);
    // An image source, as the client sends it for `incus launch images:debian/12`.
    let req: InstancesPost = serde_json::from_value(json!({"name": "c1", "source": {"type":
        "image", "certificate": "", "alias": "debian/12", "server":
        "https://images.linuxcontainers.org", "protocol": "simplestreams", "mode": "pull",
        "allow_inconsistent": false}, "type": "container"}))
    .unwrap();
    assert_eq!(req.source.alias.as_deref(), Some("debian/12"));
    // A minimal hand-written one: every key is optional, and Go-style nulls are accepted.
    let req: InstancesPost =
        serde_json::from_str(r#"{"name":"v4","source":{"type":"none"},"config":null}"#).unwrap();
    assert_eq!(req.kind, "");
}

#[test]
fn the_clients_state_requests_parse() {
    let start: InstanceStatePut =
        serde_json::from_str(r#"{"action":"start","timeout":0,"force":false,"stateful":false}"#)
            .unwrap();
    assert_eq!(start.action, "start");
    let stop: InstanceStatePut =
        serde_json::from_str(r#"{"action":"stop","timeout":-1,"force":true,"stateful":false}"#)
            .unwrap();
    assert_eq!((stop.timeout, stop.force), (-1, true));
}

#[test]
fn the_clients_put_request_parses_and_patch_sees_what_is_missing() {
    // `incus config edit` sends the instance's writable part.
    let put: InstancePut = serde_json::from_str(r#"{"architecture":"x86_64","config":{"limits.cpu":"2"},"devices":{},"ephemeral":false,"profiles":["default"],"stateful":false,"description":""}"#).unwrap();
    assert_eq!(put.profiles.as_deref(), Some(&["default".to_owned()][..]));
    let patch: InstancePut = serde_json::from_str(r#"{"description":"x"}"#).unwrap();
    assert_eq!(patch.config, None);
    assert_eq!(patch.description.as_deref(), Some("x"));
}

#[test]
fn unknown_fields_are_refused_by_name() {
    for (body, field) in [
        (r#"{"name":"v2","bogus":1}"#, "bogus"),
        (
            r#"{"name":"v2","source":{"type":"none","nope":true}}"#,
            "nope",
        ),
    ] {
        let err = serde_json::from_str::<InstancesPost>(body)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("unknown field `{field}`")), "{err}");
    }
    let err = serde_json::from_str::<InstancePut>(r#"{"config":{},"x":1}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `x`"), "{err}");
    let err = serde_json::from_str::<InstanceStatePut>(r#"{"action":"start","wait":true}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `wait`"), "{err}");
}

#[test]
fn wrong_types_are_refused() {
    assert!(
        serde_json::from_str::<InstanceStatePut>(r#"{"action":"stop","timeout":"10"}"#).is_err()
    );
    assert!(serde_json::from_str::<InstancesPost>(r#"{"config":{"limits.cpu":2}}"#).is_err());
}

#[test]
fn schemas_name_the_wire_keys() {
    use utoipa::PartialSchema;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    let RefOr::T(Schema::Object(object)) = InstancesPost::schema() else {
        panic!("InstancesPost is not an object schema");
    };
    assert!(object.properties.contains_key("type"));
    assert!(object.properties.contains_key("instance_type"));
    assert!(!object.properties.contains_key("kind"));
    let RefOr::T(Schema::Object(object)) = ServerStorageDriverInfo::schema() else {
        panic!("ServerStorageDriverInfo is not an object schema");
    };
    assert!(object.properties.contains_key("Name"));
}
