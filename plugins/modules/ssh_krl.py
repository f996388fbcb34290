#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_krl
short_description: Build and update an OpenSSH key revocation list (KRL)
version_added: 0.1.0
description:
  - Keeps an OpenSSH KRL (the file sshd's C(RevokedKeys) reads) revoking certificates by serial or key id,
    and keys, built by the real C(ssh-keygen -k).
  - A spec file beside the KRL (O(spec_path)) keeps what the binary KRL cannot give back (CA public keys
    and a note per entry), so the KRL can be rebuilt and updated one entry at a time.
  - What the KRL revokes is read back with C(ssh-keygen -Q -l) and compared with what is asked for, so a
    second run changes nothing. A new KRL is built in a scratch folder, listed and queried with
    C(ssh-keygen -Q) (every key and certificate given must be reported REVOKED), and only then replaces
    the spec and the KRL, each atomically.
  - A revocation is never dropped silently. What the existing KRL revokes stays revoked even when the spec
    does not list it; only O(state=absent) or O(exclusive=true) removes entries.
  - A serial must have been issued by its CA. It is looked up in the CA's issuance log
    (C(<ca_path>/issued.jsonl), written by M(sshca.azure.ssh_cert)), then in the certificates under
    O(issued_certificates). A certificate given whole needs no lookup.
  - Bad input fails with one line naming the item and field, and nothing is written. That covers an unknown
    serial, an unreadable key or certificate file, and an existing KRL or spec that cannot be read.
extends_documentation_fragment:
  - sshca.azure._attributes
  - sshca.azure._attributes.FULL_SUPPORT
attributes:
  diff_mode:
    details: The diff lists the revoked entries before and after, one line each.
  idempotent:
    details: Entries are compared as sets with what C(ssh-keygen -Q -l) reads from the KRL, never byte for byte.
options:
  path:
    description: The KRL file. Made (revoking nothing, if nothing is given) when it does not exist.
    type: path
    required: true
  spec_path:
    description: The spec kept beside the KRL (JSON). Defaults to O(path) with C(.json) appended.
    type: path
  revoked:
    description:
      - What to revoke (O(state=present)) or stop revoking (O(state=absent)). Each item names one thing
        with exactly one of the fields below.
    type: list
    elements: dict
    default: []
    suboptions:
      serial:
        description: A certificate serial (1 to 2^64-1) issued by O(revoked[].ca).
        type: int
      key_id:
        description: Every certificate with this key id signed by O(revoked[].ca).
        type: str
      ca:
        description:
          - The CA of O(revoked[].serial) or O(revoked[].key_id). V(user), V(host) or V(admin) (the CA in O(ca_path)),
            or a CA public key as an OpenSSH line.
        type: str
      public_key:
        description: A public key (OpenSSH line or RFC 4716); the key and every certificate of it are revoked.
        type: str
      public_key_path:
        description: A file holding such a public key.
        type: path
      certificate:
        description:
          - A certificate (OpenSSH line); revoked by its serial under its signing CA (by key id if the serial is 0).
        type: str
      certificate_path:
        description: A file holding such a certificate, or a folder whose C(*-cert.pub) files are all revoked.
        type: path
      reason:
        description: Why, kept in the spec and shown in the diff.
        type: str
  state:
    description: Whether the entries of O(revoked) are revoked (V(present)) or not (V(absent)).
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description: With O(state=present), the KRL revokes exactly O(revoked) and nothing else.
    type: bool
    default: false
  ca_path:
    description:
      - CA folder made by M(sshca.azure.ssh_ca). Its public keys name V(host) and V(user) in O(revoked[].ca),
        and its issuance log (C(issued.jsonl)) tells which serials were issued. No passphrase is needed.
    type: path
  issued_certificates:
    description:
      - Files or folders (searched for C(*-cert.pub)) holding certificates the CA issued; their serials count
        as issued. Used with, or instead of, the CA's issuance log.
    type: list
    elements: path
    default: []
  require_issued:
    description: Refuse a serial that neither the issuance log nor O(issued_certificates) shows as issued.
    type: bool
    default: true
  keep_admitted:
    description:
      - Certificates or public keys (files) the KRL must never revoke, such as the admin certificate the
        automation logs in with. The KRL that would be written (in check mode too, and also when nothing
        changes) is asked with C(ssh-keygen -Q) about each; a certificate is revoked by its key, its signing
        CA's key, its serial or its key id under that CA.
      - A KRL that would revoke one is refused with one line naming the O(revoked) item that does, or the
        KRL in place when it already does (remove that entry with O(state=absent)), and nothing is written.
    type: list
    elements: path
    default: []
requirements:
  - ssh-keygen (OpenSSH 7.9 or later) on the machine running the module
notes:
  - sshd reads the KRL at every authentication; replacing the file needs no reload. sshd refuses every
    public key and certificate when the file named by C(RevokedKeys) cannot be read, so push it to hosts
    only after checking it there (C(playbooks/revoke.yml) does).
seealso:
  - module: sshca.azure.ssh_cert
  - module: sshca.azure.ssh_cert_info
"""

EXAMPLES = r"""
- name: Revoke a leaked user certificate by serial, and a lost key
  sshca.azure.ssh_krl:
    path: ~/.sshca/revoked_keys
    ca_path: ~/.sshca/ca
    revoked:
      - {serial: 12391315337200603786, ca: user, reason: laptop stolen}
      - {public_key_path: /tmp/old-deploy.pub, reason: rotated}

- name: Revoke every certificate issued to one key id
  sshca.azure.ssh_krl:
    path: ~/.sshca/revoked_keys
    ca_path: ~/.sshca/ca
    revoked:
      - {key_id: alice@example.com, ca: user}
    # Refused, with nothing written, if this would lock the automation out of its hosts.
    keep_admitted:
      - ~/.sshca/admin/id_ed25519-cert.pub

- name: Revoke a host certificate given whole
  sshca.azure.ssh_krl:
    path: ~/.sshca/revoked_keys
    revoked:
      - certificate_path: ~/.sshca/hosts/web-1/ssh_host_ed25519_key-cert.pub
"""

RETURN = r"""
path:
  description: The KRL file.
  returned: always
  type: str
spec_path:
  description: The spec beside it.
  returned: always
  type: str
count:
  description: How many entries the KRL revokes.
  returned: always
  type: int
revoked:
  description: Every entry the KRL revokes (after the change).
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: C(serial), C(key_id) or C(key).
      type: str
    value:
      description: The serial, key id or key fingerprint.
      type: raw
    ca:
      description: SHA256 fingerprint of the CA, for serials and key ids.
      type: str
    describe:
      description: One line for people.
      type: str
      sample: serial 4242 of user CA (alice, laptop stolen, valid until 2026-11-26T13:59:34Z)
added:
  description: Entries added by this run (would be, in check mode), shaped as RV(revoked).
  returned: always
  type: list
  elements: dict
removed:
  description: Entries removed by this run (would be, in check mode), shaped as RV(revoked).
  returned: always
  type: list
  elements: dict
checked_at:
  description: When the KRL was checked, ISO 8601 UTC.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible modules import after their documentation
from ansible_collections.sshca.azure.plugins.module_utils._krl import KeyGen, krl_task  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._runner import run_module  # noqa: E402


def main():
    entry_spec = {
        "serial": {"type": "int"},
        "key_id": {"type": "str"},
        "ca": {"type": "str"},
        "public_key": {"type": "str", "no_log": False},
        "public_key_path": {"type": "path"},
        "certificate": {"type": "str"},
        "certificate_path": {"type": "path"},
        "reason": {"type": "str"},
    }
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "spec_path": {"type": "path"},
            "revoked": {"type": "list", "elements": "dict", "default": [], "options": entry_spec},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "exclusive": {"type": "bool", "default": False},
            "ca_path": {"type": "path"},
            "issued_certificates": {"type": "list", "elements": "path", "default": []},
            "require_issued": {"type": "bool", "default": True},
            "keep_admitted": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    keygen = KeyGen(module.get_bin_path("ssh-keygen", required=True))
    run_module(module, "ssh_krl", lambda: krl_task(module.params, module.check_mode, keygen))


if __name__ == "__main__":
    main()
