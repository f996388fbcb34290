# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters day2_target and cert_state (documented in the .yml files beside this one)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.sshca.azure.plugins.module_utils._enrolled import cert_state as _cert_state


def day2_target(host_vars):
    """An inventory host's variables -> the host as renew, revoke and status take it."""
    try:
        name = host_vars["inventory_hostname"]
    except (KeyError, TypeError):
        raise AnsibleFilterError("day2_target: input must be a host's variables (hostvars[name])") from None
    return {
        "name": name,
        "address": host_vars.get("ansible_host") or name,
        "private_ip": host_vars.get("sshca_private_ip") or "",
        "host_tags": dict(host_vars.get("sshca_host_tags") or {}),
        "vm_id": host_vars.get("sshca_vm_id") or "",
        "vm_name": host_vars.get("sshca_vm_name") or "",
    }


def cert_state(valid_after, valid_before=None):
    """A certificate's place in its life: state, expired, renewal_due, remaining_seconds, life_seconds.

    Takes the two times (ISO 8601 UTC, as ssh_cert and ssh_cert_info return them), or a dict that
    has valid_after and valid_before (an ssh_cert_info result).
    """
    if isinstance(valid_after, dict):
        valid_after, valid_before = valid_after.get("valid_after"), valid_after.get("valid_before")
    return _cert_state(valid_after, valid_before)


class FilterModule(object):
    def filters(self):
        return {"day2_target": day2_target, "cert_state": cert_state}
