"""Drives a VM through the Python client generated from swagger/rest-api.json.

Run by `cargo xtask test` (xtask/src/contract.rs), which generates the client (package
`vgashot_client`, on PYTHONPATH), starts the release daemon with a trusted client certificate,
and writes a boot-sector fixture image:

    python drive_vm.py https://127.0.0.1:PORT /path/to/fixture.img

with VGASHOT_CA (the daemon's certificate), VGASHOT_CERT and VGASHOT_KEY (the client's) in the
environment. Every step goes through the generated functions and models, and checks the status
and the parsed answer: create, start, list at recursion 0, 1 and 2, state, console PNG and log,
operations wait, metrics, stop, delete. Any mismatch raises, and the script exits non-zero.
"""

import os
import ssl
import sys
import time

from vgashot_client import Client
from vgashot_client.api.instances import (
    instance_console_get,
    instance_delete,
    instance_get,
    instance_state_get,
    instance_state_put,
    instances_get,
    instances_post,
)
from vgashot_client.api.metrics import metrics_get
from vgashot_client.api.operations import operation_wait_get
from vgashot_client.models import (
    ConsoleType,
    Instance,
    InstanceFull,
    InstancesPost,
    InstanceStatePut,
)

NAME = "contract-vm"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# How long the VM may take to show a picture on a loaded two-core machine.
DRAW_BOUND = 60.0


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


def client(url):
    context = ssl.create_default_context(cafile=os.environ["VGASHOT_CA"])
    context.load_cert_chain(os.environ["VGASHOT_CERT"], os.environ["VGASHOT_KEY"])
    return Client(base_url=url, verify_ssl=context, raise_on_unexpected_status=True)


def wait(api, response, what):
    """Waits for the operation a 202 started, through operation_wait_get; it must succeed."""
    expect(response.status_code == 202, f"{what}: {response.status_code} {response.content!r}")
    operation = response.parsed.metadata
    waited = operation_wait_get.sync_detailed(operation.id, client=api, timeout=60)
    expect(waited.status_code == 200, f"{what}: wait answered {waited.status_code}")
    expect(
        waited.parsed.metadata.status == "Success",
        f"{what}: the operation ended {waited.content!r}",
    )


def change_state(api, action):
    body = InstanceStatePut.from_dict({"action": action, "force": True, "timeout": -1})
    wait(api, instance_state_put.sync_detailed(NAME, client=api, body=body), action)


def main(url, image):
    api = client(url)
    body = InstancesPost.from_dict(
        {
            "name": NAME,
            "type": "virtual-machine",
            "source": {"type": "none"},
            "config": {"limits.memory": "64MiB", "console.screenshot.min_interval": "0"},
            "devices": {"root": {"type": "disk", "path": "/", "source": image}},
        }
    )
    wait(api, instances_post.sync_detailed(client=api, body=body), "create")
    change_state(api, "start")

    urls = instances_get.sync_detailed(client=api, recursion=0).parsed.metadata
    expect(f"/1.0/instances/{NAME}" in urls, f"recursion 0: {urls!r}")
    instances = instances_get.sync_detailed(client=api, recursion=1).parsed.metadata
    ours = [vm for vm in instances if vm.name == NAME]
    expect(len(ours) == 1 and isinstance(ours[0], (Instance, InstanceFull)), f"recursion 1: {instances!r}")
    expect(ours[0].status == "Running", f"recursion 1: {ours[0].status}")
    listed = instances_get.sync_detailed(client=api, recursion=2)
    full = [vm for vm in listed.parsed.metadata if vm.name == NAME]
    expect(len(full) == 1, f"recursion 2: {listed.content!r}")
    state_of_listed = full[0].to_dict().get("state") or {}
    expect(state_of_listed.get("pid", 0) > 0, f"recursion 2 has no state: {full[0].to_dict()!r}")
    one = instance_get.sync_detailed(NAME, client=api, recursion=1).parsed.metadata
    expect(one.to_dict().get("state", {}).get("status") == "Running", f"instance_get: {one.to_dict()!r}")

    state = instance_state_get.sync_detailed(NAME, client=api).parsed.metadata
    expect(state.status == "Running" and state.pid > 0, f"state: {state.to_dict()!r}")

    started = time.monotonic()
    while True:
        screen = instance_console_get.sync_detailed(NAME, client=api, type_=ConsoleType.VGA)
        if screen.status_code == 200 and screen.content.startswith(PNG_MAGIC):
            break
        expect(time.monotonic() - started < DRAW_BOUND, f"no screenshot: {screen.status_code}")
        time.sleep(0.2)
    expect(screen.headers.get("etag"), "the screenshot has no ETag")
    log = instance_console_get.sync_detailed(NAME, client=api, type_=ConsoleType.LOG)
    expect(log.status_code == 200, f"console log: {log.status_code}")
    expect(
        log.headers.get("content-type") == "application/octet-stream",
        f"console log: {log.headers.get('content-type')}",
    )

    metrics = metrics_get.sync_detailed(client=api)
    expect(metrics.status_code == 200, f"metrics: {metrics.status_code}")
    expect(f'name="{NAME}"' in metrics.parsed, "the metrics do not name the VM")

    change_state(api, "stop")
    state = instance_state_get.sync_detailed(NAME, client=api).parsed.metadata
    expect(state.status == "Stopped", f"after stop: {state.status}")
    wait(api, instance_delete.sync_detailed(NAME, client=api), "delete")
    gone = instance_get.sync_detailed(NAME, client=api)
    expect(gone.status_code == 404, f"after delete: {gone.status_code}")
    print(f"drive_vm.py: {NAME} created, started, listed, screenshot, stopped and deleted")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
