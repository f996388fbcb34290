"""azure_vm planning: which ARM writes a desired state leads to, and what is refused locally.

No network. What exists is what ARM answered for two VMs azure_vm made in the lab's emulator
(data/arm_recorded.json, checked against Azure's published examples by test_arm_recorded.py),
never a body of the module's own: a reader and a writer that agreed on a wrong field would fail.
"""

from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from ansible_collections.sshca.azure.plugins.module_utils import _azure_vm as azvm
from ansible_collections.sshca.azure.plugins.module_utils import _azure_vm_desired as desired

DATA = json.loads((Path(__file__).parent / "data" / "arm_recorded.json").read_text())
SUB, RG, SUBNET = DATA["subscription_id"], DATA["resource_group"], DATA["subnet_id"]


class FakeSession:
    """Only what planning touches: ids. Clients are never called while planning."""

    subscription_id = SUB
    compute = network = None

    def resource_id(self, resource_group, provider_type, name):
        return f"/subscriptions/{SUB}/resourceGroups/{resource_group}/providers/{provider_type}/{name}"


def keygen(tmp_path, key_type="ed25519", bits=None, name="id"):
    path = tmp_path / name
    argv = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "me@example", "-f", str(path)]
    if bits:
        argv += ["-b", str(bits)]
    subprocess.run(argv, check=True)
    return path


@pytest.fixture
def ssh_key(tmp_path):
    return keygen(tmp_path).with_suffix(".pub").read_text()


def params(**overrides):
    base = {"resource_group": RG, "state": "present", "name": None, "vms": None, "location": DATA["location"],
            "subnet_id": SUBNET, "concurrency": 5, "timeout": 60}
    base.update({k: None for k in desired.VM_OPTION_SPEC if k not in base})
    base.update(overrides)
    return base


def specs(**overrides):
    return desired.desired_vms(FakeSession(), params(**overrides))


def as_recorded(name, **changes):
    """The spec of a recorded VM: the options it was made with (data/arm_recorded.json), then `changes`."""
    [spec] = specs(name=name, **dict(DATA[name]["options"], **changes))
    return spec


def recorded(name, **edits):
    """What ARM answered for the recorded VM (its VM, NIC and public IP), with `edits` (dotted
    paths into the VM) applied: a copy, so tests can change it."""
    entry = copy.deepcopy(DATA[name])
    for dotted, value in edits.items():
        target = entry["vm"]
        *path, last = dotted.split(".")
        for part in path:
            target = target[part]
        target[last] = value
    return azvm.Actual(entry["vm"], entry["nic"], entry["pip"])


def plan(spec, actual):
    return azvm.plan_present(FakeSession(), spec, actual, {})


def writes(p):
    return [(s.method, s.id.rsplit("/", 2)[-2], s.change) for s in p.steps]


def test_create_is_three_writes_in_dependency_order(ssh_key):
    [spec] = specs(name="web-1", ssh_public_key=ssh_key)
    p = plan(spec, azvm.Actual())
    assert [(m, kind) for m, kind, _change in writes(p)] == [
        ("PUT", "publicIPAddresses"), ("PUT", "networkInterfaces"), ("PUT", "virtualMachines")]


def test_create_without_public_ip_is_two_writes(ssh_key):
    [spec] = specs(name="web-1", ssh_public_key=ssh_key, public_ip=False)
    assert [kind for _m, kind, _c in writes(plan(spec, azvm.Actual()))] == ["networkInterfaces", "virtualMachines"]


def test_vm_body_disables_passwords_and_sends_one_openssh_line(tmp_path):
    rfc4716 = subprocess.run(["ssh-keygen", "-e", "-f", str(keygen(tmp_path, "rsa", 2048).with_suffix(".pub"))],
                             capture_output=True, text=True, check=True).stdout
    [spec] = specs(name="web-1", ssh_public_key=rfc4716, admin_username="ops")
    linux = azvm.vm_body(spec, desired.desired_summary(spec, None))["properties"]["osProfile"]["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    [key] = linux["ssh"]["publicKeys"]
    assert key["path"] == "/home/ops/.ssh/authorized_keys"
    assert key["keyData"].startswith("ssh-rsa AAAA") and "\n" not in key["keyData"]
    # The line sent is the same key ssh-keygen converted from.
    fingerprint = subprocess.run(["ssh-keygen", "-lf", "-"], input=key["keyData"], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
    assert fingerprint == spec.ssh_key.fingerprint()


@pytest.mark.parametrize("name", ["web-1", "db-1"])
def test_a_recorded_vm_asked_for_again_plans_no_write(name):
    p = plan(as_recorded(name), recorded(name))
    assert (p.steps, p.not_changeable, p.error) == ([], [], None)
    assert p.before == p.after


def test_same_key_in_rfc4716_form_is_no_change(tmp_path):
    public = tmp_path / "key.pub"
    public.write_text(DATA["web-1"]["options"]["ssh_public_key"] + "\n")
    rfc4716 = subprocess.run(["ssh-keygen", "-e", "-f", str(public)], capture_output=True, text=True,
                             check=True).stdout
    assert plan(as_recorded("web-1", ssh_public_key=rfc4716), recorded("web-1")).steps == []


def test_tag_change_is_one_patch_of_tags_only():
    p = plan(as_recorded("web-1", tags={"enrolled": "yes"}), recorded("web-1"))
    assert [(m, kind) for m, kind, _change in writes(p)] == [("PATCH", "virtualMachines")]
    merged = {"role": "web", "a=b": "c=d", "enrolled": "yes"}  # append_tags merges with the VM's
    assert p.after["tags"] == merged
    assert p.steps[0].body == {"tags": merged}


def test_exact_tags_replace():
    p = plan(as_recorded("web-1", tags={"enrolled": "yes"}, append_tags=False), recorded("web-1"))
    assert p.after["tags"] == {"enrolled": "yes"} and p.steps[0].body == {"tags": {"enrolled": "yes"}}


def test_contained_tags_with_append_are_no_change():
    assert plan(as_recorded("web-1", tags={"role": "web"}), recorded("web-1")).steps == []


@pytest.mark.parametrize(("change", "field"), [
    ({"image": "ubuntu2404"}, "image"),
    ({"admin_username": "ops"}, "admin_username"),
    ({"zone": "3"}, "zone"),
    ({"os_disk": {"size_gb": 64}}, "os_disk.size_gb"),
    ({"os_disk": {"storage_account_type": "Standard_LRS"}}, "os_disk.storage_account_type"),
    ({"location": "northeurope"}, "location"),
])
def test_not_changeable_in_place_is_reported_not_written(change, field):
    p = plan(as_recorded("web-1", **change), recorded("web-1"))
    assert p.not_changeable == [field]
    assert p.steps == []


def test_location_is_compared_without_case_or_spaces():
    assert plan(as_recorded("web-1", location="West Europe"), recorded("web-1")).steps == []


def test_new_key_is_reported_not_written(ssh_key):
    p = plan(as_recorded("web-1", ssh_public_key=ssh_key, tags={"x": "1"}), recorded("web-1"))
    assert p.not_changeable == ["ssh_keys"]
    assert [(m, kind) for m, kind, _change in writes(p)] == [("PATCH", "virtualMachines")]  # the tag still applies


@pytest.mark.parametrize(("name", "change", "patch"), [
    ("web-1", {"size": "Standard_D2s_v5"}, {"properties": {"hardwareProfile": {"vmSize": "Standard_D2s_v5"}}}),
    ("web-1", {"identity": "system"}, {"identity": {"type": "SystemAssigned"}}),
    ("db-1", {"identity": "none"}, {"identity": {"type": "None"}}),
    ("db-1", {"os_disk": {"delete_option": "Delete"}},
     {"properties": {"storageProfile": {"osDisk": {"deleteOption": "Delete"}}}}),
])
def test_what_azure_changes_on_the_vm_is_one_patch(name, change, patch):
    p = plan(as_recorded(name, **change), recorded(name))
    assert [(m, kind) for m, kind, _c in writes(p)] == [("PATCH", "virtualMachines")]
    assert p.steps[0].body == patch and p.not_changeable == []


def test_dropping_the_public_ip_detaches_then_deletes_it():
    p = plan(as_recorded("web-1", public_ip=False, dns_label=None), recorded("web-1"))
    assert [(m, kind) for m, kind, _c in writes(p)] == [("PUT", "networkInterfaces"), ("DELETE", "publicIPAddresses")]
    [config] = p.steps[0].body["properties"]["ipConfigurations"]
    assert "publicIPAddress" not in config["properties"]


def test_adding_a_public_ip_creates_it_in_the_vms_zone_then_attaches_it():
    p = plan(as_recorded("db-1", public_ip=True), recorded("db-1"))
    assert [(m, kind) for m, kind, _c in writes(p)] == [("PUT", "publicIPAddresses"), ("PUT", "networkInterfaces")]
    pip, nic = p.steps[0].body, p.steps[1].body
    assert (pip["location"], pip["zones"]) == ("westeurope", ["2"])
    [config] = nic["properties"]["ipConfigurations"]
    assert config["properties"]["publicIPAddress"]["id"].endswith("/publicIPAddresses/db-1-pip")
    assert nic["properties"]["networkSecurityGroup"]["id"] == DATA["db-1"]["options"]["nsg_id"]  # kept


def test_dns_label_change_is_one_put_of_the_public_ip_as_it_is():
    p = plan(as_recorded("web-1", dns_label="web-1-new"), recorded("web-1"))
    assert [(m, kind) for m, kind, _c in writes(p)] == [("PUT", "publicIPAddresses")]
    body = p.steps[0].body
    assert body["properties"]["dnsSettings"] == {"domainNameLabel": "web-1-new"}
    assert (body["location"], body["zones"]) == ("westeurope", ["1"])  # the public IP's own zone


def test_subnet_in_another_network_is_not_changeable():
    p = plan(as_recorded("web-1", subnet_id=SUBNET.replace("/vnet/", "/vnet2/")), recorded("web-1"))
    assert p.not_changeable == ["subnet_id (other virtual network)"] and p.steps == []


def test_nic_update_keeps_what_cannot_change_in_place():
    """An NSG change on a NIC whose subnet is asked to move to another VNet (not possible in
    place) must not send the other VNet's subnet, nor re-point the NIC at another public IP."""
    sent = {}

    class Interfaces:
        def begin_create_or_update(self, resource_group, name, body):
            sent[name] = body

    class Session(FakeSession):
        network = SimpleNamespace(network_interfaces=Interfaces())

    nsg = DATA["db-1"]["options"]["nsg_id"]
    spec = as_recorded("web-1", subnet_id=SUBNET.replace("/vnet/", "/vnet2/"), nsg_id=nsg)
    actual = recorded("web-1")
    shared_pip = actual.pip["id"].replace("web-1-pip", "shared-pip")
    actual.nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"] = shared_pip
    actual.pip["id"] = shared_pip
    p = azvm.plan_present(Session(), spec, actual, {})
    assert p.not_changeable == ["subnet_id (other virtual network)"]
    [step] = [s for s in p.steps if "networkInterfaces" in s.id]
    step.run()
    [config] = sent["web-1-nic"]["properties"]["ipConfigurations"]
    assert config["properties"]["subnet"]["id"] == SUBNET
    assert config["properties"]["publicIPAddress"]["id"] == shared_pip
    assert sent["web-1-nic"]["properties"]["networkSecurityGroup"]["id"] == nsg


def test_latest_image_matches_any_deployed_version():
    deployed = DATA["web-1"]["vm"]["properties"]["storageProfile"]["imageReference"]
    assert deployed["exactVersion"] != "latest"
    spec = as_recorded("web-1", image={"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy",
                                       "sku": "22_04-lts-gen2"})
    assert plan(spec, recorded("web-1")).steps == []
    pinned = as_recorded("web-1", image=dict(spec.wanted["image"], version="22.04.199901010"))
    assert plan(pinned, recorded("web-1")).not_changeable == ["image"]


def test_delete_removes_only_what_carries_the_marker():
    [absent] = specs(name="web-1", state="absent")
    ours = [(m, k) for m, k, _c in writes(azvm.plan_absent(FakeSession(), absent, recorded("web-1")))]
    assert ours == [("DELETE", "virtualMachines"), ("DELETE", "disks"), ("DELETE", "networkInterfaces"),
                    ("DELETE", "publicIPAddresses")]
    foreign = recorded("web-1")
    foreign.nic["tags"] = {}
    foreign.pip["tags"] = {desired.MARKER_TAG: "another-vm"}
    theirs = [k for _m, k, _c in writes(azvm.plan_absent(FakeSession(), absent, foreign))]
    assert theirs == ["virtualMachines", "disks"]


def test_a_disk_azure_detaches_is_left_as_azure_leaves_it():
    [absent] = specs(name="db-1", state="absent")
    assert [k for _m, k, _c in writes(azvm.plan_absent(FakeSession(), absent, recorded("db-1")))] == [
        "virtualMachines", "networkInterfaces"]


def test_nothing_there_plans_no_delete():
    [absent] = specs(name="web-1", state="absent")
    assert azvm.plan_absent(FakeSession(), absent, azvm.Actual()).steps == []


def test_leftover_nic_of_someone_else_stops_create():
    leftover = recorded("web-1")
    leftover.nic["tags"] = {}
    p = plan(as_recorded("web-1"), azvm.Actual(None, leftover.nic, None))
    assert p.steps == [] and "was not made by this module" in p.error


def test_leftovers_of_our_own_interrupted_create_are_rewritten():
    leftover = recorded("web-1")
    p = plan(as_recorded("web-1"), azvm.Actual(None, leftover.nic, leftover.pip))
    assert [(m, k) for m, k, _c in writes(p)] == [
        ("PUT", "publicIPAddresses"), ("PUT", "networkInterfaces"), ("PUT", "virtualMachines")]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"name": "bad_name!"}, "^name: 'bad_name!' must be"),
    ({"name": "-web"}, "must be 1-64 letters"),
    ({"image": "ubuntu1804"}, "image: 'ubuntu1804' is not a preset"),
    ({"image": {"publisher": "Canonical"}}, "missing: offer, sku"),
    ({"ssh_public_key": "ssh-ed25519 AAAA-not-base64"}, "ssh_public_key"),
    ({"subnet_id": "/subscriptions/x/hosts"}, "is not a subnet resource id"),
    ({"admin_username": "root"}, "^web-1: admin_username: 'root' is a name Azure reserves"),
    ({"admin_username": "backup"}, "^web-1: admin_username: 'backup' is a name Azure reserves"),
    ({"tags": {"a/b": "x"}}, "^web-1: tags: tag name 'a/b'"),
    ({"tags": {desired.MARKER_TAG: "x"}}, "reserved"),
    ({"dns_label": "Web_1"}, "dns_label"),
])
def test_bad_input_is_refused_locally_with_the_input_named(ssh_key, overrides, message):
    args = {"name": "web-1", "ssh_public_key": ssh_key}
    args.update(overrides)
    with pytest.raises(desired.VMInputError, match=message) as err:
        specs(**args)
    assert "\n" not in str(err.value)


def test_tags_only_update_of_an_existing_vm_is_one_patch_then_nothing():
    # db-1 has a non-default size, user and no public IP: a call with only its name and tags must
    # not read the left-out options as their defaults (no resize, nothing "not changeable").
    [tags_only] = specs(name="db-1", subnet_id=None, location=None, tags={"sshca-enrolled": "2026-11-25"})
    assert tags_only.missing == (desired.CreationInput.SSH_KEY, desired.CreationInput.SUBNET)
    vm = recorded("db-1")
    p = plan(tags_only, vm)
    assert writes(p) == [("PATCH", "virtualMachines", "update VM (tags)")]
    assert p.not_changeable == []
    assert p.steps[0].body == {"tags": {"sshca-enrolled": "2026-11-25"}}

    vm.vm["tags"] = p.steps[0].body["tags"]
    again = plan(tags_only, vm)
    assert again.steps == [] and again.not_changeable == []


def test_tags_only_update_with_exact_tags_keeps_nothing_else():
    [exact] = specs(name="web-1", subnet_id=None, tags={"only": "this"}, append_tags=False)
    p = plan(exact, recorded("web-1"))
    assert [s.body for s in p.steps] == [{"tags": {"only": "this"}}]


@pytest.mark.parametrize(("overrides", "missing"), [
    ({"subnet_id": None}, "needs ssh_public_key and subnet_id (or vnet_name and subnet_name)"),
    ({"subnet_id": SUBNET}, "needs ssh_public_key"),
    ({"subnet_id": None, "with_key": True}, "needs subnet_id (or vnet_name and subnet_name)"),
])
def test_absent_vm_without_creation_inputs_fails_naming_them(ssh_key, overrides, missing):
    with_key = overrides.pop("with_key", False)
    [spec] = specs(name="web-1", tags={"a": "b"}, ssh_public_key=ssh_key if with_key else None, **overrides)
    p = plan(spec, azvm.Actual())
    assert p.steps == []
    assert p.error == f"web-1: VM web-1 does not exist in resource group {RG}, and creating it {missing}"


def test_vm_id_gives_subscription_group_and_name():
    vm_id = f"/subscriptions/{SUB}/resourceGroups/rg-other/providers/Microsoft.Compute/virtualMachines/web-9"
    resolved = desired.apply_vm_id(params(id=vm_id, resource_group=None))
    assert (resolved["subscription_id"], resolved["resource_group"], resolved["name"]) == (SUB, "rg-other", "web-9")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"id": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n"},
     "is not a virtual machine resource id"),
    ({"id": "web-1"}, "is not a virtual machine resource id"),
    ({"id": f"/subscriptions/{SUB}/resourceGroups/rg-b/providers/Microsoft.Compute/virtualMachines/v",
      "resource_group": "rg-a"}, "is in resource_group rg-b, but resource_group is rg-a"),
    ({"id": "/subscriptions/other/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v",
      "resource_group": None, "subscription_id": SUB}, "is in subscription_id other, but subscription_id is"),
])
def test_bad_vm_id_is_refused_with_the_input_named(overrides, message):
    with pytest.raises(desired.VMInputError, match=message) as err:
        desired.apply_vm_id(params(**overrides))
    assert "\n" not in str(err.value)


def test_rsa_1024_is_refused(tmp_path):
    weak = keygen(tmp_path, "rsa", 1024).with_suffix(".pub").read_text()
    with pytest.raises(desired.VMInputError, match=r"vms\[1\] \(b\): ssh_public_key: is a 1024-bit RSA key"):
        specs(vms=[{"name": "a"}, {"name": "b", "ssh_public_key": weak}],
              ssh_public_key=keygen(tmp_path, name="ok").with_suffix(".pub").read_text())


def test_ecdsa_is_refused_as_azure_would(tmp_path):
    ecdsa = keygen(tmp_path, "ecdsa").with_suffix(".pub").read_text()
    with pytest.raises(desired.VMInputError, match="Azure takes only ssh-rsa and ssh-ed25519 keys"):
        specs(name="web-1", ssh_public_key=ecdsa)


def test_vms_items_override_defaults_and_are_type_checked(ssh_key):
    a, b = specs(ssh_public_key=ssh_key, size="Standard_B1s",
                 vms=[{"name": "a"}, {"name": "b", "size": "Standard_D2s_v5", "public_ip": "no"}])
    assert (a.value("size"), a.value("public_ip"), a.value("admin_username")) == ("Standard_B1s", True, "azureuser")
    assert (b.value("size"), b.value("public_ip")) == ("Standard_D2s_v5", False)
    with pytest.raises(desired.VMInputError, match=r"vms\[0\].*sizee"):
        specs(ssh_public_key=ssh_key, vms=[{"name": "a", "sizee": "x"}])
    with pytest.raises(desired.VMInputError, match="listed twice"):
        specs(ssh_public_key=ssh_key, vms=[{"name": "a"}, {"name": "A"}])


@pytest.mark.parametrize(("given", "expected"), [
    ({"role": "web", "any": None}, [("role", "web"), ("any", None)]),
    (["role:web", "enrolled"], [("role", "web"), ("enrolled", None)]),
    (None, []),
])
def test_tag_filter_forms(given, expected):
    assert azvm.parse_tag_filter(given) == expected


def test_tags_merged_past_azures_limit_fail_before_any_write():
    p = plan(as_recorded("web-1", tags={f"new{i}": "y" for i in range(49)}), recorded("web-1"))
    assert p.steps == []
    assert p.error == "web-1: tags (with the VM's own): has 51 tags; Azure allows at most 50 per resource"


def test_vms_are_created_with_boot_diagnostics_on_managed_storage(ssh_key):
    [spec] = specs(name="web-1", ssh_public_key=ssh_key)
    body = azvm.vm_body(spec, desired.desired_summary(spec, None))
    assert body["properties"]["diagnosticsProfile"] == {"bootDiagnostics": {"enabled": True}}  # no storageUri


def test_boot_diagnostics_off_is_turned_on_with_one_patch():
    actual = recorded("web-1", **{"properties.diagnosticsProfile": {"bootDiagnostics": {"enabled": False}}})
    p = plan(as_recorded("web-1"), actual)
    assert writes(p) == [("PATCH", "virtualMachines", "update VM (boot_diagnostics)")]
    assert p.steps[0].body == {"properties": {"diagnosticsProfile": {"bootDiagnostics": {"enabled": True}}}}
    # A tags-only update leaves the VM's boot diagnostics as they are.
    [tags_only] = specs(name="web-1", subnet_id=None, tags={"a": "b"})
    assert [s.body for s in plan(tags_only, actual).steps] == [{"tags": {"role": "web", "a=b": "c=d", "a": "b"}}]


def test_each_write_sends_its_own_body(ssh_key):
    """What each step hands the SDK is the body built for that resource (closures bind late)."""
    sent = []

    class Client:
        def __getattr__(self, operation):
            return lambda *args: sent.append((operation, args[-1]))

    class Session(FakeSession):
        network = SimpleNamespace(public_ip_addresses=Client(), network_interfaces=Client())
        compute = SimpleNamespace(virtual_machines=Client())

    [spec] = specs(name="web-1", ssh_public_key=ssh_key)
    p = azvm.plan_present(Session(), spec, azvm.Actual(), {})
    for step in p.steps:
        step.run()
    assert [body for _op, body in sent] == [step.body for step in p.steps]
    pip, nic, vm = (body for _op, body in sent)
    assert pip["sku"]["name"] == "Standard" and "ipConfigurations" in nic["properties"]
    assert vm["properties"]["hardwareProfile"]["vmSize"] == "Standard_B2s"


class Finished:
    """A write's answer (what `polling=False` gives): done at once, holding the resource ARM returned."""

    def __init__(self, result):
        self._result = result

    def wait(self, timeout=None):
        pass

    def done(self):
        return True

    def result(self):
        return self._result


class Recording:
    """An SDK operations group: each write answers with the resource in `state`; every read is
    counted; a list shows the resources as `listed` returns them."""

    def __init__(self, reads, written, listed=list):
        self.reads, self.written, self.listed = reads, written, listed
        self.polling = []

    def get(self, resource_group, name, **kwargs):
        self.reads.append(("get", name))
        return copy.deepcopy(DATA["web-1"]["vm"])  # running

    def list(self, resource_group, **kwargs):
        self.reads.append(("list", kwargs.get("expand")))
        return self.listed()

    def __getattr__(self, operation):
        def write(*args, polling=True):
            self.polling.append(polling)
            return Finished(self.written(args[-1]))
        return write


def answered(state, **fields):
    """A write's answer: the body sent, with ARM's id and provisioningState."""
    return lambda body: copy.deepcopy(dict(body, properties=dict(body.get("properties") or {},
                                                                 provisioningState=state), **fields))


def applied(spec, actual, vm_state="Succeeded"):
    """Plan and apply with clients whose writes answer at once; (what exists after, reads, polling
    asked of each write). A VM's create answers `vm_state`; the VM list shows it running."""
    reads = []
    vm_id = DATA["web-1"]["vm"]["id"]
    clients = {
        "vm": Recording(reads, answered(vm_state, id=vm_id, name="web-1"),
                        listed=lambda: [copy.deepcopy(DATA["web-1"]["vm"])]),
        "pip": Recording(reads, answered("Succeeded", id="pip")),
        "nic": Recording(reads, answered("Succeeded", id="nic")),
    }

    class Session(FakeSession):
        operations = SimpleNamespace(add=lambda *args: None)
        compute = SimpleNamespace(virtual_machines=clients["vm"])
        network = SimpleNamespace(public_ip_addresses=clients["pip"], network_interfaces=clients["nic"])

    session = Session()
    result = azvm.apply_plan(session, azvm.plan_present(session, spec, actual, {}), timeout=60)
    return result, reads, [p for c in clients.values() for p in c.polling]


def test_a_patch_is_not_followed_by_a_read():
    actual, reads, polling = applied(as_recorded("web-1", tags={"enrolled": "yes"}), recorded("web-1"))
    assert reads == [] and polling == [False]
    facts = azvm.report(actual)
    assert facts["tags"] == {"role": "web", "a=b": "c=d", "enrolled": "yes"}  # what the PATCH returned
    assert facts["power_state"] == "running" and facts["public_ip"] == DATA["web-1"]["pip"]["properties"]["ipAddress"]


def test_a_create_reads_only_one_vm_list_to_wait_until_it_runs():
    actual, reads, polling = applied(as_recorded("web-1"), azvm.Actual(), vm_state="Creating")
    assert reads == [("list", "instanceView")]  # the instance views that say it runs; no operation polled
    assert polling == [False, False, False]
    assert azvm.report(actual)["power_state"] == "running"
    assert actual.nic["id"] == "nic" and actual.pip["id"] == "pip"  # the created ones, as their PUTs returned


def test_failed_provisioning_is_reported_with_what_the_instance_view_says():
    failed = copy.deepcopy(DATA["web-1"]["vm"])
    failed["properties"]["provisioningState"] = "Failed"
    failed["properties"]["instanceView"] = {"statuses": [
        {"code": "ProvisioningState/failed/OSProvisioningTimedOut", "level": "Error", "message": "OS never booted"}]}
    lists = azvm.ResourceLists(SimpleNamespace(
        compute=SimpleNamespace(virtual_machines=SimpleNamespace(list=lambda rg, **kw: [failed])),
        network=SimpleNamespace(network_interfaces=None, public_ip_addresses=None)))
    creating = dict(failed, properties={"provisioningState": "Creating"})
    with pytest.raises(RuntimeError, match=r"^create VM: provisioningState Failed: OS never booted$"):
        lists.until_provisioned("vm", creating, time.monotonic() + 5, "create VM", running=True)


def test_threads_waiting_together_share_one_list_a_round():
    calls = []
    gate = threading.Event()

    def slow_list(rg):
        calls.append(rg)
        gate.wait(1)
        return [{"id": f"/subscriptions/s/resourceGroups/{rg}/providers/Microsoft.Network/networkInterfaces/n{i}",
                 "properties": {"provisioningState": "Succeeded"}} for i in range(8)]

    lists = azvm.ResourceLists(SimpleNamespace(
        compute=SimpleNamespace(virtual_machines=None),
        network=SimpleNamespace(network_interfaces=SimpleNamespace(list=slow_list), public_ip_addresses=None)))
    written = [{"id": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n{i}",
                "properties": {"provisioningState": "Updating"}} for i in range(8)]
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        waits = [pool.submit(lists.until_provisioned, "nic", w, start + 30, "create NIC") for w in written]
        time.sleep(0.2)  # every thread asks while the first list is under way
        gate.set()
        found = [w.result() for w in waits]
    assert [f["properties"]["provisioningState"] for f in found] == ["Succeeded"] * 8
    assert len(calls) <= 2  # the list under way, and at most one asked after it had started


def test_azure_vm_info_reads_each_vm_once():
    reads = []

    class VirtualMachines:
        def get(self, resource_group, name, expand=None):
            reads.append((name, expand))
            return copy.deepcopy(DATA[name]["vm"])

        def list(self, resource_group):
            return [{k: v for k, v in DATA[n]["vm"].items() if k != "properties"} for n in ("web-1", "db-1")]

    class Network:
        def get(self, resource_group, name):
            kind = "pip" if name.endswith("-pip") else "nic"
            return copy.deepcopy(DATA[name.rsplit("-", 1)[0]][kind])

    class Session(FakeSession):
        compute = SimpleNamespace(virtual_machines=VirtualMachines())
        network = SimpleNamespace(network_interfaces=Network(), public_ip_addresses=Network())

    one = azvm.info(Session(), {"resource_group": RG, "name": "web-1"})
    assert reads == [("web-1", "instanceView")] and one[0]["power_state"] == "running"
    reads.clear()
    both = azvm.info(Session(), {"resource_group": RG})
    assert sorted(reads) == [("db-1", "instanceView"), ("web-1", "instanceView")]
    assert [vm["name"] for vm in both] == ["db-1", "web-1"]
    assert azvm.info(Session(), {"resource_group": RG, "name": "web-1", "tags": {"role": "db"}}) == []
