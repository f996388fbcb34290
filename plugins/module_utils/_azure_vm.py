# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure VMs for azure_vm and azure_vm_info: desired state, actual state, plan, concurrent apply.

A run has four phases, and only the last one writes:
1. specs:  every VM's options are merged with the top-level defaults and checked locally
           (names, image, SSH key); any problem fails the run before a request is sent;
2. read:   VM, NIC, public IP, subnet and NSG are read concurrently;
3. plan:   desired and actual are compared field by field; what Azure cannot change in place
           (image, admin user, SSH keys, zone, location, disk size/type) is reported, not applied;
4. apply:  each VM's steps run in order (public IP, NIC, VM), VMs concurrently in a bounded pool.

Resources the module makes carry the tag MARKER_TAG=<vm name> and deterministic names
(<vm>-pip, <vm>-nic, <vm>-osdisk): delete removes exactly those and the VM, nothing else.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.sshca.azure.plugins.module_utils import _azure_rules as rules
from ansible_collections.sshca.azure.plugins.module_utils._azure import arm_error, as_rest, is_not_found
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import SSHKeyError, parse_public_key

MARKER_TAG = "sshca.azure.vm"
DEFAULTS = {
    "size": "Standard_B2s",
    "image": "ubuntu2404",
    "admin_username": "azureuser",
    "public_ip": True,
    "append_tags": True,
    "wait_for_ssh": False,
    "ssh_timeout": 300,
    "os_disk": None,
    "tags": None,
}

# Per-VM options: the same names at the top level (defaults for every VM) and in `vms` items.
OS_DISK_SPEC = {
    "size_gb": {"type": "int"},
    "storage_account_type": {"type": "str",
                             "choices": ["Standard_LRS", "StandardSSD_LRS", "Premium_LRS", "StandardSSD_ZRS",
                                         "Premium_ZRS"]},
    "delete_option": {"type": "str", "choices": ["Delete", "Detach"]},
}
VM_OPTION_SPEC = {
    "location": {"type": "str"},
    "size": {"type": "str"},
    "image": {"type": "raw"},
    "admin_username": {"type": "str"},
    "ssh_public_key": {"type": "str", "no_log": False},
    "subnet_id": {"type": "str"},
    "vnet_name": {"type": "str"},
    "subnet_name": {"type": "str"},
    "nsg_id": {"type": "str"},
    "public_ip": {"type": "bool"},
    "dns_label": {"type": "str"},
    "os_disk": {"type": "dict", "options": OS_DISK_SPEC},
    "tags": {"type": "dict"},
    "append_tags": {"type": "bool"},
    "zone": {"type": "str"},
    "identity": {"type": "str", "choices": ["none", "system"]},
    "wait_for_ssh": {"type": "bool"},
    "ssh_timeout": {"type": "int"},
}
# Compared with an existing VM; their defaults apply only to VMs that are created or fully
# specified, so an update that leaves them out (tags only, say) keeps what the VM has.
COMPARED_DEFAULTS = ("size", "image", "admin_username", "public_ip")
# Top-level options: the same, with the defaults every VM starts from.
TOP_LEVEL_SPEC = {k: dict(v, default=DEFAULTS[k]) if DEFAULTS.get(k) is not None and k not in COMPARED_DEFAULTS
                  else v for k, v in VM_OPTION_SPEC.items()}
VM_ID_RE = re.compile(r"(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Compute/"
                      r"virtualMachines/([^/]+)$")
VM_ITEM_SPEC = dict(VM_OPTION_SPEC, name={"type": "str", "required": True})

# Fields Azure changes in place, and how; every other differing field is not changeable in place.
IN_PLACE = {"size": "vm", "identity": "vm", "os_disk.delete_option": "vm", "tags": "vm",
            "subnet_id": "nic", "nsg_id": "nic", "public_ip": "nic", "dns_label": "pip"}


class VMInputError(ValueError):
    """A bad option; the message names the VM and the option."""


class VMSpec:
    """One VM's desired state, checked locally."""

    def __init__(self, session, resource_group, state, opts, where, given=()):
        self.name = opts.get("name")
        try:
            rules.check_vm_name(self.name, where if where == "name" else where + ".name")
        except rules.AzureRuleError as err:
            raise VMInputError(str(err)) from None
        self.where = "%s (%s)" % (where, self.name) if where != "name" else self.name
        self.resource_group = resource_group
        self.state = state
        self.vm_id = session.resource_id(resource_group, "Microsoft.Compute/virtualMachines", self.name)
        self.nic_id = session.resource_id(resource_group, "Microsoft.Network/networkInterfaces", self.name + "-nic")
        self.pip_id = session.resource_id(resource_group, "Microsoft.Network/publicIPAddresses", self.name + "-pip")
        self.disk_name = self.name + "-osdisk"
        if state == "absent":
            return
        # Inputs only a create needs. Without them the spec can only update an existing VM, and
        # then compares just the options given (`given`); planning fails if the VM is absent.
        self.given = set(given)
        self.missing = []
        if not opts.get("ssh_public_key"):
            self.missing.append("ssh_public_key")
        if not (opts.get("subnet_id") or opts.get("vnet_name") or opts.get("subnet_name")):
            self.missing.append("subnet_id (or vnet_name and subnet_name)")
        self.location = opts.get("location")
        self.size = opts["size"]
        self.image = self._rule(rules.image_reference, opts["image"], "image")
        self.admin_username = self._rule(rules.check_admin_username, opts["admin_username"], "admin_username")
        self.ssh_key = None
        if opts.get("ssh_public_key"):
            try:
                self.ssh_key = parse_public_key(opts["ssh_public_key"], "%s: ssh_public_key" % self.where)
            except SSHKeyError as err:
                raise VMInputError(str(err)) from None
            if self.ssh_key.key_type not in rules.AZURE_SSH_KEY_TYPES:
                self._fail("ssh_public_key is %s; Azure takes only %s keys"
                           % (self.ssh_key.key_type, " and ".join(rules.AZURE_SSH_KEY_TYPES)))
        self.subnet_id = opts.get("subnet_id")
        if "subnet_id (or vnet_name and subnet_name)" in self.missing:
            self.subnet_id = None  # an update that keeps the VM's subnet
        elif not self.subnet_id:
            if not (opts.get("vnet_name") and opts.get("subnet_name")):
                self._fail("give subnet_id, or vnet_name and subnet_name")
            self.subnet_id = session.resource_id(resource_group, "Microsoft.Network/virtualNetworks",
                                                 "%s/subnets/%s" % (opts["vnet_name"], opts["subnet_name"]))
        elif not re.match(r"(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/"
                          r"virtualNetworks/[^/]+/subnets/[^/]+$", self.subnet_id):
            self._fail("subnet_id %r is not a subnet resource id" % self.subnet_id)
        self.nsg_id = opts.get("nsg_id")
        if self.nsg_id and not re.match(r"(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                                        r"Microsoft\.Network/networkSecurityGroups/[^/]+$", self.nsg_id):
            self._fail("nsg_id %r is not a network security group resource id" % self.nsg_id)
        self.public_ip = opts["public_ip"]
        self.dns_label = opts.get("dns_label")
        if self.dns_label is not None:
            self._rule(rules.check_dns_label, self.dns_label, "dns_label")
        if self.dns_label and not self.public_ip:
            self._fail("dns_label needs public_ip: true")
        self.os_disk = dict(opts.get("os_disk") or {})
        if self.os_disk.get("size_gb") is not None and not 30 <= self.os_disk["size_gb"] <= 4095:
            self._fail("os_disk.size_gb must be between 30 and 4095")
        self.tags = self._rule(rules.check_tags, opts.get("tags") or {}, "tags")
        self.tags_given = opts.get("tags") is not None
        if MARKER_TAG in self.tags:
            self._fail("tag %s is reserved for the resources this module makes" % MARKER_TAG)
        self.append_tags = opts["append_tags"]
        self.zone = str(opts["zone"]) if opts.get("zone") is not None else None
        self.identity = opts.get("identity")
        self.wait_for_ssh = opts["wait_for_ssh"]
        self.ssh_timeout = opts["ssh_timeout"]

    def _fail(self, problem):
        raise VMInputError("%s: %s" % (self.where, problem))

    def _rule(self, check, value, field):
        """Azure's rule for one field (see _azure_rules), failing with the VM named."""
        try:
            return check(value, field)
        except rules.AzureRuleError as err:
            return self._fail(str(err))

    def keeps(self, option):
        """Whether an update without the creation inputs leaves this option as the VM has it."""
        return bool(self.missing) and option not in self.given


def apply_vm_id(params):
    """Resolve the `id` option (a VM resource id) into subscription_id, resource_group and name."""
    vm_id = params.get("id")
    if not vm_id:
        return params
    match = VM_ID_RE.match(vm_id)
    if not match:
        raise VMInputError("id %r is not a virtual machine resource id (/subscriptions/<subscription>/resourceGroups/"
                           "<group>/providers/Microsoft.Compute/virtualMachines/<name>)" % vm_id)
    subscription, resource_group, name = match.groups()
    for option, value in (("subscription_id", subscription), ("resource_group", resource_group)):
        if params.get(option) and params[option].lower() != value.lower():
            raise VMInputError("id %s is in %s %s, but %s is %s" % (vm_id, option, value, option, params[option]))
    return dict(params, subscription_id=subscription, resource_group=resource_group, name=name)


def build_specs(session, params):
    """Every VM's spec from `name` or `vms`, each item overriding the top-level defaults."""
    top = {k: params.get(k) for k in VM_OPTION_SPEC}
    top_given = {k for k, v in top.items() if v is not None}
    for key, value in DEFAULTS.items():
        if top.get(key) is None:
            top[key] = value
    top["location"] = params.get("location")
    items = [{"name": params["name"]}] if params.get("name") else list(params.get("vms") or [])
    if not items:
        raise VMInputError("give name or a non-empty vms list")
    specs, seen = [], set()
    validator = ArgumentSpecValidator(VM_ITEM_SPEC)
    for index, item in enumerate(items):
        where = "name" if params.get("name") else "vms[%d]" % index
        if not isinstance(item, dict):
            raise VMInputError("%s: each item of vms must be a dict, not %s" % (where, type(item).__name__))
        checked = validator.validate(item)
        if checked.error_messages:
            raise VMInputError("%s: %s" % (where, "; ".join(checked.error_messages)))
        opts = dict(top)
        item_given = {k for k, v in checked.validated_parameters.items() if v is not None}
        opts.update({k: checked.validated_parameters[k] for k in item_given})
        spec = VMSpec(session, params["resource_group"], params["state"], opts, where, top_given | item_given)
        if spec.name.lower() in seen:
            raise VMInputError("%s: VM %s is listed twice" % (where, spec.name))
        seen.add(spec.name.lower())
        specs.append(spec)
    return specs


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


def read_actual(session, resource_group, name, nic_id=None, pip_id=None):
    """Read one VM, its primary NIC and that NIC's public IP; nic_id/pip_id name the ones we
    would make, read when the VM (or NIC) is absent so leftovers of an interrupted run are found."""
    vm = _get(session.compute.virtual_machines.get, resource_group, name, expand="instanceView")
    if vm:
        nics = _props(vm).get("networkProfile", {}).get("networkInterfaces") or []
        primary = [n for n in nics if _props(n).get("primary")] or nics
        nic_id = primary[0]["id"] if primary else None
    nic = _get(session.network.network_interfaces.get, *_split(nic_id)) if nic_id else None
    configs = _props(nic).get("ipConfigurations") or []
    nic_pip = (_props(configs[0]).get("publicIPAddress") or {}).get("id") if configs else None
    pip_id = nic_pip or (pip_id if not nic or not vm else None)
    pip = _get(session.network.public_ip_addresses.get, *_split(pip_id)) if pip_id else None
    return Actual(vm, nic, pip)


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
    """The compared fields of what exists (None when the VM does not exist)."""
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
        "os_disk": {"size_gb": os_disk.get("diskSizeGB"),
                    "storage_account_type": (os_disk.get("managedDisk") or {}).get("storageAccountType"),
                    "delete_option": os_disk.get("deleteOption")},
        "subnet_id": (_props(configs[0]).get("subnet") or {}).get("id") if configs else None,
        "nsg_id": (_props(nic).get("networkSecurityGroup") or {}).get("id"),
        "public_ip": bool(pip),
        "dns_label": (_props(pip).get("dnsSettings") or {}).get("domainNameLabel"),
        "tags": vm.get("tags") or {},
    }


def desired_summary(spec, before):
    """The compared fields as the spec wants them; fields left out keep what exists."""
    before = before or {}
    tags = dict(before.get("tags") or {}, **spec.tags) if spec.append_tags else dict(spec.tags)
    if spec.missing and not spec.tags_given:
        tags = dict(before.get("tags") or {})
    os_disk = dict(before.get("os_disk") or {"size_gb": None, "storage_account_type": None, "delete_option": "Delete"})
    os_disk.update({k: v for k, v in spec.os_disk.items() if v is not None})
    image = dict(spec.image)
    if image["version"].lower() == "latest" and before.get("image"):
        image["version"] = before["image"]["version"]  # `latest` is satisfied by whatever was deployed

    def kept(option, field, wanted):
        return before.get(field) if spec.keeps(option) else wanted

    return {
        "location": spec.location or before.get("location"),
        "size": kept("size", "size", spec.size),
        "image": kept("image", "image", image),
        "admin_username": kept("admin_username", "admin_username", spec.admin_username),
        "ssh_keys": [spec.ssh_key.fingerprint()] if spec.ssh_key else before.get("ssh_keys"),
        "zone": spec.zone if spec.zone is not None else before.get("zone"),
        "identity": spec.identity or before.get("identity") or "none",
        "os_disk": os_disk,
        "subnet_id": spec.subnet_id or before.get("subnet_id"),
        "nsg_id": spec.nsg_id if spec.nsg_id is not None else before.get("nsg_id"),
        "public_ip": kept("public_ip", "public_ip", spec.public_ip),
        "dns_label": spec.dns_label if spec.dns_label is not None else before.get("dns_label"),
        "tags": tags,
    }


def _norm(field, value):
    """ARM names, ids and locations are case-insensitive; locations also ignore spaces."""
    if isinstance(value, dict):
        return {k: _norm(field, v) for k, v in value.items()}
    if isinstance(value, str) and field != "tags":
        return value.lower().replace(" ", "") if field == "location" else value.lower()
    return value


def differences(before, after):
    """Dotted names of the fields that differ (os_disk and image compared per key)."""
    changed = []
    for field, want in after.items():
        have = before.get(field)
        if field == "os_disk":
            changed.extend("os_disk." + k for k, v in want.items() if _norm(field, v) != _norm(field, have.get(k)))
        elif _norm(field, want) != _norm(field, have):
            changed.append(field)
    if "subnet_id" in changed and _vnet(before["subnet_id"]) != _vnet(after["subnet_id"]):
        changed[changed.index("subnet_id")] = "subnet_id (other virtual network)"
    return changed


def _vnet(subnet_id):
    return (subnet_id or "").lower().rsplit("/subnets/", 1)[0]


# --- what to write --------------------------------------------------------------------------


def pip_body(spec, location):
    body = {"location": location, "tags": {MARKER_TAG: spec.name},
            "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}}
    if spec.dns_label:
        body["properties"]["dnsSettings"] = {"domainNameLabel": spec.dns_label}
    if spec.zone:
        body["zones"] = [spec.zone]
    return body


def nic_body(spec, location, with_pip, nsg_id, subnet_id=None, pip_id=None):
    config = {"subnet": {"id": subnet_id or spec.subnet_id}, "privateIPAllocationMethod": "Dynamic",
              "primary": True}
    if with_pip:
        config["publicIPAddress"] = {"id": pip_id or spec.pip_id}
    body = {"location": location, "tags": {MARKER_TAG: spec.name},
            "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": config}]}}
    if nsg_id:
        body["properties"]["networkSecurityGroup"] = {"id": nsg_id}
    return body


def authorized_key_line(spec):
    """What Azure gets as keyData: the one-line OpenSSH form, whatever form the user gave."""
    return spec.ssh_key.openssh()


def vm_body(spec, location, tags):
    os_disk = {"name": spec.disk_name, "createOption": "FromImage", "caching": "ReadWrite",
               "deleteOption": spec.os_disk.get("delete_option") or "Delete"}
    if spec.os_disk.get("size_gb"):
        os_disk["diskSizeGB"] = spec.os_disk["size_gb"]
    if spec.os_disk.get("storage_account_type"):
        os_disk["managedDisk"] = {"storageAccountType": spec.os_disk["storage_account_type"]}
    body = {
        "location": location,
        "tags": tags,
        "properties": {
            "hardwareProfile": {"vmSize": spec.size},
            "storageProfile": {"imageReference": dict(spec.image), "osDisk": os_disk},
            "osProfile": {
                "computerName": spec.name,
                "adminUsername": spec.admin_username,
                "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    "ssh": {"publicKeys": [{"path": "/home/%s/.ssh/authorized_keys" % spec.admin_username,
                                            "keyData": authorized_key_line(spec)}]},
                },
            },
            "networkProfile": {"networkInterfaces": [{"id": spec.nic_id, "properties": {"primary": True}}]},
        },
    }
    if spec.zone:
        body["zones"] = [spec.zone]
    if spec.identity == "system":
        body["identity"] = {"type": "SystemAssigned"}
    return body


class Step:
    """One ARM write: what it is (for the operations list) and how to do it."""

    def __init__(self, method, resource_id, change, run, body=None):
        self.method, self.id, self.change, self.run, self.body = method, resource_id, change, run, body


class Plan:
    def __init__(self, spec, actual):
        self.spec = spec
        self.actual = actual
        self.steps = []
        self.not_changeable = []
        self.before = summary(actual)
        self.after = None
        self.error = None

    @property
    def changed(self):
        return bool(self.steps)


def _is_ours(resource, name):
    return bool(resource) and (resource.get("tags") or {}).get(MARKER_TAG) == name


def plan_present(session, spec, actual, network_errors):
    plan = Plan(spec, actual)
    if spec.missing and not actual.vm:
        plan.error = "%s: VM %s does not exist in resource group %s, and creating it needs %s" % (
            spec.where, spec.name, spec.resource_group, " and ".join(spec.missing))
        return plan
    problems = [p for p in (network_errors.get((spec.subnet_id or "").lower()),
                            network_errors.get((spec.nsg_id or "").lower())) if p]
    if problems:
        plan.error = "%s: %s" % (spec.where, "; ".join(problems))
        return plan
    rg, compute, network = spec.resource_group, session.compute, session.network
    location = spec.location or (actual.vm or {}).get("location")
    if not location:
        plan.error = "%s: location is required to create the VM" % spec.where
        return plan
    for resource, kind in ((actual.nic, "network interface"), (actual.pip, "public IP")):
        if resource and not actual.vm and not _is_ours(resource, spec.name):
            plan.error = "%s: %s %s exists and was not made by this module for this VM" % (
                spec.where, kind, resource.get("id"))
            return plan
    after = desired_summary(spec, plan.before)
    plan.after = after
    try:
        rules.check_tags(after["tags"], "tags (with the VM's own)")
    except rules.AzureRuleError as err:
        plan.error = "%s: %s" % (spec.where, err)
        return plan
    if not actual.vm:
        tags = after["tags"]
        # PUT is idempotent: leftovers of an interrupted run (ours, checked above) are simply rewritten.
        if spec.public_ip:
            plan.steps.append(Step("PUT", spec.pip_id, "create public IP", lambda: network.public_ip_addresses.
                                   begin_create_or_update(rg, spec.name + "-pip", pip_body(spec, location))))
        plan.steps.append(Step("PUT", spec.nic_id, "create network interface", lambda: network.network_interfaces.
                               begin_create_or_update(rg, spec.name + "-nic",
                                                      nic_body(spec, location, spec.public_ip, spec.nsg_id))))
        plan.steps.append(Step("PUT", spec.vm_id, "create VM", lambda: compute.virtual_machines.
                               begin_create_or_update(rg, spec.name, vm_body(spec, location, tags))))
        return plan

    changed = differences(plan.before, after)
    nic_ours, pip_ours = _is_ours(actual.nic, spec.name), _is_ours(actual.pip, spec.name)
    for field in changed:
        where = IN_PLACE.get(field)
        if where is None or (where == "nic" and not nic_ours) or (where == "pip" and not pip_ours):
            plan.not_changeable.append(field)
    vm_patch = {}
    if "tags" in changed:
        vm_patch["tags"] = after["tags"]
    if "size" in changed:
        vm_patch.setdefault("properties", {})["hardwareProfile"] = {"vmSize": spec.size}
    if "identity" in changed:
        vm_patch["identity"] = {"type": "SystemAssigned" if after["identity"] == "system" else "None"}
    if "os_disk.delete_option" in changed:
        vm_patch.setdefault("properties", {})["storageProfile"] = {
            "osDisk": {"deleteOption": after["os_disk"]["delete_option"]}}
    nic_change = nic_ours and any(f in changed for f in ("subnet_id", "nsg_id", "public_ip"))
    if nic_change and after["public_ip"] and not actual.pip:
        plan.steps.append(Step("PUT", spec.pip_id, "create public IP", lambda: network.public_ip_addresses.
                               begin_create_or_update(rg, spec.name + "-pip", pip_body(spec, location))))
    elif "dns_label" in changed and pip_ours:
        plan.steps.append(Step("PUT", actual.pip["id"], "update public IP DNS label", lambda: network.
                               public_ip_addresses.begin_create_or_update(rg, _split(actual.pip["id"])[1],
                                                                          pip_body(spec, location))))
    if nic_change:
        fields = ", ".join(f for f in ("subnet_id", "nsg_id", "public_ip") if f in changed)
        # A subnet in another VNet is not changeable (reported above): the NIC keeps its own, and
        # keeps the public IP it already has rather than one named after the VM.
        nic_subnet = after["subnet_id"] if "subnet_id" in changed else plan.before["subnet_id"]
        nic_pip = actual.pip["id"] if actual.pip else None
        plan.steps.append(Step("PUT", actual.nic["id"], "update network interface (%s)" % fields, lambda: network.
                               network_interfaces.begin_create_or_update(
                                   rg, _split(actual.nic["id"])[1],
                                   nic_body(spec, location, after["public_ip"], after["nsg_id"], nic_subnet, nic_pip))))
    if vm_patch:
        fields = sorted(f for f in changed if IN_PLACE.get(f) == "vm")
        plan.steps.append(Step("PATCH", spec.vm_id, "update VM (%s)" % ", ".join(fields),
                               lambda: compute.virtual_machines.begin_update(rg, spec.name, vm_patch), vm_patch))
    if nic_change and not after["public_ip"] and pip_ours:
        plan.steps.append(Step("DELETE", actual.pip["id"], "delete public IP", lambda: network.
                               public_ip_addresses.begin_delete(rg, _split(actual.pip["id"])[1])))
    return plan


def plan_absent(session, spec, actual):
    plan = Plan(spec, actual)
    plan.after = None
    rg, compute, network = spec.resource_group, session.compute, session.network
    if actual.vm:
        plan.steps.append(Step("DELETE", actual.vm["id"], "delete VM",
                               lambda: compute.virtual_machines.begin_delete(rg, spec.name)))
        disk = (_props(actual.vm).get("storageProfile", {}).get("osDisk") or {})
        disk_id = (disk.get("managedDisk") or {}).get("id")
        # Azure's default deleteOption is Detach: a disk without Delete is kept, as Azure would.
        if disk_id and disk.get("deleteOption") == "Delete":
            # Azure deletes it with the VM; delete it ourselves only if it was left behind.
            plan.steps.append(Step("DELETE", disk_id, "delete OS disk if the VM delete left it",
                                   lambda: _delete_if_present(compute.disks, *_split(disk_id))))
    if _is_ours(actual.nic, spec.name):
        plan.steps.append(Step("DELETE", actual.nic["id"], "delete network interface",
                               lambda: network.network_interfaces.begin_delete(*_split(actual.nic["id"]))))
    if _is_ours(actual.pip, spec.name):
        plan.steps.append(Step("DELETE", actual.pip["id"], "delete public IP",
                               lambda: network.public_ip_addresses.begin_delete(*_split(actual.pip["id"]))))
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


def _wait_running(session, spec, deadline):
    while True:
        vm = _get(session.compute.virtual_machines.get, spec.resource_group, spec.name, expand="instanceView")
        if power_state(vm) == "running":
            return
        if time.monotonic() > deadline:
            raise TimeoutError("VM is %s, not running" % power_state(vm))
        time.sleep(2)


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


def apply_plan(session, plan, timeout):
    """Run one VM's steps in order, recording each write as it is issued."""
    deadline = time.monotonic() + timeout
    spec = plan.spec
    created = False
    for step in plan.steps:
        try:
            poller = step.run()
        except Exception:
            session.operations.add(spec.name, step.method, step.id, step.change + " (refused)")
            raise
        if poller is None:  # a conditional step found nothing to do: nothing was written
            continue
        session.operations.add(spec.name, step.method, step.id, step.change)
        _wait(poller, deadline, step.change)
        created = created or step.change == "create VM"
    if spec.state == "absent":
        return Actual()
    if created:
        _wait_running(session, spec, deadline)
    actual = read_actual(session, spec.resource_group, spec.name) if plan.steps else plan.actual
    if spec.wait_for_ssh:
        address = _props(actual.pip).get("ipAddress") or report(actual)["private_ip"]
        if not address:
            raise RuntimeError("no IP address to wait for SSH on")
        wait_for_ssh(address, min(deadline, time.monotonic() + spec.ssh_timeout))
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


def check_network(session, specs, concurrency):
    """{lowercased id: problem} for subnets and NSGs that cannot be read; read each once."""
    wanted = {}
    for spec in specs:
        if spec.subnet_id:
            wanted[spec.subnet_id.lower()] = ("subnet", spec.subnet_id)
        if spec.nsg_id:
            wanted[spec.nsg_id.lower()] = ("network security group", spec.nsg_id)

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


def _tags_without_marker(tags):
    return {k: v for k, v in (tags or {}).items() if k != MARKER_TAG}


def run(session, params, check_mode):
    """The whole azure_vm run; returns (results per VM, failed)."""
    specs = build_specs(session, params)  # raises VMInputError before any request
    concurrency = params["concurrency"]
    present = params["state"] == "present"
    network_errors = check_network(session, specs, concurrency) if present else {}
    reads = run_pool(lambda s: read_actual(session, s.resource_group, s.name, s.nic_id, s.pip_id), specs,
                     concurrency)
    errors = ["%s: %s" % (spec.where, arm_error(err)) for spec, (_a, err) in zip(specs, reads, strict=True) if err]
    if errors:
        raise VMInputError("; ".join(errors))
    plans = [plan_present(session, s, a, network_errors) if present else plan_absent(session, s, a)
             for s, (a, _e) in zip(specs, reads, strict=True)]
    errors = [p.error for p in plans if p.error]
    if errors:
        raise VMInputError("; ".join(errors))

    if check_mode:
        for plan in plans:
            for step in plan.steps:
                session.operations.add(plan.spec.name, step.method, step.id, step.change)
        outcomes = [(plan.actual, None) for plan in plans]
    else:
        outcomes = run_pool(lambda p: apply_plan(session, p, params["timeout"]), plans, concurrency)

    results, failed = [], False
    for plan, (actual, err) in zip(plans, outcomes, strict=True):
        spec = plan.spec
        facts = report(actual or plan.actual)
        facts["name"] = spec.name
        facts["id"] = facts["id"] or spec.vm_id
        ops = session.operations.for_vm(spec.name)
        result = dict(facts, changed=bool(ops), failed=err is not None,
                      not_changeable_in_place=plan.not_changeable, operations=ops,
                      diff={"before": plan.before or {}, "after": plan.after or {}})
        if err is not None:
            failed = True
            result["msg"] = "%s: %s" % (spec.where, arm_error(err))
        elif plan.not_changeable:
            result["msg"] = ("%s: Azure cannot change %s in place; recreate the VM (state=absent, then present) "
                             "to apply" % (spec.name, ", ".join(plan.not_changeable)))
        else:
            result["msg"] = "%s: %s" % (spec.name, "; ".join(op["change"] for op in ops) or "up to date")
        result["tags"] = _tags_without_marker(result["tags"])
        results.append(result)
    return results, failed


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
    """Every VM matching name / resource group / tags, with IPs and power state, read concurrently."""
    resource_group, name = params.get("resource_group"), params.get("name")
    vms = session.compute.virtual_machines
    if name:
        if not resource_group:
            raise VMInputError("name needs resource_group")
        found = _get(vms.get, resource_group, name)
        listed = [found] if found else []
    elif resource_group:
        listed = [as_rest(vm) for vm in vms.list(resource_group)]
    else:
        listed = [as_rest(vm) for vm in vms.list_all()]
    wanted = parse_tag_filter(params.get("tags"))
    listed = [vm for vm in listed if _matches(vm.get("tags"), wanted)]
    reads = run_pool(lambda vm: read_actual(session, _split(vm["id"])[0], vm["name"]), listed,
                     params.get("concurrency") or 10)
    results = []
    for actual, err in reads:
        if err is not None:
            raise err
        if actual.vm:  # deleted between list and read: not there any more
            results.append(report(actual))
    return sorted(results, key=lambda r: (r["id"] or "").lower())
