# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The enrollment contract: what enrolls a host, in one place.

enroll.yml, the host_enroll role and the Terraform checks all go through this module (through
the filters in plugins/filter/enrollment.py), never through Jinja-built JSON:

- targets(kind, entries, settings, vms=None): sshca_fleet, sshca_hosts or an inventory group ->
  [Target], validated; every error is one line naming the host and the field (EnrollmentError),
  raised before anything is written anywhere;
- Target.principals: the host certificate principals, from the operator and Azure only (VM name,
  address, private IP, the public DNS-label FQDN, extra principals), in the order Terraform's
  enrolled_vm module outputs them as `host_certificate_principals`;
- account_principals(rules, host_tags, admin_user, admin_principals): local account -> user
  principals, by real tag matching (a rule applies when its tags are a subset of the host's);
  rule_principals(rules, host_tags): the part of it user-CA certificates may use (the admin
  principals are accepted only from admin-CA certificates, and no access rule may name them);
- host keys: pinned from Azure's Run Command output (pin_host_keys) or given as `host_keys`, each
  a HostKey with its fingerprint and the certificate path sshd is given;
- HOST_FIELDS: the keys an `sshca_hosts` entry may have (Terraform's `sshca_host` is checked
  against it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from dataclasses import asdict, dataclass, field, fields

from ansible_collections.sshca.azure.plugins.module_utils._azure_rules import (
    AzureRuleError,
    check_admin_username,
    check_dns_label,
    check_tags,
    check_vm_name,
    image_reference,
)
from ansible_collections.sshca.azure.plugins.module_utils._runner import InputError
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import SSHKeyError, parse_openssh_public_key

# A name sshca uses as a host principal and a folder name on the controller.
HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
# Where the controller connects: a DNS name or an IPv4/IPv6 address.
ADDRESS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]*$")
# useradd's default NAME_REGEX (Debian and Ubuntu), at most 32 characters.
LINUX_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# sshd splits AuthorizedPrincipalsFile lines on whitespace and certificate principals on commas.
PRINCIPAL_FORBIDDEN = (" ", "\t", ",", "\n", "\r")
HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")
# The line Run Command's script prints per host key: marker, file, key line.
RUN_COMMAND_MARKER = "sshca-host-key"
HOST_KEY_FILE_RE = re.compile(r"^/etc/ssh/ssh_host_(ed25519|ecdsa|rsa)_key\.pub$")
# Reads the public host keys sshd serves; the marker keeps any other output out of the pins.
HOST_KEYS_SCRIPT = [
    "for f in /etc/ssh/ssh_host_*_key.pub; do",
    '  [ -r "$f" ] && printf \'%s %s %s\\n\' ' + RUN_COMMAND_MARKER + ' "$f" "$(head -n 1 "$f")"',
    "done; true",
]


class EnrollmentError(InputError):
    """Bad enrollment input: str() is one line naming the host and the field."""

    def __init__(self, where, problem):
        self.where = where
        self.problem = problem
        super(EnrollmentError, self).__init__("%s: %s" % (where, problem))


@dataclass(frozen=True)
class HostKey:
    """A pinned public host key: `key` is `type base64` (no comment)."""

    family: str
    key: str
    fingerprint: str

    @property
    def certificate_path(self):
        return "/etc/ssh/ssh_host_%s_key-cert.pub" % self.family


@dataclass
class HostInput:
    """One entry of `sshca_hosts` (and, by hostvars, of an inventory group); its fields are the
    only keys an entry may have."""

    name: str
    address: str = ""
    private_ip: str = ""
    fqdn: str = ""
    extra_principals: list = field(default_factory=list)
    host_tags: dict = field(default_factory=dict)
    vm_id: str = ""
    vm_name: str = ""
    host_keys: list = field(default_factory=list)
    accept_new_host_keys: bool = False


@dataclass
class FleetInput:
    """One entry of `sshca_fleet`: a VM to create, then enroll."""

    name: str
    host_tags: dict = field(default_factory=dict)
    size: str = ""
    image: object = None
    dns_label: str = ""
    extra_principals: list = field(default_factory=list)


HOST_FIELDS = tuple(f.name for f in fields(HostInput))
FLEET_FIELDS = tuple(f.name for f in fields(FleetInput))
# Inventory host variables that feed a HostInput field (the rest of an inventory host is ignored).
HOSTVARS = {"ansible_host": "address", "sshca_private_ip": "private_ip", "sshca_fqdn": "fqdn",
            "sshca_extra_principals": "extra_principals", "sshca_host_tags": "host_tags", "sshca_vm_id": "vm_id",
            "sshca_vm_name": "vm_name", "sshca_host_keys": "host_keys",
            "sshca_accept_new_host_keys": "accept_new_host_keys"}


@dataclass
class Target:
    """A host to enroll, as every later step sees it."""

    name: str
    address: str
    private_ip: str
    fqdn: str
    extra_principals: list
    host_tags: dict
    vm_id: str
    vm_name: str
    resource_group: str
    host_keys: list  # [HostKey]: the keys to pin and sign
    host_key_source: str  # azure (Run Command), given (host_keys), accept-new, or pending (Run Command to come)
    principals: list
    accounts: dict  # every account that logs in -> its principals, whichever CA signs them
    user_ca_accounts: dict = field(default_factory=dict)  # the same from access rules only: the user CA's

    @property
    def vm_reference(self):
        return bool(self.vm_id or (self.vm_name and self.resource_group))

    def known_hosts(self):
        """The pinned known_hosts lines: the keys answer for the name and the address."""
        patterns = ",".join(dict.fromkeys([self.name, self.address]))
        return "".join("%s %s\n" % (patterns, key.key) for key in self.host_keys)

    def as_dict(self):
        out = asdict(self)
        out["host_keys"] = [dict(asdict(key), certificate_path=key.certificate_path) for key in self.host_keys]
        out["vm_reference"] = self.vm_reference
        out["known_hosts"] = self.known_hosts()
        out["aliases"] = [p for p in self.principals if p not in (self.name, self.address, self.private_ip)]
        return out


# --- field checks -----------------------------------------------------------------------------


def _text(value, where, name, required=False, pattern=None, what=""):
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise EnrollmentError(where, "%s must be a string, not %s" % (name, type(value).__name__))
    if required and not value:
        raise EnrollmentError(where, "%s is required" % name)
    if value and pattern is not None and not pattern.match(value):
        raise EnrollmentError(where, "%s %r is not %s" % (name, value[:80], what))
    return value


def check_principal(value, where, name):
    if not isinstance(value, str) or not value.strip():
        raise EnrollmentError(where, "%s must be a non-empty string" % name)
    bad = [repr(c) for c in PRINCIPAL_FORBIDDEN if c in value]
    if bad:
        raise EnrollmentError(where, "%s %r contains %s; principals may not contain spaces, commas or newlines"
                              % (name, value[:80], ", ".join(bad)))
    return value


def check_linux_user(value, where, name):
    if not isinstance(value, str) or not LINUX_USER_RE.match(value):
        raise EnrollmentError(where, "%s %r is not a valid Linux user name (1-32 lowercase letters, digits, '_' or "
                                     "'-', starting with a letter or '_')" % (name, str(value)[:80]))
    return value


def _list_of(value, where, name):
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise EnrollmentError(where, "%s must be a list, not %s" % (name, type(value).__name__))
    return list(value)


def _host_tags(value, where):
    if value is None:
        return {}
    try:
        return check_tags(value, "host_tags")
    except AzureRuleError as err:
        raise EnrollmentError(where, str(err)) from None


def _known_keys(where, entry, allowed):
    """A dict with only the allowed keys, or one line naming the first unknown one."""
    if not isinstance(entry, dict):
        raise EnrollmentError(where, "must be a dict {%s}" % ", ".join(allowed))
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise EnrollmentError(where, "unknown key %s (known: %s)" % (unknown[0], ", ".join(allowed)))
    return entry


def _bool(value, where, name):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "false", "no"):
        return value.lower() in ("true", "yes")
    raise EnrollmentError(where, "%s must be true or false" % name)


def parse_host_key(line, where, name):
    """One OpenSSH public key line -> HostKey (comment dropped)."""
    if not isinstance(line, str):
        raise EnrollmentError(where, "%s must be an OpenSSH public key line" % name)
    try:
        key = parse_openssh_public_key(line, name, min_rsa_bits=2048)
    except SSHKeyError as err:
        raise EnrollmentError(where, str(err)) from None
    return HostKey(key.family, key.openssh_no_comment(), key.fingerprint())


def _unique_keys(keys, where):
    seen = {}
    for key in keys:
        if key.family in seen and seen[key.family] != key:
            raise EnrollmentError(where, "host_keys has two %s keys; a host serves one key per type" % key.family)
        seen[key.family] = key
    return list(seen.values())


# --- the rules: who may log in as which account ---------------------------------------------


@dataclass(frozen=True)
class AccessRule:
    principal: str
    accounts: tuple
    host_tags: dict

    def applies_to(self, host_tags):
        """Every tag of the rule is on the host with the same value: a subset test on pairs."""
        return all(name in host_tags and host_tags[name] == value for name, value in self.host_tags.items())


def access_rules(rules):
    if rules is None:
        return []
    if not isinstance(rules, (list, tuple)):
        raise EnrollmentError("sshca_access_rules", "must be a list of {principal, accounts, host_tags}")
    checked = []
    for index, rule in enumerate(rules):
        where = "sshca_access_rules[%d]" % index
        _known_keys(where, rule, ("principal", "accounts", "host_tags"))
        principal = check_principal(rule.get("principal"), where, "principal")
        accounts = _list_of(rule.get("accounts"), where, "accounts")
        if not accounts:
            raise EnrollmentError(where, "accounts must name at least one local account")
        for account in accounts:
            check_linux_user(account, where, "account")
        checked.append(AccessRule(principal, tuple(accounts), _host_tags(rule.get("host_tags"), where)))
    return checked


def account_principals(rules, host_tags, admin_user, admin_principals):
    """Local account -> user principals allowed to log in as it on a host with these tags.

    The admin account always takes the admin principals; an account no rule maps is left out.
    """
    mapped = {admin_user: list(admin_principals)}
    for account, principals in rule_principals(rules, host_tags).items():
        mapped[account] = list(dict.fromkeys(mapped.get(account, []) + principals))
    return {account: principals for account, principals in mapped.items() if principals}


def rule_principals(rules, host_tags):
    """Local account -> principals the access rules allow it on a host with these tags: the ones a
    user-CA certificate may log in with."""
    mapped = {}
    for rule in rules:
        if rule.applies_to(host_tags):
            for account in rule.accounts:
                principals = mapped.setdefault(account, [])
                if rule.principal not in principals:
                    principals.append(rule.principal)
    return mapped


def host_principals(name, address, private_ip, fqdn, extra_principals):
    """Host certificate principals in Terraform's order, each once, empty ones left out."""
    return list(dict.fromkeys(p for p in [name, address, private_ip, fqdn, *list(extra_principals)] if p))


# --- settings shared by every target ----------------------------------------------------------


@dataclass
class Settings:
    admin_user: str
    admin_principals: list
    rules: list
    resource_group: str


def settings(admin_user="azureuser", admin_principals=("sshca-admin",), rules=None, accounts=None,
             resource_group="", creates_vms=False):
    admin_user = check_linux_user(admin_user, "sshca_admin_user", "admin user")
    if creates_vms:
        try:
            check_admin_username(admin_user, "sshca_admin_user")
        except AzureRuleError as err:
            raise EnrollmentError("sshca_admin_user", err.problem) from None
    principals = [check_principal(p, "sshca_admin_principal", "admin principal")
                  for p in _list_of(admin_principals, "sshca_admin_principal", "admin principals")]
    for index, account in enumerate(_list_of(accounts, "sshca_accounts", "accounts")):
        where = "sshca_accounts[%d]" % index
        _known_keys(where, account, ("name", "shell", "groups"))
        check_linux_user(account.get("name"), where, "name")
    checked_rules = access_rules(rules)
    for index, rule in enumerate(checked_rules):
        if rule.principal in principals:
            raise EnrollmentError("sshca_access_rules[%d]" % index, "principal %r is an admin principal, which only "
                                  "admin-CA certificates carry" % rule.principal)
    return Settings(admin_user, principals, checked_rules,
                    _text(resource_group, "sshca_resource_group", "resource group"))


# --- inputs -> targets --------------------------------------------------------------------------


def _entry(kind, index, entry, allowed):
    label = entry.get("name") if isinstance(entry, dict) else None
    where = "%s[%d]%s" % (kind, index, " (%s)" % label if isinstance(label, str) and label else "")
    _known_keys(where, entry, allowed)
    return where


def _target(where, host, setup, source_if_vm):
    name = _text(host.name, where, "name", required=True, pattern=HOST_NAME_RE,
                 what="a host name (letters, digits, '.', '_' or '-')")
    address = _text(host.address or name, where, "address", pattern=ADDRESS_RE, what="a host name or IP address")
    private_ip = _text(host.private_ip, where, "private_ip", pattern=ADDRESS_RE, what="an IP address")
    fqdn = _text(host.fqdn, where, "fqdn", pattern=ADDRESS_RE, what="a DNS name")
    extra = [check_principal(p, where, "extra_principals entry")
             for p in _list_of(host.extra_principals, where, "extra_principals")]
    tags = _host_tags(host.host_tags, where)
    vm_id = _text(host.vm_id, where, "vm_id")
    if vm_id and not re.match(r"(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/"
                              r"virtualMachines/[^/]+$", vm_id):
        raise EnrollmentError(where, "vm_id %r is not a VM resource id" % vm_id[:120])
    vm_name = _text(host.vm_name, where, "vm_name")
    if vm_name:
        try:
            check_vm_name(vm_name, "vm_name")
        except AzureRuleError as err:
            raise EnrollmentError(where, str(err)) from None
    keys = _unique_keys([parse_host_key(line, where, "host_keys[%d]" % i)
                         for i, line in enumerate(_list_of(host.host_keys, where, "host_keys"))], where)
    accept_new = _bool(host.accept_new_host_keys, where, "accept_new_host_keys")
    target = Target(name=name, address=address, private_ip=private_ip, fqdn=fqdn, extra_principals=extra,
                    host_tags=tags, vm_id=vm_id, vm_name=vm_name, resource_group=setup.resource_group,
                    host_keys=keys, host_key_source="",
                    principals=host_principals(name, address, private_ip, fqdn, extra),
                    accounts=account_principals(setup.rules, tags, setup.admin_user, setup.admin_principals),
                    user_ca_accounts=rule_principals(setup.rules, tags))
    if keys:
        target.host_key_source = "given"
    elif target.vm_reference:
        target.host_key_source = source_if_vm
    elif accept_new:
        target.host_key_source = "accept-new"
    else:
        raise EnrollmentError(where, "no way to check its host keys: give vm_id (or vm_name with "
                                     "sshca_resource_group) to read them through Azure, host_keys, or opt in to "
                                     "trust on first use with accept_new_host_keys: true")
    return target


def _unique_names(names):
    seen = set()
    for name in names:
        if name in seen:
            raise EnrollmentError("host %s" % name, "is listed twice")
        seen.add(name)


def hosts_targets(entries, setup, kind="sshca_hosts", key_types=None):
    """sshca_hosts -> targets; with key_types, only host keys of those families are kept, and a
    host whose keys are known but none of them of those types fails."""
    targets = []
    for index, entry in enumerate(_list_of(entries, kind, "hosts")):
        where = _entry(kind, index, entry, HOST_FIELDS)
        target = _target(where, HostInput(**entry) if "name" in entry else HostInput(name=""), setup, "pending")
        if key_types is not None and target.host_keys:
            kept = [key for key in target.host_keys if key.family in key_types]
            if not kept:
                raise EnrollmentError(where, "none of its host keys (%s) is of a type to certify (%s)" % (
                    ", ".join(key.family for key in target.host_keys), ", ".join(key_types)))
            target.host_keys = kept
        targets.append(target)
    _unique_names(t.name for t in targets)
    return targets


def group_targets(hostvars, setup, group="sshca_hosts_group"):
    """Inventory hosts (name -> their variables) -> targets; only the sshca_* variables of
    HOSTVARS (and ansible_host) are read."""
    entries = []
    for name in hostvars:
        variables = hostvars[name]
        entry = {"name": name}
        for variable, key in HOSTVARS.items():
            if variable in variables and variables[variable] is not None:
                entry[key] = variables[variable]
        entries.append(entry)
    return hosts_targets(entries, setup, kind="group %s" % group)


def fleet_targets(entries, setup, vms=None):
    """sshca_fleet -> targets; before the VMs exist (vms None) only validates and returns []."""
    checked = []
    for index, entry in enumerate(_list_of(entries, "sshca_fleet", "fleet")):
        where = _entry("sshca_fleet", index, entry, FLEET_FIELDS)
        vm = FleetInput(**entry) if "name" in entry else FleetInput(name="")
        try:
            check_vm_name(vm.name, "name")
            if vm.image is not None:
                image_reference(vm.image, "image")
            if vm.dns_label:
                check_dns_label(vm.dns_label, "dns_label")
        except AzureRuleError as err:
            raise EnrollmentError(where, str(err)) from None
        _host_tags(vm.host_tags, where)
        for principal in _list_of(vm.extra_principals, where, "extra_principals"):
            check_principal(principal, where, "extra_principals entry")
        checked.append((where, vm))
    _unique_names(vm.name for where, vm in checked)
    if vms is None:
        return []
    made = {vm.get("name"): vm for vm in vms}
    targets = []
    for where, vm in checked:
        actual = made.get(vm.name)
        if not actual or not actual.get("public_ip"):  # check mode: not created yet, nothing to enroll
            continue
        host = HostInput(name=vm.name, address=actual["public_ip"], private_ip=actual.get("private_ip") or "",
                         fqdn=actual.get("fqdn") or "", extra_principals=vm.extra_principals,
                         host_tags=vm.host_tags, vm_id=actual.get("id") or "", vm_name=vm.name)
        targets.append(_target(where, host, setup, "pending"))
    return targets


def azure_vm_specs(entries):
    """sshca_fleet -> azure_vm's `vms`: the host tags become the VM's tags."""
    specs = []
    for entry in entries:
        spec = {"name": entry["name"], "tags": dict(entry.get("host_tags") or {})}
        for key in ("size", "image", "dns_label"):
            if entry.get(key):
                spec[key] = entry[key]
        if entry.get("dns_label"):
            spec["public_ip"] = True
        specs.append(spec)
    return specs


# --- pinning host keys from Azure's Run Command -----------------------------------------------


def run_command_stdout(message):
    """The [stdout] part of a RunShellScript message (`Enable succeeded: \\n[stdout]\\n...\\n[stderr]\\n...`)."""
    if "[stdout]\n" not in message:
        return ""
    stdout = message.split("[stdout]\n", 1)[1]
    return stdout.rsplit("\n[stderr]\n", 1)[0]


def host_keys_from_run_command(message, where):
    """The host keys the marker lines of the script's output name -> [HostKey]."""
    keys = []
    for line in run_command_stdout(message).splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[0] != RUN_COMMAND_MARKER:
            continue
        match = HOST_KEY_FILE_RE.match(parts[1])
        if not match:
            continue
        key = parse_host_key(parts[2], where, parts[1])
        if key.family != match.group(1):
            raise EnrollmentError(where, "%s holds a key of type %s" % (parts[1], key.family))
        keys.append(key)
    if not keys:
        stderr = message.rsplit("[stderr]\n", 1)[-1].strip() if "[stderr]\n" in message else message.strip()
        raise EnrollmentError(where, "Run Command found no public host key in /etc/ssh (%s)"
                              % (" ".join(stderr.split())[:200] or "no output"))
    return _unique_keys(keys, where)


def pin_host_keys(targets, results):
    """Targets whose keys come from Azure get the keys Run Command read: `results` are
    sshca.azure.azure_vm_run_command's with read_host_keys (id, resource_group, name, host_keys)."""
    by_id = {str(r.get("id", "")).lower(): r for r in results}
    by_name = {(str(r.get("resource_group", "")).lower(), str(r.get("name", "")).lower()): r for r in results}
    for target in targets:
        if target.host_key_source != "pending":
            continue
        result = by_id.get(target.vm_id.lower()) if target.vm_id else \
            by_name.get((target.resource_group.lower(), target.vm_name.lower()))
        where = "host %s" % target.name
        if not result or not result.get("host_keys"):
            raise EnrollmentError(where, "Azure's Run Command returned no host keys for its VM")
        target.host_keys = _unique_keys([parse_host_key(key.get("key"), where, "host key from Run Command")
                                         for key in result["host_keys"]], where)
        target.host_key_source = "azure"
    return targets


def target_from_dict(data):
    """A Target passed through Ansible (as_dict) -> Target."""
    data = dict(data)
    for key in ("vm_reference", "known_hosts", "aliases"):
        data.pop(key, None)
    data["host_keys"] = [HostKey(key["family"], key["key"], key["fingerprint"]) for key in data.get("host_keys") or []]
    return Target(**data)


def run_command_vms(targets):
    """The VMs whose host keys Run Command must read: [{id} or {name, resource_group}]."""
    vms = []
    for target in targets:
        if target.host_key_source == "pending":
            vms.append({"id": target.vm_id} if target.vm_id else
                       {"name": target.vm_name, "resource_group": target.resource_group})
    return vms
