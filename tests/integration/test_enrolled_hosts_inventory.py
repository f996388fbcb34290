"""The sshca.azure.enrolled_hosts inventory against the Azure emulator, through real ansible-inventory.

The emulator runs without lab hosts (ARM only): the plugin reads tags, NICs and public IPs, never SSH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import collection_env, make_keypair
from labkit import emulator

LOCATION = "westeurope"
DAY = 86400


def utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def registry(serial: int, started_days_ago: float, ends_in_days: float, **host_tags) -> dict:
    now = time.time()
    return host_tags | {"sshca-enrolled": utc(now - started_days_ago * DAY), "sshca-host-cert-serial": str(serial),
                        "sshca-host-cert-expires": utc(now + ends_in_days * DAY)}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two resource groups of VMs (no lab hosts) in a private emulator: valid, due, expired, not enrolled."""
    saved = dict(os.environ)
    root = tmp_path_factory.mktemp("inventory")
    with emulator.running(root / "emulator") as emu:
        emu.set_faults(lab_hosts=False)
        os.environ.update(emu.env())
        try:
            key = make_keypair(root, "bootstrap").public_text
            clients = emu.sdk_clients()
            made = {}
            for group, vms in {
                "rg-inv-a": {"web-1": registry(101, 5, 25, role="web"), "web-2": registry(102, 25, 5, role="web"),
                             "db-1": registry(103, 31, -1, role="db"), "plain-1": {"role": "web"}},
                "rg-inv-b": {"web-3": registry(104, 1, 29, role="web", team="blue")},
            }.items():
                subnet = emu.make_network(group, LOCATION, vnet=f"vnet-{group}")
                made.update(create_vms(root, group, subnet, key, vms))
            yield emu, clients, root, made
        finally:
            os.environ.clear()
            os.environ.update(saved)


def create_vms(root: Path, group: str, subnet: str, key: str, vms: dict[str, dict]) -> dict[str, dict]:
    """azure_vm makes them, as users do; returns its report per VM."""
    play = root / f"make-{group}.yml"
    out = root / f"made-{group}.json"
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                 "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                                 "tasks": [{"sshca.azure.azure_vm": {
                                     "resource_group": group, "location": LOCATION, "subnet_id": subnet,
                                     "ssh_public_key": key,
                                     "vms": [{"name": name, "tags": tags} for name, tags in vms.items()]},
                                     "register": "made"},
                                     {"ansible.builtin.copy": {"content": "{{ made.vms | to_json }}",
                                                               "dest": str(out), "mode": "0600"}}]}]))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(play)], capture_output=True, text=True, env=collection_env(), check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return {vm["name"]: vm for vm in json.loads(out.read_text())}


def inventory(root: Path, name: str, config: dict, *args: str) -> subprocess.CompletedProcess:
    source = root / name
    source.write_text(json.dumps(dict({"plugin": "sshca.azure.enrolled_hosts"}, **config)))
    return subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(source), *args],
                          capture_output=True, text=True, env=collection_env(), check=False)


def listed(proc: subprocess.CompletedProcess) -> dict:
    """ansible-inventory --list output; values from Azure come marked unsafe (never templated)."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout, object_hook=lambda d: d["__ansible_unsafe"] if set(d) == {"__ansible_unsafe"}
                      else d)


def test_graph_groups_by_state_and_host_tags(fleet):
    _emu, _clients, root, _made = fleet
    proc = inventory(root, "a.enrolled_hosts.yml", {"resource_groups": ["rg-inv-a"]}, "--graph")
    assert proc.returncode == 0, proc.stderr[-3000:]
    graph = proc.stdout
    assert "plain-1" not in graph and "web-3" not in graph
    data = listed(inventory(root, "a.enrolled_hosts.yml", {"resource_groups": ["rg-inv-a"]}, "--list"))
    members = {group: sorted(body.get("hosts", [])) for group, body in data.items() if group != "_meta"}
    assert sorted(data["sshca_enrolled"]["hosts"]) == ["db-1", "web-1", "web-2"]
    assert members["sshca_valid"] == ["web-1"]
    assert members["sshca_renewal_due"] == ["db-1", "web-2"]
    assert members["sshca_expired"] == ["db-1"]
    assert members["tag_role_web"] == ["web-1", "web-2"] and members["tag_role_db"] == ["db-1"]
    for group in ("sshca_valid", "sshca_renewal_due", "sshca_expired", "tag_role_web"):
        assert f"--@{group}:" in graph


def test_hostvars_and_the_whole_subscription(fleet):
    _emu, _clients, root, made = fleet
    data = listed(inventory(root, "sub.enrolled_hosts.yml", {"keyed_groups": [{"key": "sshca_host_tags.team",
                                                                               "prefix": "team"}]}, "--list"))
    assert sorted(data["sshca_enrolled"]["hosts"]) == ["db-1", "web-1", "web-2", "web-3"]
    assert data["team_blue"]["hosts"] == ["web-3"]
    web2 = data["_meta"]["hostvars"]["web-2"]
    assert web2["ansible_host"] == made["web-2"]["public_ip"]
    assert web2["sshca_private_ip"] == made["web-2"]["private_ip"]
    assert web2["sshca_vm_id"] == made["web-2"]["id"]
    assert web2["sshca_host_cert_serial"] == 102
    assert web2["sshca_host_tags"] == {"role": "web"}
    assert web2["sshca_renewal_due"] is True and web2["sshca_expired"] is False
    assert 4 * DAY < web2["sshca_cert_remaining_seconds"] <= 5 * DAY


def test_inventory_cache_serves_without_calling_azure_until_flushed(fleet, tmp_path):
    emu, clients, root, _made = fleet
    config = {"resource_groups": ["rg-inv-b"], "cache": True, "cache_plugin": "ansible.builtin.jsonfile",
              "cache_connection": str(tmp_path / "cache"), "cache_timeout": 3600}
    first = listed(inventory(root, "cached.enrolled_hosts.yml", config, "--list"))
    assert first["sshca_enrolled"]["hosts"] == ["web-3"]
    clients.compute.virtual_machines.begin_delete("rg-inv-b", "web-3").result()
    since = time.time()
    cached = listed(inventory(root, "cached.enrolled_hosts.yml", config, "--list"))
    assert cached["sshca_enrolled"]["hosts"] == ["web-3"]
    assert [r for r in emu.requests(since) if r["path"].startswith("/subscriptions/")] == []
    flushed = listed(inventory(root, "cached.enrolled_hosts.yml", config, "--list", "--flush-cache"))
    assert flushed.get("sshca_enrolled", {}).get("hosts", []) == []


def test_bad_auth_is_one_line(fleet):
    _emu, _clients, root, _made = fleet
    proc = inventory(root, "bad.enrolled_hosts.yml", {"arm_endpoint": "http://127.0.0.1:1"}, "--list")
    assert "enrolled_hosts: arm_endpoint must be an https URL" in proc.stderr
