#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_ca
short_description: Create or load the SSH host CA and user CA
version_added: 0.1.0
description:
  - Keeps two certificate authorities in one folder, a host CA (signs host certificates) and a user CA
    (signs user certificates), so trusting one never means trusting the other.
  - With the C(file) backend the CA keys are OpenSSH private-key files (C(host_ca), C(user_ca)), encrypted
    with O(passphrase), mode 0600, in a folder of mode 0700, next to their public keys (C(host_ca.pub),
    C(user_ca.pub)). Files are written atomically.
  - Existing CA keys are never replaced. An existing key must open with O(passphrase).
  - No private key material is ever returned.
author:
  - sshca.azure developers (@sshca)
extends_documentation_fragment:
  - sshca.azure._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff lists the files and folder modes that are (or would be) created or fixed.
  idempotent:
    support: full
options:
  path:
    description: Folder of the CA keys. Created with mode 0700 if missing.
    type: path
    required: true
  passphrase:
    description:
      - Passphrase that encrypts both CA private keys. Required unless O(allow_unencrypted=true).
    type: str
  allow_unencrypted:
    description:
      - Store (or use) the CA keys without a passphrase when none is given. Meant for tests and throwaway labs.
    type: bool
    default: false
  key_type:
    description:
      - Type of new CA keys; C(ed25519) when not given. C(rsa) keys have 4096 bits, C(ecdsa) keys use
        NIST P-384.
      - For existing CA keys, when given, the keys must be of this type (the module fails otherwise;
        move the old CA away to rotate it).
    type: str
    choices: [ed25519, rsa, ecdsa]
  backend:
    description: Where the CA keys live. Only C(file) for now.
    type: str
    choices: [file]
    default: file
requirements:
  - cryptography >= 42
  - bcrypt (for passphrase-encrypted keys)
seealso:
  - module: sshca.azure.ssh_cert
"""

EXAMPLES = r"""
- name: Host and user CA on the controller
  sshca.azure.ssh_ca:
    path: /etc/sshca/ca
    passphrase: "{{ vault_ca_passphrase }}"
  register: ca

- name: Trust the user CA on a host
  ansible.builtin.copy:
    content: "{{ ca.user_ca_public_key }}\n"
    dest: /etc/ssh/trusted_user_ca_keys
    mode: "0644"
"""

RETURN = r"""
host_ca_public_key:
  description: Public key of the host CA (OpenSSH line). Absent in check mode before the CA exists.
  returned: success
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPdH1jsGI6rW5Jc8ep5534IPETt2AeQlvylF/20NaoMG sshca host CA
user_ca_public_key:
  description: Public key of the user CA (OpenSSH line). Absent in check mode before the CA exists.
  returned: success
  type: str
host_ca_fingerprint:
  description: SHA256 fingerprint of the host CA.
  returned: success
  type: str
  sample: SHA256:DcWsgelRlCGLKsDEGL/r/33Y+0ltsK554S5FAJEvLdY
user_ca_fingerprint:
  description: SHA256 fingerprint of the user CA.
  returned: success
  type: str
host_ca_path:
  description: Path of the host CA private key.
  returned: always
  type: str
  sample: /etc/sshca/ca/host_ca
user_ca_path:
  description: Path of the user CA private key.
  returned: always
  type: str
  sample: /etc/sshca/ca/user_ca
changes:
  description: What was (or in check mode would be) done.
  returned: always
  type: list
  elements: str
  sample: ["create folder /etc/sshca/ca (0700)", "create host CA key /etc/sshca/ca/host_ca (ed25519)"]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible modules import after their documentation
from ansible_collections.sshca.azure.plugins.module_utils._ca_signers import (  # noqa: E402
    BACKENDS,
    CA_KEY_TYPES,
    CA_KINDS,
    select_backend,
)
from ansible_collections.sshca.azure.plugins.module_utils._runner import run_module  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import CRYPTOGRAPHY  # noqa: E402


def run(module, ca):
    changes = ca.ensure() if not module.check_mode else ca.plan()
    result = {"changed": bool(changes), "changes": changes}
    for kind in CA_KINDS:
        result["%s_ca_path" % kind] = ca.key_path(kind)
        public = ca.public_key(kind)
        if public is not None:
            result["%s_ca_public_key" % kind] = public.openssh()
            result["%s_ca_fingerprint" % kind] = public.fingerprint()
    if module._diff:
        result["diff"] = {"before": "", "after": "".join("%s\n" % change for change in changes)}
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "passphrase": {"type": "str", "no_log": True},
            "allow_unencrypted": {"type": "bool", "default": False},
            "key_type": {"type": "str", "choices": list(CA_KEY_TYPES)},
            "backend": {"type": "str", "default": "file", "choices": list(BACKENDS)},
        },
        supports_check_mode=True,
    )
    params = module.params

    def task():
        ca = select_backend(module, params["backend"], path=params["path"], passphrase=params["passphrase"],
                            allow_unencrypted=params["allow_unencrypted"], key_type=params["key_type"])
        return run(module, ca)

    run_module(module, "ssh_ca", task, requirements=[CRYPTOGRAPHY])


if __name__ == "__main__":
    main()
