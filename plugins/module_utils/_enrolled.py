# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The enrolled fleet as Day 2 sees it: the registry a VM's tags hold, and a host certificate's state.

host_enroll records an enrollment on the VM's tags: `sshca-enrolled` (start of the host
certificate's validity), `sshca-host-cert-serial`, `sshca-host-cert-expires`, next to the host
tags. The inventory plugin, renew.yml and status.yml read the same names from here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import time

TAG_PREFIX = "sshca-"
ENROLLED, SERIAL, EXPIRES = "enrolled", "host-cert-serial", "host-cert-expires"
# azure_vm's own marker on what it made; not a host tag.
VM_MARKER_TAG = "sshca.azure.vm"


def parse_utc(text):
    """Epoch seconds of `2026-05-01T12:00:00Z` (as the tags and ssh_cert write it); None otherwise."""
    try:
        return calendar.timegm(time.strptime(str(text).strip(), "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


def cert_state(valid_after, valid_before, now=None):
    """Where a certificate is in its life: renewal is due with less than a third of it left.

    The same rule ssh_cert re-signs by, so what status.yml and the inventory call due is what
    renew.yml re-signs. Times are ISO 8601 UTC strings or epoch seconds; unreadable -> unknown.
    """
    now = int(time.time()) if now is None else int(now)
    after = valid_after if isinstance(valid_after, int) else parse_utc(valid_after)
    before = valid_before if isinstance(valid_before, int) else parse_utc(valid_before)
    if after is None or before is None or before <= after:
        return {"state": "unknown", "expired": False, "renewal_due": False, "remaining_seconds": None,
                "life_seconds": None}
    remaining = max(0, before - now)
    expired = now >= before
    due = expired or remaining * 3 < before - after
    return {"state": "expired" if expired else "renewal_due" if due else "valid", "expired": expired,
            "renewal_due": due, "remaining_seconds": remaining, "life_seconds": before - after}


def registry_record(vm, prefix=TAG_PREFIX, now=None):
    """Host variables for one VM (as azure_vm_info reports it) that carries the enrollment tags,
    or None when it carries none."""
    tags = vm.get("tags") or {}
    if prefix + ENROLLED not in tags:
        return None
    state = cert_state(tags.get(prefix + ENROLLED), tags.get(prefix + EXPIRES), now)
    serial = tags.get(prefix + SERIAL)
    return {
        "ansible_host": vm.get("public_ip") or vm.get("private_ip"),
        "sshca_public_ip": vm.get("public_ip"),
        "sshca_private_ip": vm.get("private_ip"),
        "sshca_vm_id": vm.get("id"),
        "sshca_vm_name": vm.get("name"),
        "sshca_resource_group": (vm.get("id") or "").split("/")[4] if vm.get("id") else None,
        "sshca_location": vm.get("location"),
        "sshca_power_state": vm.get("power_state"),
        "sshca_host_tags": host_tags(tags, prefix),
        "sshca_enrolled": tags.get(prefix + ENROLLED),
        "sshca_host_cert_serial": int(serial) if str(serial).isdigit() else serial,
        "sshca_host_cert_expires": tags.get(prefix + EXPIRES),
        "sshca_cert_state": state["state"],
        "sshca_renewal_due": state["renewal_due"],
        "sshca_expired": state["expired"],
        "sshca_cert_remaining_seconds": state["remaining_seconds"],
    }


def host_tags(tags, prefix=TAG_PREFIX):
    """The operator's host tags: a VM's tags without the registry's and azure_vm's own."""
    return {k: v for k, v in (tags or {}).items() if not k.startswith(prefix) and k != VM_MARKER_TAG}
