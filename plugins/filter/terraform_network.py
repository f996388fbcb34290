# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter network_from_terraform: read the sshca network module's `terraform output -json`."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

# The outputs enroll.yml needs from terraform/modules/network; tests/terraform checks that the
# module declares each of them, so renaming one there breaks the build, not a user's run.
REQUIRED_OUTPUTS = (
    "resource_group_name",
    "location",
    "vnet_id",
    "vnet_name",
    "subnet_id",
    "subnet_name",
    "nsg_id",
    "nsg_name",
)

_ARM_ID_PATTERNS = {
    "vnet_id": r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+",
    "subnet_id": (
        r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+/subnets/[^/]+"
    ),
    "nsg_id": r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/networkSecurityGroups/[^/]+",
}

_PREFIX = "network_from_terraform: "


def _outputs_from(data):
    """Decode the input into a dict of output name -> raw entry."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(to_text(data))
        except ValueError as exc:
            raise AnsibleFilterError("%sinput is not valid JSON (%s)" % (_PREFIX, exc)) from None
    if not isinstance(data, dict):
        raise AnsibleFilterError(
            "%sexpected the object printed by `terraform output -json` (or a dict of output values), got %s"
            % (_PREFIX, type(data).__name__)
        )
    return data


def _value(name, entry):
    """An output's value, from either `terraform output -json` form or a plain value."""
    # terraform output -json wraps each output as {"sensitive": .., "type": .., "value": ..}.
    if isinstance(entry, dict) and "value" in entry and set(entry) <= {"sensitive", "type", "value"}:
        entry = entry["value"]
    if not isinstance(entry, str):
        got = "null" if entry is None else type(entry).__name__
        raise AnsibleFilterError("%soutput '%s' must be a string, got %s" % (_PREFIX, name, got))
    if not entry.strip():
        raise AnsibleFilterError("%soutput '%s' is empty" % (_PREFIX, name))
    return entry


def network_from_terraform(data):
    """Return the network settings enroll.yml uses, checked, from the network module's outputs."""
    outputs = _outputs_from(data)
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise AnsibleFilterError(
            "%smissing output%s %s: give the `terraform output -json` of a root module that exports the"
            " sshca network module's outputs" % (_PREFIX, "s" if len(missing) > 1 else "", ", ".join(missing))
        )
    network = {name: _value(name, outputs[name]) for name in REQUIRED_OUTPUTS}
    for name, pattern in _ARM_ID_PATTERNS.items():
        if not re.match("(?i)^%s$" % pattern, network[name]):
            raise AnsibleFilterError("%soutput '%s' is not an Azure resource id: %r" % (_PREFIX, name, network[name]))
    subnet_parent = network["subnet_id"].rsplit("/subnets/", 1)[0]
    if subnet_parent.lower() != network["vnet_id"].lower():
        raise AnsibleFilterError("%soutput 'subnet_id' is not a subnet of output 'vnet_id'" % _PREFIX)
    return network


class FilterModule(object):
    """Ansible filters for reading Terraform outputs."""

    def filters(self):
        return {"network_from_terraform": network_from_terraform}
