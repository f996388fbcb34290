#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_client_hosts
short_description: One known_hosts and ssh_config entry per enrolled host, kept under a lock
version_added: 0.1.0
description:
  - Keeps a managed block in an OpenSSH known_hosts file and in an ssh_config file with one entry per host
    (the entry names its host). known_hosts gets an C(@cert-authority) line for the host CA, scoped to the
    host's name, address and aliases. ssh_config gets a C(Host) entry with its address and login settings.
  - Entries accumulate across runs. A run adds or updates the hosts it lists and keeps every other entry, so
    fleets enrolled one after the other into one work folder all stay reachable. With O(exclusive), the block
    holds the listed hosts only.
  - A host replaces the entry of the same name, and any entry that holds its address (a renamed VM, a
    reused public IP). O(state=absent) removes the listed hosts' entries.
  - Each file is read, changed and replaced (atomically) under an exclusive lock on C(<file>.lock), so runs in
    parallel on one work folder never lose each other's entries. Lines in the block that are not such
    entries are kept as they are.
extends_documentation_fragment:
  - sshca.azure._attributes
  - sshca.azure._attributes.FULL_SUPPORT
attributes:
  diff_mode:
    details: One diff per file, showing the managed block before and after.
options:
  hosts:
    description:
      - The hosts to add or update (O(state=present)) or remove (O(state=absent)), each a dict.
      - C(name) (required) names the entry and is a known_hosts pattern and C(Host) alias.
      - C(address) is what ssh connects to (C(HostName)), and a pattern.
      - C(private_ip) and C(aliases) (a list) are more patterns the host certificate answers for.
      - C(user) is this host's login user, instead of O(user).
      - Other keys are ignored, so enrollment targets can be passed as they are.
    type: list
    elements: dict
    required: true
  state:
    description: Whether the listed hosts have entries.
    type: str
    choices: [present, absent]
    default: present
  known_hosts_path:
    description: known_hosts file to keep the C(@cert-authority) entries in.
    type: path
  host_ca_public_key:
    description:
      - The host CA public key (OpenSSH line), or several, one per line, while a CA rotation has hosts with
        certificates from the old and from the new host CA (see C(playbooks/rotate_ca.yml)); each host gets one
        C(@cert-authority) line per key. Required to add hosts to O(known_hosts_path).
    type: str
  all_hosts:
    description:
      - Also give every host already in the known_hosts block the C(@cert-authority) lines of O(host_ca_public_key),
        keeping its patterns, so a CA rotation changes the trust of the whole fleet at once.
    type: bool
    default: false
  exclusive:
    description:
      - Remove the entries of hosts not in O(hosts) (O(state=present)), so that the block lists the fleet as
        O(hosts) gives it now, without decommissioned hosts. Lines outside the block, and lines in it that are
        no host entry, are kept.
    type: bool
    default: false
  config_path:
    description: ssh_config file to keep the C(Host) entries in.
    type: path
  block_name:
    description: Name in the block's markers and in each entry's tag; one name per fleet or work folder.
    type: str
    default: sshca.azure
  user:
    description: Default login user of the C(Host) entries.
    type: str
  identity_file:
    description: C(IdentityFile) of the C(Host) entries.
    type: path
  certificate_file:
    description: C(CertificateFile) of the C(Host) entries.
    type: path
notes:
  - C(Host) entries also set C(IdentitiesOnly yes) and C(StrictHostKeyChecking yes), and, with
    O(known_hosts_path), C(UserKnownHostsFile) pointing at it, so logins through the ssh_config trust the
    host CA and nothing else.
seealso:
  - module: sshca.azure.ssh_cert
"""

EXAMPLES = r"""
- name: Trust the host CA for two hosts, and reach them by name
  sshca.azure.ssh_client_hosts:
    known_hosts_path: ~/.sshca/known_hosts
    config_path: ~/.sshca/ssh_config
    host_ca_public_key: "{{ lookup('ansible.builtin.file', '~/.sshca/ca/host_ca.pub') }}"
    user: azureuser
    identity_file: ~/.sshca/admin/id_ed25519
    certificate_file: ~/.sshca/admin/id_ed25519-cert.pub
    hosts:
      - {name: web-1, address: 20.1.2.3, aliases: [10.0.1.4]}
      - {name: web-2, address: 20.1.2.4, aliases: [10.0.1.5]}

- name: During a CA rotation, trust the old and the new host CA for every host in known_hosts
  sshca.azure.ssh_client_hosts:
    known_hosts_path: ~/.sshca/known_hosts
    hosts: []
    all_hosts: true
    host_ca_public_key: |
      {{ lookup('ansible.builtin.file', '~/.sshca/ca/host_ca.pub') }}
      {{ lookup('ansible.builtin.file', '~/.sshca/ca.next/host_ca.pub') }}

- name: Forget a decommissioned host
  sshca.azure.ssh_client_hosts:
    known_hosts_path: ~/.sshca/known_hosts
    config_path: ~/.sshca/ssh_config
    state: absent
    hosts:
      - name: web-2
"""

RETURN = r"""
hosts:
  description: Names of every host with an entry after the run (in the first file given).
  returned: always
  type: list
  elements: str
  sample: [web-1, web-2]
entries:
  description:
    - Every host with an entry after the run, with the address ssh connects to (from the ssh_config when given).
  returned: always
  type: list
  elements: dict
  sample: [{name: web-1, address: 20.1.2.3}]
known_hosts:
  description: What changed in known_hosts.
  returned: when O(known_hosts_path) is given
  type: dict
  contains:
    path:
      description: The file.
      type: str
    added:
      description: Hosts given a new entry.
      type: list
      elements: str
    updated:
      description: Hosts whose entry changed.
      type: list
      elements: str
    removed:
      description: Hosts whose entry was removed or replaced by a host holding its address.
      type: list
      elements: str
ssh_config:
  description: What changed in ssh_config, shaped as RV(known_hosts).
  returned: when O(config_path) is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible modules import after their documentation
from ansible_collections.sshca.azure.plugins.module_utils._client_files import client_hosts_task  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._runner import run_module  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "hosts": {"type": "list", "elements": "dict", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "known_hosts_path": {"type": "path"},
            "host_ca_public_key": {"type": "str"},
            "all_hosts": {"type": "bool", "default": False},
            "exclusive": {"type": "bool", "default": False},
            "config_path": {"type": "path"},
            "block_name": {"type": "str", "default": "sshca.azure"},
            "user": {"type": "str"},
            "identity_file": {"type": "path"},
            "certificate_file": {"type": "path"},
        },
        required_one_of=[("known_hosts_path", "config_path")],
        supports_check_mode=True,
    )
    run_module(module, "ssh_client_hosts", lambda: client_hosts_task(module.params, module.check_mode))


if __name__ == "__main__":
    main()
