#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_keypair
short_description: Make an SSH keypair with OpenSSH and RFC 4716 (SSH2) public key files
version_added: 0.1.0
description:
  - Creates an RSA or Ed25519 private key in OpenSSH format (mode 0600, optionally passphrase-encrypted) and
    writes its public key twice, as an OpenSSH line and as an RFC 4716 (SSH2) file, the form Azure's
    bring-your-own-key field takes.
  - An existing key is kept unless O(regenerate) says otherwise; the public key files are rewritten when they
    do not match it.
  - No private key material is ever returned.
extends_documentation_fragment:
  - sshca.azure._attributes
  - sshca.azure._attributes.FULL_SUPPORT
attributes:
  diff_mode:
    details: The diff shows the fingerprint and public key before and after.
options:
  path:
    description: Path of the private key.
    type: path
    required: true
  type:
    description: Key type.
    type: str
    choices: [rsa, ed25519]
    default: rsa
  size:
    description: RSA key size in bits; at least 2048. Ignored for Ed25519.
    type: int
    default: 3072
  comment:
    description: Comment of the public key (both files).
    type: str
    default: ""
  passphrase:
    description:
      - Passphrase to encrypt the private key with. An existing unencrypted key is encrypted with it
        (the key itself is kept).
    type: str
  public_key_path:
    description: Path of the OpenSSH public key. Defaults to O(path) with C(.pub) appended.
    type: path
  rfc4716_path:
    description: Path of the RFC 4716 public key. Defaults to O(path) with C(.rfc4716.pub) appended.
    type: path
  state:
    description: Whether the keypair files should exist.
    type: str
    choices: [present, absent]
    default: present
  regenerate:
    description:
      - When an existing private key is replaced by a new one.
      - V(never) keeps any existing key, even of another type or size.
      - V(fail) fails if the existing key is of another type or size.
      - V(partial_idempotence) replaces a key of another type or size; fails if the key cannot be read
        (for example a wrong passphrase), so a key is never lost to a typo.
      - V(full_idempotence) also replaces a key that cannot be read.
      - V(always) makes a new key on every run.
    type: str
    choices: [never, fail, partial_idempotence, full_idempotence, always]
    default: partial_idempotence
  mode:
    description: File mode of the private key, as for M(ansible.builtin.file).
    type: raw
    default: "0600"
requirements:
  - cryptography >= 42
  - bcrypt (for passphrase-encrypted keys)
seealso:
  - module: sshca.azure.ssh_ca
  - module: sshca.azure.ssh_cert
"""

EXAMPLES = r"""
- name: Bootstrap keypair for a new Azure VM
  sshca.azure.ssh_keypair:
    path: ~/.ssh/azure_bootstrap
    type: rsa
    size: 3072
    comment: bootstrap@example
  register: bootstrap

- name: Show the RFC 4716 form Azure takes
  ansible.builtin.debug:
    msg: "{{ bootstrap.public_key_rfc4716 }}"

- name: An Ed25519 key protected by a passphrase
  sshca.azure.ssh_keypair:
    path: /etc/sshca/ci_key
    type: ed25519
    passphrase: "{{ vault_ci_key_passphrase }}"
"""

RETURN = r"""
path:
  description: Path of the private key.
  returned: always
  type: str
  sample: /home/me/.ssh/azure_bootstrap
public_key:
  description: The public key as an OpenSSH line.
  returned: when O(state=present)
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPIs1kGYIT+0CS4ShkLjL1vn0wex9ExMarDOJfsBvE9p me@example
public_key_rfc4716:
  description: The public key in RFC 4716 (SSH2) form.
  returned: when O(state=present)
  type: str
fingerprint:
  description: SHA256 fingerprint as C(ssh-keygen -lf) prints it.
  returned: when O(state=present)
  type: str
  sample: SHA256:IkUxV9NvUiTa5qErsNUgHagu5q++3JbJYiiAePILSK8
type:
  description: Key type.
  returned: when O(state=present)
  type: str
  sample: rsa
size:
  description: Key size in bits (not the file size).
  returned: when O(state=present)
  type: int
  sample: 3072
reason:
  description: Why the key was (or would be) created or replaced, or why not.
  returned: always
  type: str
  sample: key is up to date
"""

import os  # noqa: E402 - Ansible modules import after their documentation

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._runner import run_module  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (  # noqa: E402
    CRYPTOGRAPHY,
    REGENERATE_OPTION,
    KeyAction,
    KeypairFiles,
)


def present(module, keypair):
    plan = keypair.plan()
    before = plan["public"]
    new_key = plan["key"] in (KeyAction.CREATE, KeyAction.REGENERATE)
    changed = plan["key"] is not KeyAction.KEEP or bool(keypair.stale_public_files(before))
    public = keypair.apply(plan) if changed and not module.check_mode else before
    if os.path.exists(keypair.path):
        changed = module.set_mode_if_different(keypair.path, module.params["mode"], changed)
    result = {"changed": changed, "path": keypair.path, "reason": plan["reason"]}
    if public is not None and not (module.check_mode and new_key):
        result.update(public_key=public.openssh(), public_key_rfc4716=public.rfc4716(),
                      fingerprint=public.fingerprint(), type=public.family, size=public.bits)
    if module._diff:
        after = "(a new key)\n" if module.check_mode and new_key else _describe(public)
        result["diff"] = {"before": _describe(before), "after": after}
    return result


def _describe(public):
    if public is None:
        return ""
    return "%s\n%s\n" % (public.fingerprint(), public.openssh())


class KeypairModule(AnsibleModule):
    """AnsibleModule reports file stats for a result with `path`, `size` included; ours is the key size."""

    def add_path_info(self, kwargs):
        key_size = kwargs.get("size")
        kwargs = super(KeypairModule, self).add_path_info(kwargs)
        if key_size is not None:
            kwargs["size"] = key_size
        return kwargs


def main():
    module = KeypairModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "type": {"type": "str", "default": "rsa", "choices": ["rsa", "ed25519"]},
            "size": {"type": "int", "default": 3072},
            "comment": {"type": "str", "default": ""},
            "passphrase": {"type": "str", "no_log": True},
            "public_key_path": {"type": "path"},
            "rfc4716_path": {"type": "path"},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "regenerate": REGENERATE_OPTION,
            "mode": {"type": "raw", "default": "0600"},
        },
        supports_check_mode=True,
    )
    params = module.params

    def task():
        keypair = KeypairFiles(params["path"], params["type"], params["size"], params["comment"],
                               params["passphrase"], params["public_key_path"], params["rfc4716_path"],
                               params["regenerate"])
        if params["state"] == "present":
            return present(module, keypair)
        removed = keypair.remove(module.check_mode)
        return {"changed": bool(removed), "path": keypair.path,
                "reason": "removed %s" % ", ".join(removed) if removed else "already absent"}

    run_module(module, "ssh_keypair", task, requirements=[CRYPTOGRAPHY])


if __name__ == "__main__":
    main()
