#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: azure_vm
short_description: Create, update and delete Azure Ubuntu VMs, one or a whole fleet concurrently
version_added: 0.1.0
description:
  - Makes each VM with a Standard static public IP (optional), a network interface on an existing
    subnet, and a managed OS disk, logging in with an SSH key only (password authentication is off).
  - Many VMs are handled in one call, concurrently in a bounded pool (O(concurrency)); each VM's
    outcome is reported on its own, and one VM failing fails the task without hiding the others.
  - Reads stay within ARM's throttling budget at fleet scale. Where a resource group holds several
    of the VMs, one list per resource type reads them all; no operation is polled, each write's end
    is seen in one list per resource type and group a second, shared by every VM. When ARM answers
    429, every request of that type (reads, writes, deletes) waits until its C(Retry-After).
  - Every option is checked locally first, and the subnets, network security groups and existing
    resources are read before anything is written; a problem with any VM fails the task before
    the first write.
  - Idempotent. An existing VM is compared with the options field by field. What Azure changes in
    place is changed in as few writes as possible (tags, size, identity, boot diagnostics and the OS
    disk's delete option with one C(PATCH) of the VM; subnet within the same virtual network, NSG and public IP
    with one C(PUT) of the network interface; the DNS label with one C(PUT) of the public IP). What
    Azure cannot change in place (image, admin user, SSH key, location, zone, OS disk size or type,
    a subnet in another virtual network) is reported in C(not_changeable_in_place) with a warning,
    and is neither applied nor ignored silently; recreate the VM to apply it.
  - A create issues three writes per VM (public IP, network interface, VM; the OS disk is made by
    the VM). The public IP and network interface are named C(<name>-pip) and C(<name>-nic), the OS
    disk C(<name>-osdisk), and the first two carry the tag C(sshca.azure.vm=<name>).
    O(state=absent) deletes the VM, and the network interface and public IP only when they carry
    that tag; the OS disk goes with the VM unless its O(os_disk.delete_option) is V(Detach). Nothing
    else is deleted.
  - Boot diagnostics are on, on Azure's managed storage (no storage account is made or needed), so
    the serial log and screenshot are there when SSH does not answer. An existing VM without them gets
    them with the same C(PATCH) as its other in-place changes.
  - No network security group is ever made. Without O(nsg_id), the network interface has none and
    the subnet's rules apply.
  - O(ssh_public_key) and the subnet (O(subnet_id), or O(vnet_name) and O(subnet_name)) are needed
    only to create a VM. A call without them updates an existing VM and compares only the options it
    gives (O(size), O(image), O(admin_username) and O(public_ip) left out keep what the VM has, not
    their defaults), so O(name) or O(id) with O(tags) updates the tags only, with one C(PATCH) or no
    write at all. If such a VM does not exist, the task fails before any write, naming the VM and
    the missing options.
extends_documentation_fragment:
  - sshca.azure._attributes
  - sshca.azure._attributes.FULL_SUPPORT
  - sshca.azure._azure
attributes:
  check_mode:
    details: Nothing is written; RV(operations) lists the writes that would be issued.
  diff_mode:
    details: Shows, per VM, the compared fields before and after.
  idempotent:
    details: A rerun with the same options issues no ARM writes.
options:
  resource_group:
    description:
      - Resource group of the VMs and of the network interfaces and public IPs made for them.
      - Required unless O(id) is given.
    type: str
  location:
    description:
      - Azure region for new VMs, for example C(westeurope). Required to create a VM; an existing VM
        keeps its region (a different one is reported as not changeable in place).
      - Can be set per VM in O(vms).
    type: str
  state:
    description: V(present) creates or updates the VMs; V(absent) deletes them.
    type: str
    default: present
    choices: [present, absent]
  name:
    description:
      - Name of a single VM (also its host name). 1-64 letters, digits and hyphens, starting and
        ending with a letter or digit. Mutually exclusive with O(vms).
    type: str
  id:
    description:
      - Resource id of a single VM, instead of O(name) and O(resource_group); its subscription is used.
      - The form is C(/subscriptions/<subscription>/resourceGroups/<group>/providers/)
        C(Microsoft.Compute/virtualMachines/<name>), as one string.
      - A O(resource_group) or O(subscription_id) that differs from the id's fails the task.
      - Mutually exclusive with O(name) and O(vms).
    type: str
  vms:
    description:
      - A list of VMs, each a dict with C(name) and any of the per-VM options of this module
        (O(location), O(size), O(image), O(admin_username), O(ssh_public_key), O(subnet_id),
        O(vnet_name), O(subnet_name), O(nsg_id), O(public_ip), O(dns_label), O(os_disk), O(tags),
        O(append_tags), O(zone), O(identity), O(wait_for_ssh), O(ssh_timeout)); a value given in an
        item replaces the top-level one (an item's O(tags) replace the top-level O(tags), they are
        not merged).
      - Mutually exclusive with O(name).
    type: list
    elements: dict
  size:
    description:
      - VM size. Changed in place.
      - V(Standard_B2s) when left out, except in an update without the creation inputs, which keeps the VM's size.
    type: str
  image:
    description:
      - The marketplace image, as a preset or a dict with C(publisher), C(offer), C(sku) and
        optionally C(version) (default C(latest)).
      - V(ubuntu2204) is Canonical C(0001-com-ubuntu-server-jammy) C(22_04-lts-gen2);
        V(ubuntu2404) is Canonical C(ubuntu-24_04-lts) C(server); both C(latest).
      - With version C(latest), any deployed version matches. Not changeable in place.
      - V(ubuntu2404) when left out, except in an update without the creation inputs, which does not compare it.
    type: raw
  admin_username:
    description:
      - The admin user that holds O(ssh_public_key). Not changeable in place.
      - A Linux user name of 1-32 lowercase letters, digits, C(_) or C(-). The names Azure refuses (such as
        C(admin), C(root), C(backup), C(test)) and the system accounts of the image are refused before any write.
      - V(azureuser) when left out, except in an update without the creation inputs, which does not compare it.
    type: str
  ssh_public_key:
    description:
      - The bootstrap public key, in OpenSSH one-line form or RFC 4716 (SSH2) form. Required to create a
        VM; left out, an existing VM's keys are not compared.
      - It is parsed and checked locally before any request. Azure takes C(ssh-rsa) keys of at least
        2048 bits and C(ssh-ed25519) keys; ECDSA keys, certificates and private keys are refused.
      - Azure receives it as one OpenSSH line (C(type base64 comment)) in
        C(osProfile.linuxConfiguration.ssh.publicKeys[0].keyData), with C(path)
        C(/home/<admin_username>/.ssh/authorized_keys). Nothing else about the key is sent.
      - Compared by key, not by text or comment. Not changeable in place.
    type: str
  subnet_id:
    description:
      - Resource id of the subnet for the network interface. This or O(vnet_name) and O(subnet_name) is
        required to create a VM; left out, an existing VM keeps its subnet.
    type: str
  vnet_name:
    description: With O(subnet_name), names a subnet in O(resource_group) instead of O(subnet_id).
    type: str
  subnet_name:
    description: See O(vnet_name).
    type: str
  nsg_id:
    description:
      - Resource id of an existing network security group for the network interface. Left out, the
        network interface gets none on create and keeps what it has on update.
    type: str
  public_ip:
    description:
      - Whether the VM gets a Standard SKU, static IPv4 public IP.
      - V(true) when left out, except in an update without the creation inputs, which keeps what the VM has.
    type: bool
  dns_label:
    description:
      - DNS label of the public IP (C(<label>.<region>.cloudapp.azure.com)). Left out, an existing
        label is kept.
    type: str
  os_disk:
    description:
      - OS disk options; left-out keys keep what exists (new VMs get the image's defaults).
      - C(size_gb) and C(storage_account_type) are not changeable in place.
    type: dict
    suboptions:
      size_gb:
        description: Size in GiB (30-4095).
        type: int
      storage_account_type:
        description: Disk type.
        type: str
        choices: [Standard_LRS, StandardSSD_LRS, Premium_LRS, StandardSSD_ZRS, Premium_ZRS]
      delete_option:
        description:
          - Whether Azure deletes the disk with the VM (V(Delete), the default for new VMs) or keeps it
            (V(Detach)). Changed in place.
        type: str
        choices: [Delete, Detach]
  tags:
    description:
      - Tags of the VM. The tag C(sshca.azure.vm) is reserved.
      - Azure's limits are checked before any write, on the tags given and on the VM's tags after the
        change. At most 50 tags; names of at most 512 characters, without C(<>%&\?/); values of at most 256.
      - Left out in an update without the creation inputs, the VM's tags are kept, whatever O(append_tags) says.
    type: dict
  append_tags:
    description:
      - V(true) adds O(tags) to the VM's existing tags; V(false) makes the VM's tags exactly O(tags).
      - A tag change is written as one C(PATCH) of the VM's tags.
    type: bool
    default: true
  zone:
    description: Availability zone (C(1), C(2) or C(3)) of the VM and its public IP. Not changeable in place.
    type: str
  identity:
    description: V(system) gives the VM a system-assigned managed identity; V(none) removes it. Left out, unchanged.
    type: str
    choices: [none, system]
  wait_for_ssh:
    description: Wait until an SSH server answers on port 22 of each VM's public IP (private IP without one).
    type: bool
    default: false
  ssh_timeout:
    description: Seconds to wait for SSH with O(wait_for_ssh).
    type: int
    default: 300
  concurrency:
    description: How many VMs are worked on at once.
    type: int
    default: 20
  timeout:
    description: Seconds each VM may take (all its writes, until it runs), before it is reported as failed.
    type: int
    default: 1800
seealso:
  - module: sshca.azure.azure_vm_info
"""

EXAMPLES = r"""
- name: Create one VM with the bootstrap key
  sshca.azure.azure_vm:
    resource_group: rg-ssh
    location: westeurope
    name: web-1
    ssh_public_key: "{{ lookup('ansible.builtin.file', 'bootstrap.pub') }}"
    vnet_name: vnet-ssh
    subnet_name: hosts
    tags:
      role: web

- name: Create a fleet concurrently, waiting until SSH answers on each
  sshca.azure.azure_vm:
    resource_group: rg-ssh
    location: westeurope
    subnet_id: "{{ subnet_id }}"
    ssh_public_key: "{{ bootstrap_key.public_key_rfc4716 }}"
    image: ubuntu2204
    wait_for_ssh: true
    vms:
      - name: web-1
      - name: web-2
      - name: db-1
        size: Standard_D4s_v5
        os_disk:
          size_gb: 128
  register: fleet

- name: Show what would be written, without writing
  sshca.azure.azure_vm:
    resource_group: rg-ssh
    name: web-1
    ssh_public_key: "{{ lookup('ansible.builtin.file', 'bootstrap.pub') }}"
    subnet_id: "{{ subnet_id }}"
    tags:
      enrolled: "2026-11-25"
  check_mode: true
  diff: true

- name: Record something on an existing VM's tags only (no key or subnet needed; fails if the VM is absent)
  sshca.azure.azure_vm:
    id: "{{ vm_id }}"  # as Terraform prints it: /subscriptions/.../virtualMachines/web-1
    tags:
      enrolled: "2026-11-25"

- name: Delete the VMs with their network interfaces, public IPs and OS disks
  sshca.azure.azure_vm:
    resource_group: rg-ssh
    state: absent
    vms:
      - name: web-1
      - name: web-2
"""

RETURN = r"""
vms:
  description: One entry per VM, in the order given.
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
    changed:
      description: Whether anything was (or, in check mode, would be) written for this VM.
      type: bool
    failed:
      description: Whether this VM failed.
      type: bool
    msg:
      description: What happened to this VM, or why it failed.
      type: str
      sample: "web-1: create public IP; create network interface; create VM"
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
      description: Public IPv4 address, if any.
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
    not_changeable_in_place:
      description: Fields that differ from the options but that Azure cannot change in place; not applied.
      type: list
      elements: str
      sample: [ssh_keys, image]
    operations:
      description: This VM's ARM writes (see RV(operations)).
      type: list
      elements: dict
operations:
  description:
    - Every ARM write issued (in check mode, that would be issued), in order, with C(vm),
      C(method) (C(PUT), C(PATCH), C(DELETE)), the resource C(id) and what the C(change) was.
    - Reads are not listed; retries of a write are one entry.
  returned: always
  type: list
  elements: dict
  sample:
    - {vm: web-1, method: PATCH, id: /subscriptions/.../virtualMachines/web-1, change: update VM (tags)}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (imports follow the documentation)
from ansible_collections.sshca.azure.plugins.module_utils._azure import (  # noqa: E402
    AUTH_ARGUMENT_SPEC,
    AzureSession,
    Operations,
    run_azure_module,
)
from ansible_collections.sshca.azure.plugins.module_utils._azure_vm import run  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._azure_vm_desired import (  # noqa: E402
    TOP_LEVEL_SPEC,
    apply_vm_id,
)


def argument_spec():
    spec = {
        "resource_group": {"type": "str"},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        "name": {"type": "str"},
        "id": {"type": "str"},
        "vms": {"type": "list", "elements": "dict"},  # items are checked per VM against the same options
        "concurrency": {"type": "int", "default": 20},
        "timeout": {"type": "int", "default": 1800},
    }
    spec.update(TOP_LEVEL_SPEC)
    spec.update(AUTH_ARGUMENT_SPEC)
    return spec


def present_result(module, vms, failed, operations):
    result = {"changed": any(vm["changed"] for vm in vms), "vms": vms, "operations": operations}
    diffs = [vm.pop("diff") for vm in vms]
    if module._diff:
        result["diff"] = [dict(d, before_header=vm["name"], after_header=vm["name"])
                          for d, vm in zip(diffs, vms, strict=True)]
    for vm in vms:
        if vm["not_changeable_in_place"] and not vm["failed"]:
            module.warn(vm["msg"])
    if failed:
        result.update(failed=True, msg="; ".join(vm["msg"] for vm in vms if vm["failed"]))
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[("name", "vms", "id"), ("subnet_id", "vnet_name")],
                           required_one_of=[("name", "vms", "id"), ("resource_group", "id")],
                           required_together=[("vnet_name", "subnet_name")])
    operations = Operations()  # the writes issued, reported even when the task fails

    def task():
        params = apply_vm_id(module.params)  # before the session: the id names the subscription
        with AzureSession(params, pool_size=params["concurrency"], operations=operations) as session:
            vms, failed = run(session, params, module.check_mode)
        return present_result(module, vms, failed, operations.items)

    run_azure_module(module, "azure_vm", task,
                     on_failure=lambda: {"vms": [], "operations": operations.items})


if __name__ == "__main__":
    main()
