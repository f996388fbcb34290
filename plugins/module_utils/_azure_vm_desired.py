# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What azure_vm is asked for, checked locally: the first phase of a run (see _azure_vm.py).

FIELDS is the one table of every compared field and per-VM setting: the options that set it and
their argument specs, the default a new VM gets, what leaving it out means for an existing VM
(LeftOut), and how Azure changes it in place. desired_vm() is the one place a DesiredVM is built
(NOT_GIVEN marks an option left out); desired_summary() turns it into the values compared with
what exists, and written when the VM is created.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re
from dataclasses import dataclass, field
from enum import Enum

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.sshca.azure.plugins.module_utils import _azure_rules as rules
from ansible_collections.sshca.azure.plugins.module_utils._runner import InputError
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import SSHKeyError, parse_public_key

MARKER_TAG = "sshca.azure.vm"
VM_ID_RE = re.compile(r"(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Compute/"
                      r"virtualMachines/([^/]+)$")
SUBNET_ID_RE = re.compile(r"(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/"
                          r"virtualNetworks/[^/]+/subnets/[^/]+$")
NSG_ID_RE = re.compile(r"(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/"
                       r"networkSecurityGroups/[^/]+$")
OS_DISK_SIZE_GB = (30, 4095)


class VMInputError(InputError):
    """A bad option; the message names the VM and the option."""


class NotGiven:
    """The marker for an option left out, whatever value a given option may take."""

    def __repr__(self):
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()


class LeftOut(Enum):
    """What an existing VM gets for an option left out."""

    DEFAULT = "the default, except in an update without the creation inputs: what the VM has"
    KEEP = "what the VM has (a new VM gets the default)"
    SETTING = "not compared: how this run treats the VM"


class CreationInput(Enum):
    """Inputs only a create needs: without one a spec can only update an existing VM."""

    SSH_KEY = "ssh_public_key"
    SUBNET = "subnet_id (or vnet_name and subnet_name)"


@dataclass(frozen=True)
class Field:
    options: dict  # the module options that set it, with their argument specs (none: not an option)
    default: object  # what a new VM gets when they are left out
    left_out: LeftOut
    in_place: object = None  # Azure changes it by "vm" PATCH, "nic" or "pip" PUT (per key for a dict); None: never


STR = {"type": "str"}
OS_DISK_SPEC = {
    "size_gb": {"type": "int"},
    "storage_account_type": {"type": "str",
                             "choices": ["Standard_LRS", "StandardSSD_LRS", "Premium_LRS", "StandardSSD_ZRS",
                                         "Premium_ZRS"]},
    "delete_option": {"type": "str", "choices": ["Delete", "Detach"]},
}
# Every compared field and per-VM setting, in one place. The options are the same at the top level
# (values for every VM) and in `vms` items. Compared fields are named as _azure_vm.summary() reads them.
FIELDS = {
    "location": Field({"location": STR}, None, LeftOut.KEEP),
    "size": Field({"size": STR}, "Standard_B2s", LeftOut.DEFAULT, "vm"),
    "image": Field({"image": {"type": "raw"}}, rules.IMAGE_PRESETS["ubuntu2404"], LeftOut.DEFAULT),
    "admin_username": Field({"admin_username": STR}, "azureuser", LeftOut.DEFAULT),
    "ssh_keys": Field({"ssh_public_key": {"type": "str", "no_log": False}}, None, LeftOut.KEEP),
    "zone": Field({"zone": STR}, None, LeftOut.KEEP),
    "identity": Field({"identity": {"type": "str", "choices": ["none", "system"]}}, "none", LeftOut.KEEP, "vm"),
    # Boot diagnostics on Azure's managed storage: the serial log when SSH does not answer.
    "boot_diagnostics": Field({}, True, LeftOut.DEFAULT, "vm"),
    "os_disk": Field({"os_disk": {"type": "dict", "options": OS_DISK_SPEC}},
                     {"size_gb": None, "storage_account_type": None, "delete_option": "Delete"}, LeftOut.KEEP,
                     {"delete_option": "vm"}),
    "subnet_id": Field({"subnet_id": STR, "vnet_name": STR, "subnet_name": STR}, None, LeftOut.KEEP, "nic"),
    "nsg_id": Field({"nsg_id": STR}, None, LeftOut.KEEP, "nic"),
    "public_ip": Field({"public_ip": {"type": "bool"}}, True, LeftOut.DEFAULT, "nic"),
    "dns_label": Field({"dns_label": STR}, None, LeftOut.KEEP, "pip"),
    "tags": Field({"tags": {"type": "dict"}}, {}, LeftOut.DEFAULT, "vm"),
    "append_tags": Field({"append_tags": {"type": "bool"}}, True, LeftOut.SETTING),
    "wait_for_ssh": Field({"wait_for_ssh": {"type": "bool"}}, False, LeftOut.SETTING),
    "ssh_timeout": Field({"ssh_timeout": {"type": "int"}}, 300, LeftOut.SETTING),
}
COMPARED = [name for name, row in FIELDS.items() if row.left_out is not LeftOut.SETTING]
VM_OPTION_SPEC = {option: spec for row in FIELDS.values() for option, spec in row.options.items()}
# At the top level, settings carry their defaults (documented); compared options stay None when
# left out, so "left out" can be told from "given".
TOP_LEVEL_SPEC = {option: dict(spec, default=row.default) if row.left_out is LeftOut.SETTING else spec
                  for row in FIELDS.values() for option, spec in row.options.items()}
VM_ITEM_SPEC = dict(VM_OPTION_SPEC, name={"type": "str", "required": True})


def in_place(field_name):
    """How Azure changes a (dotted) compared field in place: "vm", "nic", "pip", or None."""
    name, _dot, key = field_name.partition(".")
    how = FIELDS[name].in_place if name in FIELDS else None
    return how.get(key) if isinstance(how, dict) else how


@dataclass(frozen=True)
class DesiredVM:
    """One VM as asked for, checked locally; `wanted` holds NOT_GIVEN for options left out."""

    name: str
    where: str  # how messages name it: "web-1", or "vms[2] (web-1)"
    resource_group: str
    state: str
    vm_id: str
    nic_id: str
    pip_id: str
    wanted: dict = field(default_factory=dict)  # FIELDS name -> checked value, or NOT_GIVEN
    missing: tuple = ()  # CreationInput members a create would still need

    @property
    def disk_name(self):
        return self.name + "-osdisk"

    def value(self, name):
        """The given value, else the table's default."""
        given = self.wanted.get(name, NOT_GIVEN)
        return copy.deepcopy(FIELDS[name].default) if given is NOT_GIVEN else given

    def given(self, name):
        """The given value, else None."""
        given = self.wanted.get(name, NOT_GIVEN)
        return None if given is NOT_GIVEN else given

    @property
    def ssh_key(self):
        return self.given("ssh_keys")


class _Checking:
    """What a field check needs: where the VM is and how messages name it."""

    def __init__(self, session, resource_group, where):
        self.session, self.resource_group, self.where = session, resource_group, where

    def fail(self, problem):
        raise VMInputError("%s: %s" % (self.where, problem))

    def rule(self, check, value, name):
        try:
            return check(value, name)
        except rules.AzureRuleError as err:
            return self.fail(str(err))


def _check_ssh_key(text, ctx):
    try:
        key = parse_public_key(text, "%s: ssh_public_key" % ctx.where)
    except SSHKeyError as err:
        raise VMInputError(str(err)) from None
    if key.key_type not in rules.AZURE_SSH_KEY_TYPES:
        ctx.fail("ssh_public_key is %s; Azure takes only %s keys"
                 % (key.key_type, " and ".join(rules.AZURE_SSH_KEY_TYPES)))
    return key


def _check_subnet(given, ctx):
    if given["subnet_id"]:
        if not SUBNET_ID_RE.match(given["subnet_id"]):
            ctx.fail("subnet_id %r is not a subnet resource id" % given["subnet_id"])
        return given["subnet_id"]
    if not (given["vnet_name"] and given["subnet_name"]):
        ctx.fail("give subnet_id, or vnet_name and subnet_name")
    return ctx.session.resource_id(ctx.resource_group, "Microsoft.Network/virtualNetworks",
                                   "%s/subnets/%s" % (given["vnet_name"], given["subnet_name"]))


def _check_nsg(nsg_id, ctx):
    if not NSG_ID_RE.match(nsg_id):
        ctx.fail("nsg_id %r is not a network security group resource id" % nsg_id)
    return nsg_id


def _check_os_disk(os_disk, ctx):
    given = {k: v for k, v in os_disk.items() if v is not None}
    low, high = OS_DISK_SIZE_GB
    if given.get("size_gb") is not None and not low <= given["size_gb"] <= high:
        ctx.fail("os_disk.size_gb must be between %d and %d" % (low, high))
    return given


def _check_tags(tags, ctx):
    tags = ctx.rule(rules.check_tags, tags, "tags")
    if MARKER_TAG in tags:
        ctx.fail("tag %s is reserved for the resources this module makes" % MARKER_TAG)
    return tags


# How a given value is checked and normalised, per field (a field not listed is taken as given).
CHECKS = {
    "image": lambda image, ctx: ctx.rule(rules.image_reference, image, "image"),
    "admin_username": lambda name, ctx: ctx.rule(rules.check_admin_username, name, "admin_username"),
    "ssh_keys": _check_ssh_key,
    "zone": lambda zone, ctx: str(zone),
    "os_disk": _check_os_disk,
    "subnet_id": _check_subnet,
    "nsg_id": _check_nsg,
    "dns_label": lambda label, ctx: ctx.rule(rules.check_dns_label, label, "dns_label"),
    "tags": _check_tags,
}


def desired_vm(session, params, opts, where):
    """The one place a DesiredVM is built: `opts` are one VM's options (None: left out)."""
    name = opts.get("name")
    try:
        rules.check_vm_name(name, where if where == "name" else where + ".name")
    except rules.AzureRuleError as err:
        raise VMInputError(str(err)) from None
    rg = params["resource_group"]
    ids = {"vm_id": session.resource_id(rg, "Microsoft.Compute/virtualMachines", name),
           "nic_id": session.resource_id(rg, "Microsoft.Network/networkInterfaces", name + "-nic"),
           "pip_id": session.resource_id(rg, "Microsoft.Network/publicIPAddresses", name + "-pip")}
    where = name if where == "name" else "%s (%s)" % (where, name)
    if params["state"] == "absent":
        return DesiredVM(name, where, rg, "absent", **ids)
    ctx, wanted = _Checking(session, rg, where), {}
    for field_name, row in FIELDS.items():
        given = {option: opts.get(option) for option in row.options}
        if all(value is None for value in given.values()):
            wanted[field_name] = NOT_GIVEN
            continue
        value = given if len(given) > 1 else given[next(iter(given))]
        wanted[field_name] = CHECKS[field_name](value, ctx) if field_name in CHECKS else value
    vm = DesiredVM(name, where, rg, "present", wanted=wanted, missing=tuple(
        need for need, field_name in ((CreationInput.SSH_KEY, "ssh_keys"), (CreationInput.SUBNET, "subnet_id"))
        if wanted[field_name] is NOT_GIVEN), **ids)
    if vm.given("dns_label") and not vm.value("public_ip"):
        ctx.fail("dns_label needs public_ip: true")
    return vm


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


def desired_vms(session, params):
    """Every VM's DesiredVM from `name` or `vms`, an item's options replacing the top-level ones."""
    items = [{"name": params["name"]}] if params.get("name") else list(params.get("vms") or [])
    if not items:
        raise VMInputError("give name or a non-empty vms list")
    vms, seen = [], set()
    validator = ArgumentSpecValidator(VM_ITEM_SPEC)
    for index, item in enumerate(items):
        where = "name" if params.get("name") else "vms[%d]" % index
        if not isinstance(item, dict):
            raise VMInputError("%s: each item of vms must be a dict, not %s" % (where, type(item).__name__))
        checked = validator.validate(item)
        if checked.error_messages:
            raise VMInputError("%s: %s" % (where, "; ".join(checked.error_messages)))
        own = checked.validated_parameters
        opts = {k: own[k] if own.get(k) is not None else params.get(k) for k in VM_ITEM_SPEC}
        vm = desired_vm(session, params, opts, where)
        if vm.name.lower() in seen:
            raise VMInputError("%s: VM %s is listed twice" % (where, vm.name))
        seen.add(vm.name.lower())
        vms.append(vm)
    return vms


# --- what the VM should have, given what it has ------------------------------------------------


def _latest_or_given(image, have, vm):
    if image["version"].lower() == "latest" and have:
        return dict(image, version=have["version"])  # `latest` is satisfied by whatever was deployed
    return image


# How a wanted value (given or default) becomes the compared one, given what the VM has.
MERGES = {
    "image": _latest_or_given,
    "ssh_keys": lambda key, have, vm: [key.fingerprint()] if key else None,
    "os_disk": lambda disk, have, vm: dict(have or FIELDS["os_disk"].default, **disk),
    "tags": lambda tags, have, vm: dict(have or {}, **tags) if vm.value("append_tags") else dict(tags),
}


def desired_summary(vm, before):
    """The compared fields as `vm` wants them, given `before` (_azure_vm.summary() of what exists, or None)."""
    after = {}
    for name in COMPARED:
        row = FIELDS[name]
        if vm.wanted[name] is NOT_GIVEN and before is not None and (row.left_out is LeftOut.KEEP or vm.missing):
            after[name] = before[name]
            continue
        value, merge = vm.value(name), MERGES.get(name)
        after[name] = merge(value, (before or {}).get(name), vm) if merge else value
    return after
