#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: azure_vm_run_command
short_description: Run a shell script in Azure VMs through Run Command, or read their SSH host keys
version_added: 0.2.0
description:
  - Runs a shell script as root in each VM through Azure's Run Command API
    (C(POST .../virtualMachines/{vm}/runCommand), C(RunShellScript)), concurrently. Azure authenticates
    and audits every call, and no SSH connection is involved, so it reaches a VM whose SSH access is broken.
  - With O(read_host_keys), reads the public host keys in C(/etc/ssh/ssh_host_*_key.pub) instead, to pin
    them before the first SSH connection (no trust on first use). That only reads and runs in check mode too.
  - Azure returns the last 4,096 bytes of each output stream and reports success whatever the script's
    exit status, so the module appends a line that carries the exit status, and fails a VM whose script
    exited non-zero.
  - The VM must be running, with its VM agent ready and extension operations allowed
    (C(osProfile.allowExtensionOperations), on by default).
extends_documentation_fragment:
  - sshca.azure._attributes
  - sshca.azure._azure
attributes:
  check_mode:
    support: partial
    details: With O(read_host_keys) the module runs in check mode as well; a script is not run and C(changed) is true.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: A script runs every time. With O(read_host_keys) nothing changes.
options:
  vms:
    description: The VMs, each a resource id C({id}) or a name C({name, resource_group}).
    type: list
    elements: dict
    required: true
  resource_group:
    description: Resource group of the VMs in O(vms) given by name without one.
    type: str
  script:
    description: Lines of the shell script. Required unless O(read_host_keys) is set.
    type: list
    elements: str
  read_host_keys:
    description: Read the VMs' public SSH host keys (returned as RV(results[].host_keys)) instead of running O(script).
    type: bool
    default: false
  concurrency:
    description: How many VMs run the script at once.
    type: int
    default: 10
  timeout:
    description: Seconds to wait for all VMs.
    type: int
    default: 600
seealso:
  - module: sshca.azure.azure_vm
"""

EXAMPLES = r"""
- name: Read the host keys of two VMs before connecting to them
  sshca.azure.azure_vm_run_command:
    vms:
      - id: /subscriptions/0000/resourceGroups/rg-ssh/providers/Microsoft.Compute/virtualMachines/web-1
      - {name: web-2, resource_group: rg-ssh}
    read_host_keys: true
  register: host_keys

- name: Run a script as root
  sshca.azure.azure_vm_run_command:
    vms: [{name: web-1}]
    resource_group: rg-ssh
    script:
      - systemctl is-active ssh
"""

RETURN = r"""
results:
  description: One entry per VM, in the order of O(vms).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: VM resource id.
      type: str
    resource_group:
      description: Resource group of the VM.
      type: str
    name:
      description: VM name.
      type: str
    stdout:
      description: What the script printed on standard output (Azure keeps the last 4,096 bytes).
      type: str
    stderr:
      description: What the script printed on standard error (the last 4,096 bytes).
      type: str
    exit_status:
      description: The script's exit status; null when Azure cut the output before it.
      type: int
    seconds:
      description: Seconds from the request to Azure's answer.
      type: float
    host_keys:
      description: With O(read_host_keys), the public host keys found.
      returned: when read_host_keys
      type: list
      elements: dict
      contains:
        family:
          description: C(ed25519), C(ecdsa) or C(rsa).
          type: str
        key:
          description: The key as C(type base64), without comment.
          type: str
        fingerprint:
          description: SHA256 fingerprint as C(ssh-keygen -lf) prints it.
          type: str
    failed:
      description: True for a VM whose call or script failed.
      returned: on failure
      type: bool
    msg:
      description: Why it failed.
      returned: on failure
      type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (imports follow the documentation)
from ansible_collections.sshca.azure.plugins.module_utils._azure import (  # noqa: E402
    AUTH_ARGUMENT_SPEC,
    AzureSession,
    run_azure_module,
)
from ansible_collections.sshca.azure.plugins.module_utils._azure_run_command import run, vm_references  # noqa: E402


def main():
    spec = {
        "vms": {"type": "list", "elements": "dict", "required": True},
        "resource_group": {"type": "str"},
        "script": {"type": "list", "elements": "str"},
        "read_host_keys": {"type": "bool", "default": False},
        "concurrency": {"type": "int", "default": 10},
        "timeout": {"type": "int", "default": 600},
    }
    spec.update(AUTH_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_if=[("read_host_keys", False, ("script",))],
                           mutually_exclusive=[("read_host_keys", "script")])
    params = module.params

    def task():
        refs = vm_references(params["vms"], params["resource_group"])
        if module.check_mode and not params["read_host_keys"]:
            planned = [{"id": ref[0], "resource_group": ref[1], "name": ref[2]} for ref in refs]
            return {"changed": bool(refs), "results": planned}
        with AzureSession(params, pool_size=params["concurrency"]) as session:
            results, failures = run(session, refs, params["script"], params["concurrency"], params["timeout"],
                                    read_host_keys=params["read_host_keys"])
        changed = bool(refs) and not params["read_host_keys"]
        if failures:
            return {"failed": True, "changed": changed, "results": results,
                    "msg": "Run Command failed on %d VM(s): %s" % (len(failures), "; ".join(failures))}
        return {"changed": changed, "results": results}

    run_azure_module(module, "azure_vm_run_command", task)


if __name__ == "__main__":
    main()
