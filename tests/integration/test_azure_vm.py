"""azure_vm and azure_vm_info against the lab's Azure emulator, through real ansible-playbook.

Each VM the emulator creates is a real lab host whose public IP (127.0.0.N) answers SSH, so
"created" is proven by logging in with the bootstrap key. ARM writes are counted from the
emulator's request log. Lab hosts are few (CPU): one VM, a fleet of five, one partial failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import lab_available, make_keypair
from labkit import emulator, hosts

pytestmark = pytest.mark.lab

RG = "rg-azure-vm"
LOCATION = "westeurope"


@dataclass
class Lab:
    emu: emulator.Client
    subnet_id: str
    keys: Path

    def writes_since(self, since: float) -> list[dict]:
        """ARM writes (PUT/PATCH/DELETE/POST) the emulator received since `since`, faults included."""
        return [r for r in self.emu.requests(since) if r.get("write") and r["path"].startswith("/subscriptions/")]

    def reads_since(self, since: float) -> Counter:
        """ARM GETs since `since` by resource type, a list as "<type> list" (operation polls left out)."""
        def kind(path: str) -> str:
            parent, last = path.rsplit("/", 2)[-2:]
            return f"{last} list" if parent.startswith("Microsoft.") else parent
        return Counter(kind(r["path"]) for r in self.emu.requests(since)
                       if r["method"] == "GET" and r["path"].startswith("/subscriptions/")
                       and "/operations/" not in r["path"])

    def resources(self, kind: str) -> list[str]:
        """Names of the resources of one type (virtualMachines, networkInterfaces, ...) in RG."""
        clients = self.emu.sdk_clients()
        listing = {
            "virtualMachines": lambda: clients.compute.virtual_machines.list(RG),
            "disks": lambda: clients.compute.disks.list_by_resource_group(RG),
            "networkInterfaces": lambda: clients.network.network_interfaces.list(RG),
            "publicIPAddresses": lambda: clients.network.public_ip_addresses.list(RG),
        }[kind]
        return sorted(r.name for r in listing())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """An emulator of our own (own state dir, own lab hosts) with a resource group and a subnet."""
    if not lab_available():
        pytest.fail("the emulator's VMs are lab hosts: they need root and podman (`make setup`)")
    state = tmp_path_factory.mktemp("emulator")
    saved = dict(os.environ)
    with emulator.running(state) as emu:  # stops it and removes its lab hosts afterwards
        os.environ.update(emu.env())
        try:
            subnet_id = emu.make_network(RG, LOCATION, address_space="10.20.0.0/16", subnet_prefix="10.20.1.0/24")
            yield Lab(emu, subnet_id, tmp_path_factory.mktemp("keys"))
        finally:
            os.environ.clear()
            os.environ.update(saved)


def rfc4716_of(public: Path) -> str:
    return subprocess.run(["ssh-keygen", "-e", "-f", str(public)], capture_output=True, text=True,
                          check=True).stdout


def ssh_as(identity: Path, user: str, address: str) -> subprocess.CompletedProcess:
    """A real login with only this key (no agent, no config), returning `id -un` and the hostname."""
    return subprocess.run(["ssh", *hosts.SSH_BASE_OPTIONS, "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-i", str(identity), f"{user}@{address}", "--",
                           "id -un; hostname"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)


def by_name(result: dict) -> dict[str, dict]:
    return {vm["name"]: vm for vm in result["vms"]}


def test_one_vm_lifecycle(lab, ansible_module):
    key = make_keypair(lab.keys, "one", "rsa")
    args = {"resource_group": RG, "location": LOCATION, "name": "one-1", "subnet_id": lab.subnet_id,
            "ssh_public_key": rfc4716_of(key.public), "tags": {"role": "web"}, "wait_for_ssh": True}

    # check mode: the three planned writes are reported, none is issued
    since = time.time()
    run = ansible_module("azure_vm", args, check=True, diff=True)
    assert run.changed and not run.failed, run.result.get("msg")
    assert [(op["method"], op["change"]) for op in run.result["operations"]] == [
        ("PUT", "create public IP"), ("PUT", "create network interface"), ("PUT", "create VM")]
    assert run.result["diff"][0]["after"]["tags"] == {"role": "web"}
    assert lab.writes_since(since) == []

    # apply: exactly three writes, and the bootstrap key logs in on the public IP
    lab.emu.set_faults(retry_after=1, lro_seconds={"default": 0, "virtualMachines": 4})
    since = time.time()
    try:
        run = ansible_module("azure_vm", args)
    finally:
        lab.emu.reset_faults()
    assert run.changed and not run.failed, run.result.get("msg")
    assert len(lab.writes_since(since)) == 3
    # VM, NIC and public IP are read once each to plan (absent), never again one by one. No
    # operation is polled: each write's end is seen in a list of the resource group's resources
    # of its type, asked once a second (not at a fixed long interval) while the 4 s create runs.
    reads = lab.reads_since(since)
    assert (reads["virtualMachines"], reads["networkInterfaces"], reads["publicIPAddresses"]) == (1, 1, 1), reads
    requests = lab.emu.requests(since)
    assert [r["path"] for r in requests if "/operations/" in r["path"]] == []
    assert reads["virtualMachines list"] >= 3, reads
    [vm] = run.result["vms"]
    assert vm["power_state"] == "running" and vm["public_ip"] and vm["private_ip"].startswith("10.20.1.")
    login = ssh_as(key.private, "azureuser", vm["public_ip"])
    assert login.returncode == 0, login.stderr
    assert login.stdout.split() == ["azureuser", "one-1"]
    # boot diagnostics on, on Azure's managed storage (no storage account of ours)
    diagnostics = lab.emu.sdk_clients().compute.virtual_machines.get(RG, "one-1").diagnostics_profile
    assert diagnostics.boot_diagnostics.enabled and diagnostics.boot_diagnostics.storage_uri is None

    # idempotent check, then idempotent apply: nothing to write, nothing written
    for check in (True, False):
        since = time.time()
        run = ansible_module("azure_vm", args, check=check)
        assert not run.changed and not run.failed, run.result
        assert run.result["operations"] == []
        assert lab.writes_since(since) == []

    # the same key given in OpenSSH form is the same key
    since = time.time()
    run = ansible_module("azure_vm", dict(args, ssh_public_key=key.public_text))
    assert not run.changed and lab.writes_since(since) == []

    # a tag change is one PATCH of the VM, and nothing else
    since = time.time()
    run = ansible_module("azure_vm", dict(args, tags={"enrolled": "yes"}), diff=True)
    assert run.changed and not run.failed, run.result.get("msg")
    writes = lab.writes_since(since)
    assert [(w["method"], w["path"].rsplit("/", 2)[-2]) for w in writes] == [("PATCH", "virtualMachines")]
    # read once to plan; the PATCH answers "Updating", and one list of the VMs says when it ended
    reads = lab.reads_since(since)
    assert (reads["virtualMachines"], reads["networkInterfaces"], reads["publicIPAddresses"]) == (1, 1, 1), reads
    assert reads["virtualMachines list"] == 1, reads
    assert run.result["vms"][0]["tags"] == {"role": "web", "enrolled": "yes"}
    assert run.result["diff"][0]["before"]["tags"] == {"role": "web"}

    # exact tags replace
    since = time.time()
    run = ansible_module("azure_vm", dict(args, tags={"enrolled": "yes"}, append_tags=False))
    assert run.changed and run.result["vms"][0]["tags"] == {"enrolled": "yes"}
    assert len(lab.writes_since(since)) == 1

    # a system-assigned identity is one PATCH too, then stays put
    since = time.time()
    run = ansible_module("azure_vm", dict(args, tags={"enrolled": "yes"}, append_tags=False, identity="system"))
    assert run.changed and [op["change"] for op in run.result["operations"]] == ["update VM (identity)"]
    assert [w["method"] for w in lab.writes_since(since)] == ["PATCH"]
    since = time.time()
    run = ansible_module("azure_vm", dict(args, tags={"enrolled": "yes"}, append_tags=False, identity="system"))
    assert not run.changed and lab.writes_since(since) == []

    # a new key or image is reported as not changeable in place: not written, not ignored
    other = make_keypair(lab.keys, "other", "ed25519")
    since = time.time()
    run = ansible_module("azure_vm", dict(args, tags={"enrolled": "yes"}, append_tags=False,
                                          ssh_public_key=other.public_text, image="ubuntu2204"))
    assert not run.failed and not run.changed, run.result
    [vm] = run.result["vms"]
    assert sorted(vm["not_changeable_in_place"]) == ["image", "ssh_keys"]
    assert "Azure cannot change image, ssh_keys in place" in vm["msg"]
    assert "cannot change" in run.output  # the warning reaches the user
    assert lab.writes_since(since) == []
    assert ssh_as(other.private, "azureuser", vm["public_ip"]).returncode != 0

    # azure_vm_info sees it, by name and by tag filter, reading the VM once each time
    since = time.time()
    info = ansible_module("azure_vm_info", {"resource_group": RG, "name": "one-1"})
    assert not info.failed, info.result
    assert lab.reads_since(since)["virtualMachines"] == 1
    [found] = info.result["vms"]
    facts = (found["public_ip"], found["power_state"], found["admin_username"])
    assert facts == (vm["public_ip"], "running", "azureuser")
    since = time.time()
    assert ansible_module("azure_vm_info", {"tags": ["enrolled:yes"]}).result["vms"][0]["name"] == "one-1"
    assert lab.reads_since(since)["virtualMachines"] == 1  # the list names it; one GET reads it
    assert ansible_module("azure_vm_info", {"tags": {"enrolled": "no"}}).result["vms"] == []

    # delete: check mode writes nothing; then exactly the VM, NIC, public IP and disk go
    absent = {"resource_group": RG, "name": "one-1", "state": "absent"}
    since = time.time()
    run = ansible_module("azure_vm", absent, check=True)
    assert run.changed and lab.writes_since(since) == []
    host_names = [h.name for h in lab.emu.lab_hosts()]
    assert host_names
    run = ansible_module("azure_vm", absent)
    assert run.changed and not run.failed, run.result.get("msg")
    for kind in ("virtualMachines", "networkInterfaces", "publicIPAddresses", "disks"):
        assert "one-1" not in " ".join(lab.resources(kind)), kind
    assert lab.emu.lab_hosts() == []
    assert ssh_as(key.private, "azureuser", vm["public_ip"]).returncode != 0
    # and again: nothing left to delete
    since = time.time()
    run = ansible_module("azure_vm", absent)
    assert not run.changed and lab.writes_since(since) == []


def test_tags_only_update_of_an_existing_vm(lab, ansible_module):
    """Name or id plus tags, nothing else: one PATCH of the tags, then no write; the VM's size,
    image and missing public IP are kept, not taken for their defaults."""
    key = make_keypair(lab.keys, "tags-only", "ed25519")
    made = ansible_module("azure_vm", {
        "resource_group": RG, "location": LOCATION, "name": "tagged-1", "subnet_id": lab.subnet_id,
        "ssh_public_key": key.public_text, "public_ip": False, "size": "Standard_D2s_v5", "image": "ubuntu2204",
        "tags": {"role": "db"}})
    assert made.changed and not made.failed, made.result.get("msg")
    vm_id = made.result["vms"][0]["id"]
    enrolled = {"sshca-enrolled": "2026-11-25T23:00:00", "sshca-host-cert-serial": "42"}

    # check mode: the one PATCH it would issue, nothing written
    since = time.time()
    run = ansible_module("azure_vm", {"resource_group": RG, "name": "tagged-1", "tags": enrolled},
                         check=True, diff=True)
    assert run.changed and not run.failed, run.result.get("msg")
    assert [(op["method"], op["change"]) for op in run.result["operations"]] == [("PATCH", "update VM (tags)")]
    assert run.result["diff"][0]["after"]["tags"] == {"role": "db", **enrolled}
    assert lab.writes_since(since) == []

    # apply by resource id: exactly one PATCH of the VM, and the tags are on it
    since = time.time()
    run = ansible_module("azure_vm", {"id": vm_id, "tags": enrolled})
    assert run.changed and not run.failed, run.result.get("msg")
    writes = lab.writes_since(since)
    assert [(w["method"], w["path"].rsplit("/", 2)[-2]) for w in writes] == [("PATCH", "virtualMachines")]
    [vm] = run.result["vms"]
    assert vm["not_changeable_in_place"] == []
    assert (vm["size"], vm["public_ip"], vm["tags"]) == ("Standard_D2s_v5", None, {"role": "db", **enrolled})

    # idempotent check, then idempotent apply, by name and by id: nothing written
    for args in ({"resource_group": RG, "name": "tagged-1", "tags": enrolled}, {"id": vm_id, "tags": enrolled}):
        for check in (True, False):
            since = time.time()
            run = ansible_module("azure_vm", args, check=check)
            assert not run.changed and not run.failed, run.result
            assert lab.writes_since(since) == []

    # a VM that does not exist cannot be created from tags alone: one clear line, nothing written
    since = time.time()
    run = ansible_module("azure_vm", {"id": vm_id.replace("tagged-1", "tagged-2"), "tags": enrolled})
    assert run.failed
    assert run.result["msg"] == (f"tagged-2: VM tagged-2 does not exist in resource group {RG}, and creating it "
                                 "needs ssh_public_key and subnet_id (or vnet_name and subnet_name)")
    assert lab.writes_since(since) == []
    run = ansible_module("azure_vm", {"id": vm_id, "resource_group": "rg-other", "tags": enrolled})
    assert run.failed and "but resource_group is rg-other" in run.result["msg"]

    run = ansible_module("azure_vm", {"id": vm_id, "state": "absent"})
    assert run.changed and not run.failed, run.result.get("msg")
    assert "tagged-1" not in " ".join(lab.resources("virtualMachines"))


def test_fleet_of_five_converges_under_throttling(lab, ansible_module):
    rsa = make_keypair(lab.keys, "fleet-rsa", "rsa")
    ed25519 = make_keypair(lab.keys, "fleet-ed", "ed25519")
    names = [f"fleet-{n}" for n in range(1, 6)]
    vms = [{"name": name, "ssh_public_key": rfc4716_of(rsa.public) if n % 2 else ed25519.public_text,
            "tags": {"index": str(n)}} for n, name in enumerate(names)]
    args = {"resource_group": RG, "location": LOCATION, "subnet_id": lab.subnet_id, "vms": vms,
            "wait_for_ssh": True, "tags": {"fleet": "yes"}}  # an item's tags replace the top-level ones

    lab.emu.set_faults(retry_after=1, faults={"rate": 0.3, "statuses": [429, 503], "paths": "^/subscriptions/"})
    try:
        since = time.time()
        run = ansible_module("azure_vm", args)
    finally:
        lab.emu.reset_faults()
    assert run.changed and not run.failed, run.result.get("msg")
    requests = lab.emu.requests(since)
    assert any(r.get("fault") in ("429", "503") for r in requests), "the faults were not injected"
    accepted = [r for r in requests if r.get("write") and not r.get("fault")]
    assert len(accepted) == 15  # three writes per VM, each accepted once

    # no duplicates: exactly one VM, NIC, public IP and disk per name
    for kind, suffix in (("virtualMachines", ""), ("networkInterfaces", "-nic"), ("publicIPAddresses", "-pip"),
                         ("disks", "-osdisk")):
        assert [n for n in lab.resources(kind) if n.startswith("fleet-")] == [n + suffix for n in names], kind

    result = by_name(run.result)
    for n, name in enumerate(names):
        vm = result[name]
        assert vm["tags"] == {"index": str(n)}
        key = rsa if n % 2 else ed25519
        login = ssh_as(key.private, "azureuser", vm["public_ip"])
        assert login.returncode == 0, (name, login.stderr)
        assert login.stdout.split() == ["azureuser", name]

    since = time.time()
    rerun = ansible_module("azure_vm", args)
    assert not rerun.changed and lab.writes_since(since) == []

    run = ansible_module("azure_vm", {"resource_group": RG, "state": "absent", "vms": [{"name": n} for n in names]})
    assert run.changed and not run.failed, run.result.get("msg")
    for kind in ("virtualMachines", "networkInterfaces", "publicIPAddresses", "disks"):
        assert [n for n in lab.resources(kind) if n.startswith("fleet-")] == [], kind
    assert lab.emu.lab_hosts() == []


def test_one_failing_vm_does_not_hide_the_others(lab, ansible_module):
    key = make_keypair(lab.keys, "partial", "ed25519")
    args = {"resource_group": RG, "location": LOCATION, "subnet_id": lab.subnet_id,
            "ssh_public_key": key.public_text, "public_ip": False,
            "vms": [{"name": "part-good"}, {"name": "part-bad"}]}
    # ARM refuses the create of one VM only.
    lab.emu.set_faults(faults=[{"rate": 1.0, "statuses": [409], "methods": ["PUT"], "code": "OperationNotAllowed",
                                "paths": "/virtualMachines/part-bad$"}])
    try:
        run = ansible_module("azure_vm", args)
    finally:
        lab.emu.reset_faults()
    assert run.failed and run.changed
    result = by_name(run.result)
    assert not result["part-good"]["failed"] and result["part-good"]["power_state"] == "running"
    assert result["part-bad"]["failed"]
    assert result["part-bad"]["msg"].startswith("vms[1] (part-bad): OperationNotAllowed")
    assert "part-bad" in run.result["msg"] and "part-good" not in run.result["msg"]
    # The NIC made for the refused VM is reported, and removed by state=absent.
    changes = [op["change"] for op in result["part-bad"]["operations"]]
    assert changes == ["create network interface", "create VM (refused)"]
    run = ansible_module("azure_vm", {"resource_group": RG, "state": "absent",
                                      "vms": [{"name": "part-good"}, {"name": "part-bad"}]})
    assert run.changed and not run.failed, run.result.get("msg")
    for kind in ("virtualMachines", "networkInterfaces", "disks"):
        assert [n for n in lab.resources(kind) if n.startswith("part-")] == [], kind
    assert lab.emu.lab_hosts() == []


def test_a_throttled_fleet_is_made_once_each_and_every_429_is_waited_out(lab, ansible_module):
    """ARM's buckets at a tenth of their size (20 writes, then 1 a second), no lab hosts, and a
    share of the PUTs carried out then answered 503: every VM is made, each resource once, and
    every call that met a 429 got through in the end."""
    key = make_keypair(lab.keys, "throttled", "ed25519")
    names = [f"thr-{n:02d}" for n in range(12)]
    args = {"resource_group": RG, "location": LOCATION, "subnet_id": lab.subnet_id, "public_ip": False,
            "ssh_public_key": key.public_text, "vms": [{"name": name} for name in names]}
    lab.emu.set_faults(lab_hosts=False, retry_after=1, throttling={"arm": 0.1, "compute": 0.1},
                       faults=[{"rate": 0.3, "statuses": [503], "methods": ["PUT"], "applied": True,
                                "paths": "/providers/Microsoft\\.(Compute|Network)/"}])
    try:
        since = time.time()
        run = ansible_module("azure_vm", args)
        requests = [r for r in lab.emu.requests(since) if r["path"].startswith("/subscriptions/")]
    finally:
        lab.emu.reset_faults()
    assert run.changed and not run.failed, run.result.get("msg")
    calls: dict[str, list[dict]] = {}
    for r in requests:
        calls.setdefault(r["client_request_id"], []).append(r)
    throttled = [c for c in calls.values() if any((r["fault"] or "").startswith("429") for r in c)]
    assert throttled, "ARM never throttled: the test proves nothing"
    assert [c[-1]["status"] for c in throttled if c[-1]["status"] >= 400] == []
    assert any(r["fault"] == "503-applied" for r in requests), "no write was applied then answered 503"
    for kind, suffix in (("virtualMachines", ""), ("networkInterfaces", "-nic"), ("disks", "-osdisk")):
        assert [n for n in lab.resources(kind) if n.startswith("thr-")] == [n + suffix for n in names], kind
    assert {vm["name"]: vm["power_state"] for vm in run.result["vms"]} == dict.fromkeys(names, "running")

    run = ansible_module("azure_vm", {"resource_group": RG, "state": "absent", "vms": [{"name": n} for n in names]})
    assert run.changed and not run.failed, run.result.get("msg")
    for kind in ("virtualMachines", "networkInterfaces", "disks"):
        assert [n for n in lab.resources(kind) if n.startswith("thr-")] == [], kind


# A stand-in for the Azure CLI's `az account get-access-token`, the way AzureCliCredential calls
# it: it logs the call and asks the lab's token endpoint, so each token costs a process and a request.
FAKE_AZ = r"""#!{python}
import json, os, ssl, sys, time, urllib.parse, urllib.request

args = sys.argv[1:]
resource = args[args.index("--resource") + 1]
tenant = args[args.index("--tenant") + 1] if "--tenant" in args else os.environ["AZURE_TENANT_ID"]
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(" ".join(args) + "\n")
form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": os.environ["AZURE_CLIENT_ID"],
                               "client_secret": os.environ["AZURE_CLIENT_SECRET"], "scope": resource + "/.default"})
context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
token_url = "%s/%s/oauth2/v2.0/token" % (os.environ["AZURE_AUTHORITY_HOST"], tenant)
answer = json.load(opener.open(token_url, form.encode()))
expires = int(time.time()) + int(answer["expires_in"])
print(json.dumps({"accessToken": answer["access_token"], "expires_on": expires, "tokenType": "Bearer",
                  "tenant": tenant, "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.localtime(expires))}))
"""


def test_one_token_for_a_whole_run_with_the_cli_credential(lab, ansible_module, tmp_path, monkeypatch):
    """With the Azure CLI as credential every token is a process: five VM threads and two SDK
    clients ask for one, once."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "az").write_text(FAKE_AZ.replace("{python}", sys.executable))
    (folder / "az").chmod(0o755)
    calls = tmp_path / "az-calls.log"
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_AZ_LOG", str(calls))
    key = make_keypair(lab.keys, "cli", "ed25519")
    since = time.time()
    run = ansible_module("azure_vm", {"resource_group": RG, "location": LOCATION, "subnet_id": lab.subnet_id,
                                      "ssh_public_key": key.public_text, "auth_source": "cli",
                                      "vms": [{"name": f"cli-{n}"} for n in range(1, 6)]}, check=True)
    assert run.changed and not run.failed, run.result.get("msg")
    assert len(run.result["operations"]) == 15  # planned for all five, through both clients
    assert len(calls.read_text().splitlines()) == 1
    assert len([r for r in lab.emu.requests(since) if r["op"] == "POST token"]) == 1


BAD_INPUTS = [
    ("malformed key", {"ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"}, "bad-1: ssh_public_key: "),
    ("rsa 1024", "rsa1024", "is a 1024-bit RSA key; at least 2048 bits are required"),
    ("missing subnet", {"vnet_name": "vnet", "subnet_name": "nope", "subnet_id": None},
     "subnet /subscriptions/"),
    ("unknown image", {"image": "ubuntu1804"}, "image: 'ubuntu1804' is not a preset"),
    ("bad name", {"name": "web_1"}, "name: 'web_1' must be 1-64 letters"),
    # Azure refuses it only at the VM's PUT, after the public IP and NIC would have been made.
    ("reserved admin", {"admin_username": "backup"}, "bad-1: admin_username: 'backup' is a name Azure reserves"),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_fails_before_any_write(lab, ansible_module, case, change, message):
    key = make_keypair(lab.keys, f"bad-{case.replace(' ', '-')}", "ed25519")
    args = {"resource_group": RG, "location": LOCATION, "name": "bad-1", "subnet_id": lab.subnet_id,
            "ssh_public_key": key.public_text}
    if change == "rsa1024":
        weak = lab.keys / "weak-rsa1024"
        if not weak.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(weak)], check=True)
        change = {"ssh_public_key": weak.with_suffix(".pub").read_text()}
    args.update(change)
    args = {k: v for k, v in args.items() if v is not None}
    since = time.time()
    run = ansible_module("azure_vm", args)
    assert run.failed
    assert message in run.result["msg"] and "\n" not in run.result["msg"], run.result["msg"]
    if case == "missing subnet":
        assert run.result["msg"].endswith("does not exist")
    assert lab.writes_since(since) == []


def test_secret_never_reaches_the_output(lab, ansible_module):
    secret = lab.emu.env()["AZURE_CLIENT_SECRET"]
    run = ansible_module("azure_vm_info", {"resource_group": RG, "secret": secret}, verbosity=3)
    assert not run.failed, run.result
    assert secret not in run.output
