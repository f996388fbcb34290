#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_ca
short_description: Create or load the SSH host, user and admin CAs
version_added: 0.1.0
description:
  - Keeps three certificate authorities, each in its own custody, so trusting or holding one never means the
    others. The host CA signs host certificates; the user CA signs user certificates for people and CI; the admin
    CA signs the automation's own user certificates, the only ones hosts accept for the admin principal.
  - With O(backend=file) the CA keys are OpenSSH private-key files in O(path) (C(host_ca), C(user_ca),
    C(admin_ca), mode 0600, folder mode 0700) next to their public keys (C(host_ca.pub), ...). Each key is
    encrypted with its own passphrase (O(host_ca_passphrase), O(user_ca_passphrase), O(admin_ca_passphrase));
    O(passphrase) unlocks any CA without one of its own. Files are written atomically; creating the CAs holds
    a lock on O(path), so parallel first runs end with one set of CAs.
  - With O(backend=azure_keyvault) each CA is a key in the Azure Key Vault or Managed HSM at O(vault_url)
    (O(host_ca_key), O(user_ca_key), O(admin_ca_key)), created there when missing (never exported, key
    operations C(sign) and C(verify) only), so Azure RBAC can grant C(sign) on one CA alone. O(path) then holds
    only the public keys; no private key byte is ever on the machine running the module.
  - Only the CAs listed in O(cas) are created, checked and unlocked, so each custodian can run this module with
    their own passphrase or Key Vault permission only. The public keys of the others are returned when present.
  - Existing CA keys are never replaced. An existing key must open with its passphrase (file) or be a signing
    key (Key Vault).
  - No private key material is ever returned.
extends_documentation_fragment:
  - sshca.azure._attributes
  - sshca.azure._attributes.FULL_SUPPORT
  - sshca.azure._ca.custody
  - sshca.azure._azure
attributes:
  diff_mode:
    details: The diff lists the files, folder modes and Key Vault keys that are (or would be) created or fixed.
options:
  path:
    description:
      - Folder of the CA keys (O(backend=file)), or of the CA public keys (O(backend=azure_keyvault)). Created with
        mode 0700 if missing.
    type: path
    required: true
  cas:
    description: The CAs this run creates, checks and unlocks.
    type: list
    elements: str
    choices: [host, user, admin]
    default: [host, user, admin]
  passphrase:
    description:
      - Passphrase for every CA of O(cas) that has none of its own (O(host_ca_passphrase) and friends), as
        earlier releases used one passphrase for all CAs. Work folders made that way keep working.
      - If not set, the environment variable E(SSHCA_CA_PASSPHRASE) is used.
    type: str
  allow_unencrypted:
    description:
      - Store (or use) CA keys without a passphrase when none is given. Meant for tests and throwaway labs.
    type: bool
    default: false
  key_type:
    description:
      - Type of new CA keys. C(ed25519) when not given for O(backend=file), C(ecdsa) for
        O(backend=azure_keyvault), which has no Ed25519 keys.
      - For existing CA keys, when given, the keys must be of this type (the module fails otherwise;
        move the old CA away to rotate it).
    type: str
    choices: [ed25519, rsa, ecdsa]
  key_size:
    description:
      - Size of new C(rsa) (3072 or 4096 bits, default 4096) or C(ecdsa) (NIST P-256, P-384 or P-521, default
        P-384) CA keys.
    type: int
    choices: [256, 384, 521, 3072, 4096]
  hsm:
    description:
      - Create the Key Vault keys as HSM-protected keys (C(RSA-HSM), C(EC-HSM); a Premium vault). Always on for
        a Managed HSM (C(*.managedhsm.azure.net)).
    type: bool
    default: false
  backend:
    description: Where the CA keys live.
    type: str
    choices: [file, azure_keyvault]
    default: file
requirements:
  - cryptography >= 42
  - bcrypt (for passphrase-encrypted keys)
  - azure-identity and azure-keyvault-keys (for O(backend=azure_keyvault))
seealso:
  - module: sshca.azure.ssh_cert
"""

EXAMPLES = r"""
- name: Host, user and admin CA on the controller, one passphrase each
  sshca.azure.ssh_ca:
    path: /etc/sshca/ca
    host_ca_passphrase: "{{ vault_host_ca_passphrase }}"
    user_ca_passphrase: "{{ vault_user_ca_passphrase }}"
    admin_ca_passphrase: "{{ vault_admin_ca_passphrase }}"
  register: ca

- name: The user CA's custodian checks (or creates) the user CA alone
  sshca.azure.ssh_ca:
    path: /etc/sshca/ca
    cas: [user]
  environment:
    SSHCA_USER_CA_PASSPHRASE: "{{ vault_user_ca_passphrase }}"

- name: The three CAs as keys in Azure Key Vault
  sshca.azure.ssh_ca:
    backend: azure_keyvault
    vault_url: https://contoso-sshca.vault.azure.net
    path: ~/.sshca/ca
    key_type: ecdsa
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
admin_ca_public_key:
  description: Public key of the admin CA (OpenSSH line). Absent in check mode before the CA exists.
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
admin_ca_fingerprint:
  description: SHA256 fingerprint of the admin CA.
  returned: success
  type: str
host_ca_path:
  description: Path of the host CA private key.
  returned: with O(backend=file)
  type: str
  sample: /etc/sshca/ca/host_ca
user_ca_path:
  description: Path of the user CA private key.
  returned: with O(backend=file)
  type: str
  sample: /etc/sshca/ca/user_ca
admin_ca_path:
  description: Path of the admin CA private key.
  returned: with O(backend=file)
  type: str
  sample: /etc/sshca/ca/admin_ca
host_ca_key_id:
  description: Key Vault identifier of the host CA key, with the version in use.
  returned: with O(backend=azure_keyvault), for the CAs of O(cas) that exist
  type: str
  sample: https://contoso-sshca.vault.azure.net/keys/sshca-host-ca/0b1e5c3d9f6a4e2b8c7d6e5f4a3b2c1d
host_ca_key_version:
  description: Version of the host CA key in Key Vault.
  returned: with O(backend=azure_keyvault), for the CAs of O(cas) that exist
  type: str
  sample: 0b1e5c3d9f6a4e2b8c7d6e5f4a3b2c1d
user_ca_key_id:
  description: Key Vault identifier of the user CA key, with the version in use.
  returned: with O(backend=azure_keyvault), for the CAs of O(cas) that exist
  type: str
user_ca_key_version:
  description: Version of the user CA key in Key Vault.
  returned: with O(backend=azure_keyvault), for the CAs of O(cas) that exist
  type: str
admin_ca_key_id:
  description: Key Vault identifier of the admin CA key, with the version in use.
  returned: with O(backend=azure_keyvault), for the CAs of O(cas) that exist
  type: str
admin_ca_key_version:
  description: Version of the admin CA key in Key Vault.
  returned: with O(backend=azure_keyvault), for the CAs of O(cas) that exist
  type: str
changes:
  description: What was (or in check mode would be) done.
  returned: always
  type: list
  elements: str
  sample: ["create folder /etc/sshca/ca (0700)", "create host CA key /etc/sshca/ca/host_ca (ed25519)"]
"""

from ansible.module_utils.basic import AnsibleModule, env_fallback  # noqa: E402 - Ansible modules import after their documentation
from ansible_collections.sshca.azure.plugins.module_utils._azure import AUTH_ARGUMENT_SPEC  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._ca_signers import (  # noqa: E402
    ALLOWED_KEY_SIZES,
    BACKEND_NAMES,
    CA_KEY_TYPES,
    CA_KINDS,
    CUSTODY_ARGUMENT_SPEC,
    backend_options,
    select_backend,
)
from ansible_collections.sshca.azure.plugins.module_utils._runner import run_module  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import CRYPTOGRAPHY  # noqa: E402


def run(module, ca):
    changes = ca.ensure() if not module.check_mode else ca.plan()
    result = {"changed": bool(changes), "changes": changes}
    for kind in CA_KINDS:
        for name, value in ca.describe(kind).items():
            result["%s_ca_%s" % (kind, name)] = value
        public = ca.public_key(kind)
        if public is not None:
            result["%s_ca_public_key" % kind] = public.openssh()
            result["%s_ca_fingerprint" % kind] = public.fingerprint()
    if module._diff:
        result["diff"] = {"before": "", "after": "".join("%s\n" % change for change in changes)}
    return result


def main():
    argument_spec = {
        "path": {"type": "path", "required": True},
        "cas": {"type": "list", "elements": "str", "choices": list(CA_KINDS), "default": list(CA_KINDS)},
        "passphrase": {"type": "str", "no_log": True, "fallback": (env_fallback, ["SSHCA_CA_PASSPHRASE"])},
        "allow_unencrypted": {"type": "bool", "default": False},
        "key_type": {"type": "str", "choices": list(CA_KEY_TYPES)},
        "key_size": {"type": "int", "choices": sorted({n for sizes in ALLOWED_KEY_SIZES.values() for n in sizes})},
        "hsm": {"type": "bool", "default": False},
        "backend": {"type": "str", "default": "file", "choices": list(BACKEND_NAMES)},
    }
    argument_spec.update(CUSTODY_ARGUMENT_SPEC)
    argument_spec.update(AUTH_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, required_if=[("backend", "azure_keyvault", ("vault_url",))],
                           supports_check_mode=True)
    params = module.params

    def task():
        kinds = tuple(kind for kind in CA_KINDS if kind in params["cas"])
        ca = select_backend(module, params["backend"], **backend_options(
            params, params["backend"], params["path"], kinds, params["passphrase"], params["allow_unencrypted"],
            key_type=params["key_type"], key_size=params["key_size"], hsm=params["hsm"]))
        return run(module, ca)

    run_module(module, "ssh_ca", task, requirements=[CRYPTOGRAPHY])


if __name__ == "__main__":
    main()
