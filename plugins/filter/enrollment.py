# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters enroll_targets, pin_host_keys, host_key_vms and fleet_vms: the enrollment contract
(module_utils/_enrollment.py) for enroll.yml and host_enroll; documented in the .yml files beside this one."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.sshca.azure.plugins.module_utils import _enrollment as contract

KINDS = ("sshca_fleet", "sshca_hosts", "sshca_hosts_group")


def _plain(value):
    """Ansible's lazy containers -> plain dicts and lists, so the contract sees ordinary data."""
    if isinstance(value, dict) or hasattr(value, "keys"):
        return {str(k): _plain(value[k]) for k in value}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def enroll_targets(entries, kind, admin_user="azureuser", admin_principals=("sshca-admin",), access_rules=None,
                   accounts=None, resource_group="", vms=None, group="", host_key_types=None):
    """sshca_fleet / sshca_hosts / an inventory group's hostvars -> the targets to enroll (dicts)."""
    if kind not in KINDS:
        raise AnsibleFilterError("enroll_targets: kind must be one of %s, not %r" % (", ".join(KINDS), kind))
    try:
        setup = contract.settings(admin_user, _plain(admin_principals), _plain(access_rules), _plain(accounts),
                                  resource_group, creates_vms=kind == "sshca_fleet")
        if kind == "sshca_fleet":
            targets = contract.fleet_targets(_plain(entries), setup, None if vms is None else _plain(vms))
        elif kind == "sshca_hosts":
            targets = contract.hosts_targets(_plain(entries), setup,
                                             key_types=None if host_key_types is None else _plain(host_key_types))
        else:  # read only the variables the contract knows: templating all of a host's would be slow
            hostvars = {str(name): {var: _plain(entries[name][var]) for var in contract.HOSTVARS
                                    if var in entries[name]} for name in entries}
            targets = contract.group_targets(hostvars, setup, group or kind)
    except contract.EnrollmentError as err:
        raise AnsibleFilterError("enroll: %s" % err) from None
    return [target.as_dict() for target in targets]


def _targets(value, name):
    try:
        return [contract.target_from_dict(t) for t in _plain(value)]
    except (TypeError, KeyError, AttributeError):
        raise AnsibleFilterError("%s: input must be the list enroll_targets returns" % name) from None


def pin_host_keys(targets, results):
    """Targets whose keys Azure reads get the keys of sshca.azure.azure_vm_run_command's results."""
    try:
        pinned = contract.pin_host_keys(_targets(targets, "pin_host_keys"), _plain(results or []))
    except contract.EnrollmentError as err:
        raise AnsibleFilterError("enroll: %s" % err) from None
    return [target.as_dict() for target in pinned]


def host_key_vms(targets):
    """The VMs whose host keys Azure's Run Command must read, as azure_vm_run_command's O(vms)."""
    return contract.run_command_vms(_targets(targets, "host_key_vms"))


def fleet_vms(fleet):
    """sshca_fleet (already checked by enroll_targets) -> sshca.azure.azure_vm's O(vms)."""
    return contract.azure_vm_specs(_plain(fleet))


class FilterModule(object):
    def filters(self):
        return {
            "enroll_targets": enroll_targets,
            "pin_host_keys": pin_host_keys,
            "host_key_vms": host_key_vms,
            "fleet_vms": fleet_vms,
        }
