# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure's rules for VM names, the Linux admin user, marketplace images and tags, in one table.

Every check azure_vm and the enrollment contract make before talking to Azure is here, so a
bad input fails locally, naming the field, and never half-way through a create.

API (plain functions, no Azure SDK needed):
- AzureRuleError(field, problem): an InputError (a ValueError); `.field`, `.problem`; str() is "field: problem".
- check_vm_name(name, field="name") -> name
- check_admin_username(name, field="admin_username") -> name
- check_dns_label(label, field="dns_label") -> label
- check_tags(tags, field="tags") -> {str: str}   (Azure's count, length and character limits)
- image_reference(image, field="image") -> {"publisher", "offer", "sku", "version"}
  (a preset name from IMAGE_PRESETS, or a dict of those keys; version defaults to "latest")
- The tables themselves: RESERVED_ADMIN_USERNAMES, ADMIN_USERNAME_MAX, IMAGE_PRESETS,
  TAG_COUNT_MAX, TAG_NAME_MAX, TAG_VALUE_MAX, TAG_NAME_FORBIDDEN, AZURE_SSH_KEY_TYPES.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.sshca.azure.plugins.module_utils._runner import InputError

# A Linux VM name is 1-64 characters; it is also the host name here, so no dots or underscores.
VM_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?$")

# osProfile.adminUsername "Disallowed values", as the Compute REST API spec lists them
# (Azure/azure-rest-api-specs, specification/compute/resource-manager/Microsoft.Compute/
# ComputeRP/stable/2024-07-01/virtualMachine.json, OSProfile.adminUsername). Azure compares
# them without regard to case.
AZURE_DISALLOWED_ADMIN_USERNAMES = frozenset((
    "administrator", "admin", "user", "user1", "test", "user2", "test1", "user3", "admin1", "1", "123", "a",
    "actuser", "adm", "admin2", "aspnet", "backup", "console", "david", "guest", "john", "owner", "root",
    "server", "sql", "support", "support_388945a0", "sys", "test2", "test3", "user4", "user5",
))
# System accounts Ubuntu's images ship (Debian's base-passwd, OpenSSH, systemd, D-Bus, rsyslog,
# apt): Azure accepts these, then provisioning the admin user fails on the VM.
IMAGE_SYSTEM_USERS = frozenset((
    "daemon", "bin", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data", "list",
    "irc", "nobody", "sshd", "systemd-network", "systemd-resolve", "systemd-timesync", "messagebus", "syslog",
    "_apt",
))
RESERVED_ADMIN_USERNAMES = AZURE_DISALLOWED_ADMIN_USERNAMES | IMAGE_SYSTEM_USERS
# Azure takes 1-64 characters; Ubuntu's useradd takes at most 32, lowercase, not starting with a digit or '-'.
ADMIN_USERNAME_MAX = 32
ADMIN_USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]*$")

# A public IP's DNS label: <label>.<region>.cloudapp.azure.com.
DNS_LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")

# Azure accepts RSA keys of 2048 bits or more and Ed25519 keys for Linux VMs; not ECDSA.
AZURE_SSH_KEY_TYPES = ("ssh-rsa", "ssh-ed25519")

IMAGE_PRESETS = {
    "ubuntu2204": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2",
                   "version": "latest"},
    "ubuntu2404": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
}
IMAGE_KEYS = ("publisher", "offer", "sku", "version")

# Azure Resource Manager's tag limits (per resource).
TAG_COUNT_MAX = 50
TAG_NAME_MAX = 512
TAG_VALUE_MAX = 256
TAG_NAME_FORBIDDEN = "<>%&\\?/"


class AzureRuleError(InputError):
    """An input Azure would refuse; names the field (e.g. `vms[2].admin_username`, `tags`)."""

    def __init__(self, field, problem):
        self.field = field
        self.problem = problem
        super(AzureRuleError, self).__init__("%s: %s" % (field, problem))


def check_vm_name(name, field="name"):
    if not isinstance(name, str) or not VM_NAME_RE.match(name):
        raise AzureRuleError(field, "%r must be 1-64 letters, digits or '-', starting and ending with a letter or "
                                    "digit" % (name,))
    return name


def check_admin_username(name, field="admin_username"):
    if not isinstance(name, str) or not name:
        raise AzureRuleError(field, "must be a non-empty string")
    if name.lower() in RESERVED_ADMIN_USERNAMES:
        raise AzureRuleError(field, "%r is a name Azure reserves or the image already uses; choose another, such "
                                    "as azureuser" % name)
    if len(name) > ADMIN_USERNAME_MAX or not ADMIN_USERNAME_RE.match(name):
        raise AzureRuleError(field, "%r is not a Linux user name Azure can create (1-%d lowercase letters, digits, "
                                    "'_' or '-', not starting with a digit or '-')" % (name, ADMIN_USERNAME_MAX))
    return name


def check_dns_label(label, field="dns_label"):
    if not isinstance(label, str) or not DNS_LABEL_RE.match(label):
        raise AzureRuleError(field, "%r must be 3-63 lowercase letters, digits or '-', starting with a letter"
                             % (label,))
    return label


def check_tags(tags, field="tags"):
    """Tags as Azure stores them (strings), or AzureRuleError for what ARM would refuse."""
    if not isinstance(tags, dict):
        raise AzureRuleError(field, "must be a dict of tag name to value, not %s" % type(tags).__name__)
    if len(tags) > TAG_COUNT_MAX:
        raise AzureRuleError(field, "has %d tags; Azure allows at most %d per resource" % (len(tags), TAG_COUNT_MAX))
    checked = {}
    for name, value in tags.items():
        name, value = str(name), "" if value is None else str(value)
        bad = sorted(set(name) & set(TAG_NAME_FORBIDDEN))
        if not name or len(name) > TAG_NAME_MAX or bad:
            raise AzureRuleError(field, "tag name %r must be 1-%d characters without any of %s"
                                 % (name[:40], TAG_NAME_MAX, " ".join(TAG_NAME_FORBIDDEN)))
        if len(value) > TAG_VALUE_MAX:
            raise AzureRuleError(field, "value of tag %r has %d characters; Azure allows at most %d"
                                 % (name, len(value), TAG_VALUE_MAX))
        checked[name] = value
    return checked


def image_reference(image, field="image"):
    """The marketplace image reference for a preset name or a dict of publisher, offer, sku[, version]."""
    if isinstance(image, str):
        if image not in IMAGE_PRESETS:
            raise AzureRuleError(field, "%r is not a preset (%s) or a dict of publisher, offer, sku, version"
                                 % (image, ", ".join(sorted(IMAGE_PRESETS))))
        return dict(IMAGE_PRESETS[image])
    if isinstance(image, dict):
        missing = [k for k in IMAGE_KEYS[:3] if not image.get(k)]
        unknown = sorted(set(image) - set(IMAGE_KEYS))
        if missing or unknown:
            raise AzureRuleError(field, "needs publisher, offer, sku and optionally version (missing: %s; unknown: %s)"
                                 % (", ".join(missing) or "none", ", ".join(unknown) or "none"))
        return {"publisher": image["publisher"], "offer": image["offer"], "sku": image["sku"],
                "version": str(image.get("version") or "latest")}
    raise AzureRuleError(field, "must be a preset name or a dict, not %s" % type(image).__name__)
