"""azure_vm planning: which ARM writes a desired state leads to, and what is refused locally.

No network: specs and plans are built from ARM-shaped dicts, as the emulator or Azure return them.
"""

from __future__ import annotations

import copy
import subprocess
from types import SimpleNamespace

import pytest
from ansible_collections.sshca.azure.plugins.module_utils import _azure_vm as azvm

SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-test"
SUBNET = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/hosts"


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
    base = {"resource_group": RG, "state": "present", "name": None, "vms": None, "location": "westeurope",
            "subnet_id": SUBNET, "concurrency": 5, "timeout": 60}
    base.update({k: None for k in azvm.VM_OPTION_SPEC if k not in base})
    base.update(overrides)
    return base


def specs(**overrides):
    return azvm.build_specs(FakeSession(), params(**overrides))


def existing(spec, **changes):
    """ARM's view of a VM made from `spec` (with its NIC and public IP), then `changes` applied."""
    vm = azvm.vm_body(spec, "westeurope", dict(spec.tags))
    vm.update(id=spec.vm_id, name=spec.name)
    vm["properties"]["storageProfile"]["osDisk"].update(diskSizeGB=30,
                                                        managedDisk={"storageAccountType": "Premium_LRS"})
    vm["properties"]["storageProfile"]["imageReference"]["exactVersion"] = "22.04.202411010"
    nic = azvm.nic_body(spec, "westeurope", True, None)
    nic.update(id=spec.nic_id, name=spec.name + "-nic")
    pip = azvm.pip_body(spec, "westeurope")
    pip.update(id=spec.pip_id, name=spec.name + "-pip")
    for dotted, value in changes.items():
        target = vm
        *path, last = dotted.split(".")
        for part in path:
            target = target[part]
        target[last] = value
    return azvm.Actual(vm, nic, pip)


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
    linux = azvm.vm_body(spec, "westeurope", {})["properties"]["osProfile"]["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    [key] = linux["ssh"]["publicKeys"]
    assert key["path"] == "/home/ops/.ssh/authorized_keys"
    assert key["keyData"].startswith("ssh-rsa AAAA") and "\n" not in key["keyData"]
    # The line sent is the same key ssh-keygen converted from.
    fingerprint = subprocess.run(["ssh-keygen", "-lf", "-"], input=key["keyData"], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
    assert fingerprint == spec.ssh_key.fingerprint()


def test_same_state_plans_no_write(ssh_key):
    [spec] = specs(name="web-1", ssh_public_key=ssh_key, tags={"role": "web"})
    p = plan(spec, existing(spec))
    assert p.steps == [] and p.not_changeable == []


def test_same_key_in_rfc4716_form_is_no_change(tmp_path):
    public = keygen(tmp_path).with_suffix(".pub")
    rfc4716 = subprocess.run(["ssh-keygen", "-e", "-f", str(public)], capture_output=True, text=True,
                             check=True).stdout
    [given_openssh] = specs(name="web-1", ssh_public_key=public.read_text())
    [given_rfc4716] = specs(name="web-1", ssh_public_key=rfc4716)
    assert plan(given_rfc4716, existing(given_openssh)).steps == []


def test_tag_change_is_one_patch_of_tags_only(ssh_key):
    [old] = specs(name="web-1", ssh_public_key=ssh_key, tags={"role": "web"})
    [new] = specs(name="web-1", ssh_public_key=ssh_key, tags={"enrolled": "yes"})
    p = plan(new, existing(old))
    assert [(m, kind) for m, kind, _change in writes(p)] == [("PATCH", "virtualMachines")]
    assert p.after["tags"] == {"role": "web", "enrolled": "yes"}  # append_tags merges
    assert p.steps[0].body == {"tags": {"role": "web", "enrolled": "yes"}}


def test_exact_tags_replace(ssh_key):
    [old] = specs(name="web-1", ssh_public_key=ssh_key, tags={"role": "web"})
    [new] = specs(name="web-1", ssh_public_key=ssh_key, tags={"enrolled": "yes"}, append_tags=False)
    assert plan(new, existing(old)).after["tags"] == {"enrolled": "yes"}


def test_contained_tags_with_append_are_no_change(ssh_key):
    [old] = specs(name="web-1", ssh_public_key=ssh_key, tags={"role": "web", "team": "a"})
    [new] = specs(name="web-1", ssh_public_key=ssh_key, tags={"role": "web"})
    assert plan(new, existing(old)).steps == []


@pytest.mark.parametrize(("change", "field"), [
    ({"image": "ubuntu2404"}, "image"),
    ({"admin_username": "ops"}, "admin_username"),
    ({"zone": "2"}, "zone"),
    ({"os_disk": {"size_gb": 64}}, "os_disk.size_gb"),
])
def test_not_changeable_in_place_is_reported_not_written(ssh_key, change, field):
    [old] = specs(name="web-1", ssh_public_key=ssh_key, image="ubuntu2204")
    [new] = specs(**{"name": "web-1", "ssh_public_key": ssh_key, "image": "ubuntu2204", **change})
    p = plan(new, existing(old))
    assert p.not_changeable == [field]
    assert p.steps == []


def test_new_key_is_reported_not_written(tmp_path):
    first = keygen(tmp_path, name="a").with_suffix(".pub").read_text()
    second = keygen(tmp_path, name="b").with_suffix(".pub").read_text()
    [old] = specs(name="web-1", ssh_public_key=first)
    [new] = specs(name="web-1", ssh_public_key=second, tags={"x": "1"})
    p = plan(new, existing(old))
    assert p.not_changeable == ["ssh_keys"]
    assert [(m, kind) for m, kind, _change in writes(p)] == [("PATCH", "virtualMachines")]  # the tag still applies


def test_size_change_is_patch(ssh_key):
    [old] = specs(name="web-1", ssh_public_key=ssh_key)
    [new] = specs(name="web-1", ssh_public_key=ssh_key, size="Standard_D2s_v5")
    p = plan(new, existing(old))
    assert [(m, c) for m, _k, c in writes(p)] == [("PATCH", "update VM (size)")]


def test_dropping_the_public_ip_detaches_then_deletes_it(ssh_key):
    [old] = specs(name="web-1", ssh_public_key=ssh_key)
    [new] = specs(name="web-1", ssh_public_key=ssh_key, public_ip=False)
    assert [(m, kind) for m, kind, _c in writes(plan(new, existing(old)))] == [
        ("PUT", "networkInterfaces"), ("DELETE", "publicIPAddresses")]


def test_adding_a_public_ip_creates_then_attaches_it(ssh_key):
    [old] = specs(name="web-1", ssh_public_key=ssh_key, public_ip=False)
    [new] = specs(name="web-1", ssh_public_key=ssh_key)
    actual = existing(old)
    actual = azvm.Actual(actual.vm, azvm.nic_body(old, "westeurope", False, None) | {"id": old.nic_id}, None)
    assert [(m, kind) for m, kind, _c in writes(plan(new, actual))] == [
        ("PUT", "publicIPAddresses"), ("PUT", "networkInterfaces")]


def test_subnet_in_another_network_is_not_changeable(ssh_key):
    [old] = specs(name="web-1", ssh_public_key=ssh_key)
    [new] = specs(name="web-1", ssh_public_key=ssh_key, subnet_id=SUBNET.replace("/vnet/", "/vnet2/"))
    p = plan(new, existing(old))
    assert p.not_changeable == ["subnet_id (other virtual network)"] and p.steps == []


def test_nic_update_keeps_what_cannot_change_in_place(ssh_key):
    """An NSG change on a NIC whose subnet is asked to move to another VNet (not possible in
    place) must not send the other VNet's subnet, nor re-point the NIC at another public IP."""
    sent = {}

    class Interfaces:
        def begin_create_or_update(self, resource_group, name, body):
            sent[name] = body

    class Session(FakeSession):
        network = SimpleNamespace(network_interfaces=Interfaces())

    [old] = specs(name="web-1", ssh_public_key=ssh_key)
    nsg = SUBNET.split("/providers/", maxsplit=1)[0] + "/providers/Microsoft.Network/networkSecurityGroups/nsg2"
    [new] = specs(name="web-1", ssh_public_key=ssh_key, subnet_id=SUBNET.replace("/vnet/", "/vnet2/"), nsg_id=nsg)
    actual = existing(old)
    own_pip = actual.pip["id"].replace("web-1-pip", "shared-pip")
    actual = azvm.Actual(actual.vm, actual.nic, actual.pip | {"id": own_pip})
    p = azvm.plan_present(Session(), new, actual, {})
    assert p.not_changeable == ["subnet_id (other virtual network)"]
    [step] = [s for s in p.steps if "networkInterfaces" in s.id]
    step.run()
    [config] = sent["web-1-nic"]["properties"]["ipConfigurations"]
    assert config["properties"]["subnet"]["id"] == SUBNET
    assert config["properties"]["publicIPAddress"]["id"] == own_pip
    assert sent["web-1-nic"]["properties"]["networkSecurityGroup"]["id"] == nsg


def test_latest_image_matches_any_deployed_version(ssh_key):
    [spec] = specs(name="web-1", ssh_public_key=ssh_key, image={"publisher": "canonical",
                                                                "offer": "0001-com-ubuntu-server-jammy",
                                                                "sku": "22_04-lts-gen2"})
    [deployed] = specs(name="web-1", ssh_public_key=ssh_key, image="ubuntu2204")
    assert plan(spec, existing(deployed)).steps == []


def test_delete_removes_only_what_carries_the_marker(ssh_key):
    [spec] = specs(name="web-1", ssh_public_key=ssh_key)
    actual = existing(spec)
    foreign = copy.deepcopy(actual)
    foreign.nic["tags"] = {}
    foreign.pip["tags"] = {azvm.MARKER_TAG: "another-vm"}
    [absent] = specs(name="web-1", state="absent")
    ours = [(m, k) for m, k, _c in writes(azvm.plan_absent(FakeSession(), absent, actual))]
    assert ("DELETE", "virtualMachines") in ours and ("DELETE", "networkInterfaces") in ours
    assert ("DELETE", "publicIPAddresses") in ours
    theirs = [k for _m, k, _c in writes(azvm.plan_absent(FakeSession(), absent, foreign))]
    assert "networkInterfaces" not in theirs and "publicIPAddresses" not in theirs


def test_nothing_there_plans_no_delete():
    [absent] = specs(name="web-1", state="absent")
    assert azvm.plan_absent(FakeSession(), absent, azvm.Actual()).steps == []


def test_leftover_nic_of_someone_else_stops_create(ssh_key):
    [spec] = specs(name="web-1", ssh_public_key=ssh_key)
    actual = existing(spec)
    leftover = azvm.Actual(None, dict(actual.nic, tags={}), None)
    assert "was not made by this module" in plan(spec, leftover).error


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
    ({"tags": {azvm.MARKER_TAG: "x"}}, "reserved"),
    ({"dns_label": "Web_1"}, "dns_label"),
])
def test_bad_input_is_refused_locally_with_the_input_named(ssh_key, overrides, message):
    args = {"name": "web-1", "ssh_public_key": ssh_key}
    args.update(overrides)
    with pytest.raises(azvm.VMInputError, match=message) as err:
        specs(**args)
    assert "\n" not in str(err.value)


def test_tags_only_update_of_an_existing_vm_is_one_patch_then_nothing(ssh_key):
    # A VM made with non-default size, image, user and no public IP: a call with only its name and
    # tags must not read the left-out options as their defaults (no resize, nothing "not changeable").
    [made] = specs(name="web-1", ssh_public_key=ssh_key, size="Standard_D4s_v5", image="ubuntu2204",
                   admin_username="ops", tags={"role": "web"})
    vm = existing(made, **{"properties.hardwareProfile.vmSize": "Standard_D4s_v5"})
    [tags_only] = specs(name="web-1", subnet_id=None, location=None, tags={"sshca-enrolled": "2026-11-25"})
    assert tags_only.missing == ["ssh_public_key", "subnet_id (or vnet_name and subnet_name)"]
    p = plan(tags_only, vm)
    assert writes(p) == [("PATCH", "virtualMachines", "update VM (tags)")]
    assert p.not_changeable == []
    assert p.steps[0].body == {"tags": {"role": "web", "sshca-enrolled": "2026-11-25"}}

    vm.vm["tags"] = p.steps[0].body["tags"]
    again = plan(tags_only, vm)
    assert again.steps == [] and again.not_changeable == []


def test_tags_only_update_with_exact_tags_keeps_nothing_else(ssh_key):
    [made] = specs(name="web-1", ssh_public_key=ssh_key, tags={"role": "web"})
    [exact] = specs(name="web-1", subnet_id=None, tags={"only": "this"}, append_tags=False)
    p = plan(exact, existing(made))
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
    resolved = azvm.apply_vm_id(params(id=vm_id, resource_group=None))
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
    with pytest.raises(azvm.VMInputError, match=message) as err:
        azvm.apply_vm_id(params(**overrides))
    assert "\n" not in str(err.value)


def test_rsa_1024_is_refused(tmp_path):
    weak = keygen(tmp_path, "rsa", 1024).with_suffix(".pub").read_text()
    with pytest.raises(azvm.VMInputError, match=r"vms\[1\] \(b\): ssh_public_key: is a 1024-bit RSA key"):
        specs(vms=[{"name": "a"}, {"name": "b", "ssh_public_key": weak}],
              ssh_public_key=keygen(tmp_path, name="ok").with_suffix(".pub").read_text())


def test_ecdsa_is_refused_as_azure_would(tmp_path):
    ecdsa = keygen(tmp_path, "ecdsa").with_suffix(".pub").read_text()
    with pytest.raises(azvm.VMInputError, match="Azure takes only ssh-rsa and ssh-ed25519 keys"):
        specs(name="web-1", ssh_public_key=ecdsa)


def test_vms_items_override_defaults_and_are_type_checked(ssh_key):
    a, b = specs(ssh_public_key=ssh_key, size="Standard_B1s",
                 vms=[{"name": "a"}, {"name": "b", "size": "Standard_D2s_v5", "public_ip": "no"}])
    assert (a.size, a.public_ip, a.admin_username) == ("Standard_B1s", True, "azureuser")
    assert (b.size, b.public_ip) == ("Standard_D2s_v5", False)
    with pytest.raises(azvm.VMInputError, match=r"vms\[0\].*sizee"):
        specs(ssh_public_key=ssh_key, vms=[{"name": "a", "sizee": "x"}])
    with pytest.raises(azvm.VMInputError, match="listed twice"):
        specs(ssh_public_key=ssh_key, vms=[{"name": "a"}, {"name": "A"}])


@pytest.mark.parametrize(("given", "expected"), [
    ({"role": "web", "any": None}, [("role", "web"), ("any", None)]),
    (["role:web", "enrolled"], [("role", "web"), ("enrolled", None)]),
    (None, []),
])
def test_tag_filter_forms(given, expected):
    assert azvm.parse_tag_filter(given) == expected


def test_tags_merged_past_azures_limit_fail_before_any_write(ssh_key):
    [old] = specs(name="web-1", ssh_public_key=ssh_key, tags={f"old{i}": "x" for i in range(30)})
    [new] = specs(name="web-1", ssh_public_key=ssh_key, tags={f"new{i}": "y" for i in range(30)})
    p = plan(new, existing(old))
    assert p.steps == []
    assert p.error == "web-1: tags (with the VM's own): has 60 tags; Azure allows at most 50 per resource"
