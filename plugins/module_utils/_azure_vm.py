# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure VMs for azure_vm and azure_vm_info: desired state, actual state, plan, concurrent apply.

A run has four phases, and only the last one writes:
1. desired: every VM's options are merged with the top-level ones and checked locally (names,
            image, SSH key, Azure's rules) in _azure_vm_desired; any problem fails the run
            before a request is sent;
2. read:    VM, NIC, public IP, subnet and NSG are read concurrently; where a resource group
            holds several of the VMs, one list per resource type answers for all of them;
3. plan:    desired and actual are compared field by field (its FIELDS table says what each
            option is compared as, its default and what leaving it out means); what Azure cannot
            change in place is reported, not applied;
4. apply:   each VM's steps run in order (public IP, NIC, VM), VMs concurrently in a bounded pool;
            a write's answer is the resource it wrote, and the wait for its provisioning to end
            is one list per resource type and group a round, shared by every VM (ResourceLists),
            not a poll of each operation: reads stay flat as the fleet grows, within ARM's budget.

Resources the module makes carry the tag MARKER_TAG=<vm name> and deterministic names
(<vm>-pip, <vm>-nic, <vm>-osdisk): delete removes exactly those and the VM, nothing else.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from enum import Enum

from ansible_collections.sshca.azure.plugins.module_utils import _azure_rules as rules
from ansible_collections.sshca.azure.plugins.module_utils._azure import arm_error, as_rest, is_not_found
from ansible_collections.sshca.azure.plugins.module_utils._azure_vm_desired import (
    MARKER_TAG,
    VMInputError,
    desired_summary,
    desired_vms,
    in_place,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import SSHKeyError, parse_public_key

# --- reading what is there --------------------------------------------------------------------


def _get(getter, *args, **kwargs):
    """A REST-shaped dict, or None on 404."""
    try:
        return as_rest(getter(*args, **kwargs))
    except Exception as err:  # azure-core raises several types for 404
        if is_not_found(err):
            return None
        raise


def _split(resource_id):
    """(resource group, name) of an ARM id."""
    parts = resource_id.split("/")
    return parts[4], parts[-1]


def _props(resource):
    return (resource or {}).get("properties") or {}


class Actual:
    """VM, NIC and public IP as ARM returns them (REST-shaped dicts, None when absent)."""

    def __init__(self, vm=None, nic=None, pip=None):
        self.vm, self.nic, self.pip = vm, nic, pip


class Getters:
    """One GET per resource (the VM with its instance view)."""

    def __init__(self, session):
        self.session = session

    def vm(self, resource_group, name):
        return _get(self.session.compute.virtual_machines.get, resource_group, name, expand="instanceView")

    def nic(self, resource_id):
        return _get(self.session.network.network_interfaces.get, *_split(resource_id))

    def pip(self, resource_id):
        return _get(self.session.network.public_ip_addresses.get, *_split(resource_id))


def read_actual(session, resource_group, name, nic_id=None, pip_id=None, reader=None):
    """Read one VM, its primary NIC and that NIC's public IP; nic_id/pip_id name the ones we
    would make, read when the VM (or NIC) is absent so leftovers of an interrupted run are found.
    reader: where each resource comes from (Getters: one GET each; ResourceLists: listed)."""
    reader = reader or Getters(session)
    vm = reader.vm(resource_group, name)
    if vm:
        nics = _props(vm).get("networkProfile", {}).get("networkInterfaces") or []
        primary = [n for n in nics if _props(n).get("primary")] or nics
        nic_id = primary[0]["id"] if primary else None
    nic = reader.nic(nic_id) if nic_id else None
    configs = _props(nic).get("ipConfigurations") or []
    nic_pip = (_props(configs[0]).get("publicIPAddress") or {}).get("id") if configs else None
    pip_id = nic_pip or (pip_id if not nic or not vm else None)
    pip = reader.pip(pip_id) if pip_id else None
    return Actual(vm, nic, pip)


PROVISIONING_ENDED = ("succeeded", "failed", "canceled")


class ResourceLists:
    """Many VMs' resources read through one list per resource type and group, shared by threads.

    A view of a (type, resource group) is listed at most once per caller's need: a caller asks
    for a view taken after some moment (its write's answer, or the view it saw last), and the
    first caller to ask lists while the others wait for that same list. Waiting for N writes to
    finish costs one list a round instead of N operation polls (and a GET each at the end).
    A resource outside the listed groups is read with a GET.
    """

    POLL_SECONDS = 1.0

    def __init__(self, session, resource_groups=()):
        self.getters = Getters(session)
        self._session = session
        self._groups = {rg.lower() for rg in resource_groups}
        self._guard = threading.Lock()
        self._locks = {}
        self._views = {}  # (kind, lowercased group): (monotonic time the list was asked, {lowercased id: resource})

    def view(self, kind, resource_group, newer_than=0.0):
        """(when it was listed, {lowercased id: resource}), listed no earlier than newer_than."""
        key = (kind, resource_group.lower())
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            seen = self._views.get(key)
            if seen is None or seen[0] < newer_than:
                asked = time.monotonic()
                listed = {r["id"].lower(): r for r in map(as_rest, self._listing(kind, resource_group))}
                seen = self._views[key] = (asked, listed)
            return seen

    def listed(self, resource_groups):
        """Read these resource groups' resources through lists from now on."""
        self._groups.update(rg.lower() for rg in resource_groups)

    def _listing(self, kind, resource_group):
        if kind == "vm":
            return self._session.compute.virtual_machines.list(resource_group, expand="instanceView")
        network = self._session.network
        return (network.network_interfaces if kind == "nic" else network.public_ip_addresses).list(resource_group)

    def _find(self, kind, resource_id):
        resource_group = _split(resource_id)[0]
        if resource_group.lower() not in self._groups:
            return getattr(self.getters, kind)(resource_id)
        return self.view(kind, resource_group)[1].get(resource_id.lower())

    def vm(self, resource_group, name):
        if resource_group.lower() not in self._groups:
            return self.getters.vm(resource_group, name)
        return next((vm for vm in self.view("vm", resource_group)[1].values()
                     if vm["name"].lower() == name.lower()), None)

    def nic(self, resource_id):
        return self._find("nic", resource_id)

    def pip(self, resource_id):
        return self._find("pip", resource_id)

    def until_provisioned(self, kind, written, deadline, what, running=False):
        """The resource once its provisioning has ended (and, with running, the VM runs): the
        write's own answer when it already says so, else as listed. Failed provisioning raises."""
        resource_id, state = written["id"], _props(written).get("provisioningState") or ""
        found, since = written, 0.0
        if kind == "vm" and running:
            state = ""  # the answer has no instance view: the list says whether it runs
        while not self._ended(kind, found, state, running):
            if time.monotonic() > deadline:
                raise TimeoutError("timed out waiting for %s (provisioningState %s)" % (what, state or "unknown"))
            if since:
                time.sleep(self.POLL_SECONDS)
            since, listed = self.view(kind, _split(resource_id)[0], newer_than=since or time.monotonic())
            found = listed.get(resource_id.lower())
            state = _props(found).get("provisioningState") or ""
            since += 1e-6  # next round: a list asked after this one
        if state.lower() != "succeeded":
            raise RuntimeError("%s: provisioningState %s%s" % (what, state, _failure_detail(found)))
        return found

    @staticmethod
    def _ended(kind, found, state, running):
        if not found or state.lower() not in PROVISIONING_ENDED:
            return False
        return not (running and state.lower() == "succeeded" and power_state(found) != "running")


def _failure_detail(resource):
    """What the VM's instance view says went wrong, if anything."""
    errors = [st.get("message") or st.get("displayStatus") or st.get("code")
              for st in _props(resource).get("instanceView", {}).get("statuses") or [] if st.get("level") == "Error"]
    return (": " + "; ".join(e for e in errors if e)) if any(errors) else ""


def power_state(vm):
    for status in _props(vm).get("instanceView", {}).get("statuses") or []:
        if status.get("code", "").startswith("PowerState/"):
            return status["code"].split("/", 1)[1]
    return None


def _key_fingerprint(key_data):
    try:
        return parse_public_key(key_data, "keyData", min_rsa_bits=0).fingerprint()
    except SSHKeyError:
        return "unreadable key"


def report(actual):
    """The per-VM facts both modules return."""
    vm, nic, pip = actual.vm, actual.nic, actual.pip
    configs = _props(nic).get("ipConfigurations") or []
    os_profile = _props(vm).get("osProfile") or {}
    return {
        "name": (vm or {}).get("name"),
        "id": (vm or {}).get("id"),
        "location": (vm or {}).get("location"),
        "size": _props(vm).get("hardwareProfile", {}).get("vmSize"),
        "admin_username": os_profile.get("adminUsername"),
        "provisioning_state": _props(vm).get("provisioningState"),
        "power_state": power_state(vm),
        "private_ip": _props(configs[0]).get("privateIPAddress") if configs else None,
        "public_ip": _props(pip).get("ipAddress"),
        "fqdn": (_props(pip).get("dnsSettings") or {}).get("fqdn"),
        "tags": (vm or {}).get("tags") or {},
    }


def summary(actual):
    """The compared fields (COMPARED) of what exists; None when the VM does not exist."""
    vm, nic, pip = actual.vm, actual.nic, actual.pip
    if not vm:
        return None
    props = _props(vm)
    image = props.get("storageProfile", {}).get("imageReference") or {}
    os_disk = props.get("storageProfile", {}).get("osDisk") or {}
    linux = (props.get("osProfile") or {}).get("linuxConfiguration") or {}
    keys = (linux.get("ssh") or {}).get("publicKeys") or []
    configs = _props(nic).get("ipConfigurations") or []
    identity = ((vm.get("identity") or {}).get("type") or "None")
    return {
        "location": vm.get("location"),
        "size": props.get("hardwareProfile", {}).get("vmSize"),
        "image": {"publisher": image.get("publisher"), "offer": image.get("offer"), "sku": image.get("sku"),
                  "version": image.get("exactVersion") or image.get("version")},
        "admin_username": (props.get("osProfile") or {}).get("adminUsername"),
        "ssh_keys": sorted(_key_fingerprint(k.get("keyData", "")) for k in keys),
        "zone": (vm.get("zones") or [None])[0],
        "identity": "system" if "systemassigned" in identity.lower() else "none",
        "boot_diagnostics": bool(((props.get("diagnosticsProfile") or {}).get("bootDiagnostics") or {})
                                 .get("enabled")),
        "os_disk": {"size_gb": os_disk.get("diskSizeGB"),
                    "storage_account_type": (os_disk.get("managedDisk") or {}).get("storageAccountType"),
                    "delete_option": os_disk.get("deleteOption")},
        "subnet_id": (_props(configs[0]).get("subnet") or {}).get("id") if configs else None,
        "nsg_id": (_props(nic).get("networkSecurityGroup") or {}).get("id"),
        "public_ip": bool(pip),
        "dns_label": (_props(pip).get("dnsSettings") or {}).get("domainNameLabel"),
        "tags": vm.get("tags") or {},
    }


def _norm(field_name, value):
    """ARM names, ids and locations are case-insensitive; locations also ignore spaces."""
    if isinstance(value, dict):
        return {k: _norm(field_name, v) for k, v in value.items()}
    if isinstance(value, str) and field_name != "tags":
        return value.lower().replace(" ", "") if field_name == "location" else value.lower()
    return value


def differences(before, after):
    """Dotted names of the fields that differ (os_disk compared per key)."""
    changed = []
    for name, want in after.items():
        have = before.get(name)
        if name == "os_disk":
            changed.extend("os_disk." + k for k, v in want.items() if _norm(name, v) != _norm(name, have.get(k)))
        elif _norm(name, want) != _norm(name, have):
            changed.append(name)
    if "subnet_id" in changed and _vnet(before["subnet_id"]) != _vnet(after["subnet_id"]):
        changed[changed.index("subnet_id")] = "subnet_id (other virtual network)"
    return changed


def _vnet(subnet_id):
    return (subnet_id or "").lower().rsplit("/subnets/", 1)[0]


# --- what to write --------------------------------------------------------------------------


def pip_body(vm, location, zone, dns_label):
    body = {"location": location, "tags": {MARKER_TAG: vm.name},
            "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}}
    if dns_label:
        body["properties"]["dnsSettings"] = {"domainNameLabel": dns_label}
    if zone:
        body["zones"] = [zone]
    return body


def nic_body(vm, location, subnet_id, nsg_id, pip_id):
    config = {"subnet": {"id": subnet_id}, "privateIPAllocationMethod": "Dynamic", "primary": True}
    if pip_id:
        config["publicIPAddress"] = {"id": pip_id}
    body = {"location": location, "tags": {MARKER_TAG: vm.name},
            "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": config}]}}
    if nsg_id:
        body["properties"]["networkSecurityGroup"] = {"id": nsg_id}
    return body


def boot_diagnostics():
    """diagnosticsProfile for boot diagnostics on Azure's managed storage (no storageUri, no account of ours)."""
    return {"bootDiagnostics": {"enabled": True}}


def vm_body(vm, after):
    """The create body: `after` is desired_summary(vm, None), the values the VM is compared with."""
    disk = after["os_disk"]
    os_disk = {"name": vm.disk_name, "createOption": "FromImage", "caching": "ReadWrite",
               "deleteOption": disk["delete_option"] or "Delete"}
    if disk["size_gb"]:
        os_disk["diskSizeGB"] = disk["size_gb"]
    if disk["storage_account_type"]:
        os_disk["managedDisk"] = {"storageAccountType": disk["storage_account_type"]}
    user = after["admin_username"]
    body = {
        "location": after["location"],
        "tags": after["tags"],
        "properties": {
            "hardwareProfile": {"vmSize": after["size"]},
            "storageProfile": {"imageReference": dict(after["image"]), "osDisk": os_disk},
            "osProfile": {
                "computerName": vm.name,
                "adminUsername": user,
                "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    # Azure gets the one-line OpenSSH form, whatever form the user gave.
                    "ssh": {"publicKeys": [{"path": "/home/%s/.ssh/authorized_keys" % user,
                                            "keyData": vm.ssh_key.openssh()}]},
                },
            },
            "networkProfile": {"networkInterfaces": [{"id": vm.nic_id, "properties": {"primary": True}}]},
            "diagnosticsProfile": boot_diagnostics(),
        },
    }
    if after["zone"]:
        body["zones"] = [after["zone"]]
    if after["identity"] == "system":
        body["identity"] = {"type": "SystemAssigned"}
    return body


# The PATCH of a VM, per field Azure changes that way (in_place "vm").
VM_PATCH = {
    "tags": lambda after: {"tags": after["tags"]},
    "size": lambda after: {"properties": {"hardwareProfile": {"vmSize": after["size"]}}},
    "identity": lambda after: {"identity": {"type": "SystemAssigned" if after["identity"] == "system" else "None"}},
    "boot_diagnostics": lambda after: {"properties": {"diagnosticsProfile": boot_diagnostics()}},
    "os_disk.delete_option": lambda after: {"properties": {"storageProfile": {"osDisk": {
        "deleteOption": after["os_disk"]["delete_option"]}}}},
}


class Change(Enum):
    """Every ARM write the module issues: its method, how the operations list names it, and which
    of the VM's resources ("vm", "nic", "pip") its finished operation returns (None: none)."""

    CREATE_PIP = ("PUT", "create public IP", "pip")
    UPDATE_PIP = ("PUT", "update public IP DNS label", "pip")
    CREATE_NIC = ("PUT", "create network interface", "nic")
    UPDATE_NIC = ("PUT", "update network interface", "nic")
    CREATE_VM = ("PUT", "create VM", "vm")
    UPDATE_VM = ("PATCH", "update VM", "vm")
    DELETE_VM = ("DELETE", "delete VM", None)
    DELETE_DISK = ("DELETE", "delete OS disk if the VM delete left it", None)
    DELETE_NIC = ("DELETE", "delete network interface", None)
    DELETE_PIP = ("DELETE", "delete public IP", None)


class Step:
    """One ARM write: what it is (for the operations list) and how to do it."""

    def __init__(self, kind, resource_id, run, body=None, fields=()):
        self.kind, self.id, self.run, self.body = kind, resource_id, run, body
        self.method, description, self.returns = kind.value
        self.change = description + (" (%s)" % ", ".join(fields) if fields else "")


class Plan:
    def __init__(self, vm, actual):
        self.vm = vm
        self.actual = actual
        self.steps = []
        self.not_changeable = []
        self.before = summary(actual)
        self.after = None
        self.error = None


def _is_ours(resource, name):
    return bool(resource) and (resource.get("tags") or {}).get(MARKER_TAG) == name


def _refusal(vm, actual, network_errors, after):
    """Why this VM cannot be planned at all (one line), or None."""
    if vm.missing and not actual.vm:
        return "VM %s does not exist in resource group %s, and creating it needs %s" % (
            vm.name, vm.resource_group, " and ".join(need.value for need in vm.missing))
    problems = [p for p in (network_errors.get((vm.given("subnet_id") or "").lower()),
                            network_errors.get((vm.given("nsg_id") or "").lower())) if p]
    if problems:
        return "; ".join(problems)
    if not after["location"]:
        return "location is required to create the VM"
    for resource, kind in ((actual.nic, "network interface"), (actual.pip, "public IP")):
        if resource and not actual.vm and not _is_ours(resource, vm.name):
            return "%s %s exists and was not made by this module for this VM" % (kind, resource.get("id"))
    try:
        rules.check_tags(after["tags"], "tags (with the VM's own)")
    except rules.AzureRuleError as err:
        return str(err)
    return None


def plan_present(session, vm, actual, network_errors):
    plan = Plan(vm, actual)
    plan.after = desired_summary(vm, plan.before)
    problem = _refusal(vm, actual, network_errors, plan.after)
    if problem:
        plan.error = "%s: %s" % (vm.where, problem)
    elif not actual.vm:
        plan.steps = _create_steps(session, vm, plan.after)
    else:
        changed = differences(plan.before, plan.after)
        ours = {"vm": True, "nic": _is_ours(actual.nic, vm.name), "pip": _is_ours(actual.pip, vm.name)}
        plan.not_changeable = [f for f in changed if not ours.get(in_place(f))]
        plan.steps = _update_steps(session, plan, [f for f in changed if f not in plan.not_changeable])
    return plan


def _create_steps(session, vm, after):
    # PUT is idempotent: leftovers of an interrupted run (ours, checked above) are simply rewritten.
    rg, location = vm.resource_group, after["location"]
    steps = []
    if after["public_ip"]:
        pip = pip_body(vm, location, after["zone"], after["dns_label"])
        steps.append(Step(Change.CREATE_PIP, vm.pip_id, lambda **kw: session.network.public_ip_addresses.
                          begin_create_or_update(rg, vm.name + "-pip", pip, **kw), pip))
    nic = nic_body(vm, location, after["subnet_id"], after["nsg_id"], vm.pip_id if after["public_ip"] else None)
    steps.append(Step(Change.CREATE_NIC, vm.nic_id, lambda **kw: session.network.network_interfaces.
                      begin_create_or_update(rg, vm.name + "-nic", nic, **kw), nic))
    machine = vm_body(vm, after)
    steps.append(Step(Change.CREATE_VM, vm.vm_id, lambda **kw: session.compute.virtual_machines.
                      begin_create_or_update(rg, vm.name, machine, **kw), machine))
    return steps


def _update_steps(session, plan, changed):
    """The writes for the fields Azure changes in place: public IP, NIC, VM PATCH, public IP delete."""
    vm, actual, before, after = plan.vm, plan.actual, plan.before, plan.after
    rg = vm.resource_group

    def pips():  # clients are reached only when a step runs
        return session.network.public_ip_addresses

    steps = []
    nic_fields = [f for f in changed if in_place(f) == "nic"]
    if nic_fields and after["public_ip"] and not actual.pip:
        new_pip = pip_body(vm, before["location"], before["zone"], after["dns_label"])
        steps.append(Step(Change.CREATE_PIP, vm.pip_id, lambda **kw: pips().begin_create_or_update(
            rg, vm.name + "-pip", new_pip, **kw), new_pip))
    elif "dns_label" in changed:
        pip = pip_body(vm, actual.pip["location"], (actual.pip.get("zones") or [None])[0], after["dns_label"])
        steps.append(Step(Change.UPDATE_PIP, actual.pip["id"], lambda **kw: pips().begin_create_or_update(
            *_split(actual.pip["id"]), pip, **kw), pip))
    if nic_fields:
        steps.append(_nic_update(session, plan, nic_fields))
    vm_fields = sorted(f for f in changed if in_place(f) == "vm")
    if vm_fields:
        patch = {}
        for name in vm_fields:
            _deep_merge(patch, VM_PATCH[name](after))
        steps.append(Step(Change.UPDATE_VM, vm.vm_id, lambda **kw: session.compute.virtual_machines.begin_update(
            rg, vm.name, patch, **kw), patch, vm_fields))
    if nic_fields and not after["public_ip"] and _is_ours(actual.pip, vm.name):
        steps.append(Step(Change.DELETE_PIP, actual.pip["id"], lambda: pips().begin_delete(*_split(actual.pip["id"]))))
    return steps


def _nic_update(session, plan, nic_fields):
    """The NIC's PUT. Its subnet stays when the new one is in another VNet (not changeable, reported),
    and it keeps the public IP it already has rather than one named after the VM."""
    vm, actual, after = plan.vm, plan.actual, plan.after
    subnet = after["subnet_id"] if "subnet_id" in nic_fields else plan.before["subnet_id"]
    pip_id = (actual.pip["id"] if actual.pip else vm.pip_id) if after["public_ip"] else None
    body = nic_body(vm, actual.nic["location"], subnet, after["nsg_id"], pip_id)
    return Step(Change.UPDATE_NIC, actual.nic["id"], lambda **kw: session.network.network_interfaces.
                begin_create_or_update(*_split(actual.nic["id"]), body, **kw), body, nic_fields)


def _deep_merge(into, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
    return into


def plan_absent(session, vm, actual):
    plan = Plan(vm, actual)
    if actual.vm:
        plan.steps.append(Step(Change.DELETE_VM, actual.vm["id"],
                               lambda: session.compute.virtual_machines.begin_delete(vm.resource_group, vm.name)))
        disk = (_props(actual.vm).get("storageProfile", {}).get("osDisk") or {})
        disk_id = (disk.get("managedDisk") or {}).get("id")
        # Azure's default deleteOption is Detach: a disk without Delete is kept, as Azure would.
        if disk_id and disk.get("deleteOption") == "Delete":
            # Azure deletes it with the VM; delete it ourselves only if it was left behind.
            plan.steps.append(Step(Change.DELETE_DISK, disk_id,
                                   lambda: _delete_if_present(session.compute.disks, *_split(disk_id))))
    if _is_ours(actual.nic, vm.name):
        plan.steps.append(Step(Change.DELETE_NIC, actual.nic["id"],
                               lambda: session.network.network_interfaces.begin_delete(*_split(actual.nic["id"]))))
    if _is_ours(actual.pip, vm.name):
        plan.steps.append(Step(Change.DELETE_PIP, actual.pip["id"],
                               lambda: session.network.public_ip_addresses.begin_delete(*_split(actual.pip["id"]))))
    return plan


def _delete_if_present(disks, resource_group, name):
    if _get(disks.get, resource_group, name) is None:
        return None  # nothing written: not an operation
    return disks.begin_delete(resource_group, name)


# --- doing it -------------------------------------------------------------------------------


def _wait(poller, deadline, what):
    if poller is None:
        return None
    poller.wait(max(deadline - time.monotonic(), 0))
    if not poller.done():
        raise TimeoutError("timed out waiting for %s" % what)
    return poller.result()


def _after(actual, step, result):
    """What exists once `step` is done: its finished operation returns the resource it wrote, so
    nothing is read again. A PATCH does not change the power state the VM was read with."""
    resources = {"vm": actual.vm, "nic": actual.nic, "pip": actual.pip}
    if step.kind is Change.DELETE_PIP:
        resources["pip"] = None
    elif step.returns:
        written = as_rest(result)
        if step.kind is Change.UPDATE_VM and actual.vm and "instanceView" in _props(actual.vm):
            written.setdefault("properties", {})["instanceView"] = actual.vm["properties"]["instanceView"]
        resources[step.returns] = written
    return Actual(**resources)


def wait_for_ssh(address, deadline):
    """Until an SSH server sends its banner on address:22 (a real answer, not just a listen)."""
    while True:
        try:
            with socket.create_connection((address, 22), timeout=5) as conn:
                conn.settimeout(5)
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("SSH did not answer on %s:22" % address)
        time.sleep(1)


def apply_plan(session, plan, timeout, lists=None):
    """Run one VM's steps in order, recording each write as it is issued. A write that returns its
    resource is not polled: lists (ResourceLists) says when its provisioning has ended."""
    deadline = time.monotonic() + timeout
    vm, actual = plan.vm, plan.actual
    lists = lists or ResourceLists(session, [vm.resource_group])
    for step in plan.steps:
        try:
            poller = step.run(polling=False) if step.returns else step.run()
        except Exception:
            session.operations.add(vm.name, step.method, step.id, step.change + " (refused)")
            raise
        if poller is None:  # a conditional step found nothing to do: nothing was written
            continue
        session.operations.add(vm.name, step.method, step.id, step.change)
        result = _wait(poller, deadline, step.change)
        if step.returns:
            result = lists.until_provisioned(step.returns, as_rest(result), deadline, step.change,
                                             running=step.kind is Change.CREATE_VM)
        actual = _after(actual, step, result)
    if vm.state == "absent":
        return Actual()
    if vm.value("wait_for_ssh"):
        address = _props(actual.pip).get("ipAddress") or report(actual)["private_ip"]
        if not address:
            raise RuntimeError("no IP address to wait for SSH on")
        wait_for_ssh(address, min(deadline, time.monotonic() + vm.value("ssh_timeout")))
    return actual


def run_pool(func, items, concurrency):
    """func(item) for every item in a bounded pool; (result, error) pairs in order."""
    def guarded(item):
        try:
            return func(item), None
        except Exception as err:  # each item's failure is its own, reported beside the others
            return None, err

    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items)))) as pool:
        return list(pool.map(guarded, items))


def check_network(session, vms, concurrency):
    """{lowercased id: problem} for subnets and NSGs that cannot be read; read each once."""
    wanted = {}
    for vm in vms:
        if vm.given("subnet_id"):
            wanted[vm.given("subnet_id").lower()] = ("subnet", vm.given("subnet_id"))
        if vm.given("nsg_id"):
            wanted[vm.given("nsg_id").lower()] = ("network security group", vm.given("nsg_id"))

    def read(item):
        kind, resource_id = item
        parts = resource_id.split("/")
        if kind == "subnet":
            return _get(session.network.subnets.get, parts[4], parts[8], parts[10])
        return _get(session.network.network_security_groups.get, parts[4], parts[8])

    problems = {}
    items = list(wanted.values())
    for (kind, resource_id), (found, err) in zip(items, run_pool(read, items, concurrency), strict=True):
        if err is not None:
            problems[resource_id.lower()] = "cannot read %s %s: %s" % (kind, resource_id, arm_error(err))
        elif found is None:
            problems[resource_id.lower()] = "%s %s does not exist" % (kind, resource_id)
    return problems


def listed_groups(vms):
    """Resource groups holding more than one of the VMs: there, one list answers for all of them."""
    count = Counter(vm.resource_group.lower() for vm in vms)
    return [rg for rg, n in count.items() if n > 1]


def plan_all(session, params, lists):
    """Every VM's plan; VMInputError (nothing written) if any VM cannot be planned."""
    vms = desired_vms(session, params)  # raises VMInputError before any request
    lists.listed(listed_groups(vms))
    concurrency = params["concurrency"]
    present = params["state"] == "present"
    network_errors = check_network(session, vms, concurrency) if present else {}
    reads = run_pool(lambda vm: read_actual(session, vm.resource_group, vm.name, vm.nic_id, vm.pip_id, lists),
                     vms, concurrency)
    errors = ["%s: %s" % (vm.where, arm_error(err)) for vm, (_a, err) in zip(vms, reads, strict=True) if err]
    if errors:
        raise VMInputError("; ".join(errors))
    plans = [plan_present(session, vm, a, network_errors) if present else plan_absent(session, vm, a)
             for vm, (a, _e) in zip(vms, reads, strict=True)]
    errors = [p.error for p in plans if p.error]
    if errors:
        raise VMInputError("; ".join(errors))
    return plans


def run(session, params, check_mode):
    """The whole azure_vm run; returns (results per VM, failed)."""
    lists = ResourceLists(session)
    plans = plan_all(session, params, lists)
    if check_mode:
        for plan in plans:
            for step in plan.steps:
                session.operations.add(plan.vm.name, step.method, step.id, step.change)
        outcomes = [(plan.actual, None) for plan in plans]
    else:
        lists.listed(plan.vm.resource_group for plan in plans)  # from here on, waits list every group
        outcomes = run_pool(lambda p: apply_plan(session, p, params["timeout"], lists), plans,
                            params["concurrency"])
    results = [vm_result(plan, actual, err, session.operations.for_vm(plan.vm.name))
               for plan, (actual, err) in zip(plans, outcomes, strict=True)]
    return results, any(result["failed"] for result in results)


def vm_result(plan, actual, err, ops):
    """One VM's entry of the module result."""
    vm = plan.vm
    facts = report(actual or plan.actual)
    facts["name"] = vm.name
    facts["id"] = facts["id"] or vm.vm_id
    result = dict(facts, changed=bool(ops), failed=err is not None, not_changeable_in_place=plan.not_changeable,
                  operations=ops, diff={"before": plan.before or {}, "after": plan.after or {}})
    if err is not None:
        result["msg"] = "%s: %s" % (vm.where, arm_error(err))
    elif plan.not_changeable:
        result["msg"] = ("%s: Azure cannot change %s in place; recreate the VM (state=absent, then present) "
                         "to apply" % (vm.name, ", ".join(plan.not_changeable)))
    else:
        result["msg"] = "%s: %s" % (vm.name, "; ".join(op["change"] for op in ops) or "up to date")
    result["tags"] = {k: v for k, v in result["tags"].items() if k != MARKER_TAG}
    return result


# --- azure_vm_info --------------------------------------------------------------------------


def parse_tag_filter(tags):
    """[(key, value or None)] from a dict or a list of "key" / "key:value" strings."""
    if not tags:
        return []
    if isinstance(tags, dict):
        return [(str(k), None if v is None else str(v)) for k, v in tags.items()]
    pairs = []
    for item in tags:
        key, sep, value = str(item).partition(":")
        pairs.append((key, value if sep else None))
    return pairs


def _matches(tags, wanted):
    tags = tags or {}
    return all(key in tags and (value is None or tags[key] == value) for key, value in wanted)


def info(session, params):
    """Every VM matching name / resource group / tags, with IPs and power state, read concurrently;
    each VM is read once (with its instance view), a list only names the VMs to read."""
    resource_group, name = params.get("resource_group"), params.get("name")
    wanted = parse_tag_filter(params.get("tags"))
    vms = session.compute.virtual_machines
    if name:
        if not resource_group:
            raise VMInputError("name needs resource_group")
        reads = [(read_actual(session, resource_group, name), None)]
    else:
        listed = vms.list(resource_group) if resource_group else vms.list_all()
        listed = [vm for vm in map(as_rest, listed) if _matches(vm.get("tags"), wanted)]
        reads = run_pool(lambda vm: read_actual(session, _split(vm["id"])[0], vm["name"]), listed,
                         params.get("concurrency") or 10)
    results = []
    for actual, err in reads:
        if err is not None:
            raise err
        # Gone between list and read, or (read by name) without the tags asked for: not listed.
        if actual.vm and _matches(actual.vm.get("tags"), wanted):
            results.append(report(actual))
    return sorted(results, key=lambda r: (r["id"] or "").lower())
