#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: azure_vm_info
short_description: Read Azure VMs with their IPs, power state and tags
version_added: 0.1.0
description:
  - Lists VMs by name, resource group or tags, and reads each one's instance view, primary
    network interface and public IP concurrently.
extends_documentation_fragment:
  - sshca.azure._attributes
  - sshca.azure._attributes.INFO_MODULE
  - sshca.azure._azure
options:
  resource_group:
    description: Only VMs in this resource group. Without it, every VM of the subscription.
    type: str
  name:
    description: Only the VM of this name; needs O(resource_group).
    type: str
  tags:
    description:
      - Only VMs that carry all these tags. A dict (a null value matches any value), or a list of
        C(key) (any value) and C(key:value) strings.
    type: raw
  concurrency:
    description: How many VMs are read at once.
    type: int
    default: 10
seealso:
  - module: sshca.azure.azure_vm
"""

EXAMPLES = r"""
- name: VMs of a resource group that are enrolled
  sshca.azure.azure_vm_info:
    resource_group: rg-ssh
    tags:
      - sshca-enrolled
  register: enrolled

- name: One VM
  sshca.azure.azure_vm_info:
    resource_group: rg-ssh
    name: web-1
  register: web1

- name: Every VM of the subscription with role=web
  sshca.azure.azure_vm_info:
    tags:
      role: web
"""

RETURN = r"""
vms:
  description: The VMs found, sorted by id; empty when none match.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: VM name.
      type: str
      sample: web-1
    id:
      description: VM resource id.
      type: str
    location:
      description: Azure region.
      type: str
    size:
      description: VM size.
      type: str
    admin_username:
      description: Admin user.
      type: str
    provisioning_state:
      description: ARM provisioning state.
      type: str
      sample: Succeeded
    power_state:
      description: Power state from the instance view (C(running), C(stopped), C(deallocated), ...).
      type: str
      sample: running
    public_ip:
      description: Public IPv4 address of the primary network interface, if any.
      type: str
    fqdn:
      description: Fully qualified name of the public IP's DNS label, if any.
      type: str
    private_ip:
      description: Private IPv4 address of the primary network interface.
      type: str
    tags:
      description: Tags of the VM.
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (imports follow the documentation)
from ansible_collections.sshca.azure.plugins.module_utils._azure import (  # noqa: E402
    AUTH_ARGUMENT_SPEC,
    AzureSession,
    run_azure_module,
)
from ansible_collections.sshca.azure.plugins.module_utils._azure_vm import info  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._azure_vm_desired import VMInputError  # noqa: E402


def main():
    spec = {
        "resource_group": {"type": "str"},
        "name": {"type": "str"},
        "tags": {"type": "raw"},
        "concurrency": {"type": "int", "default": 10},
    }
    spec.update(AUTH_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, required_by={"name": "resource_group"})

    def task():
        tags = module.params["tags"]
        if tags is not None and not isinstance(tags, (dict, list)):
            raise VMInputError("tags must be a dict or a list of 'key' / 'key:value' strings")
        with AzureSession(module.params, pool_size=module.params["concurrency"]) as session:
            return {"changed": False, "vms": info(session, module.params)}

    run_azure_module(module, "azure_vm_info", task)


if __name__ == "__main__":
    main()
