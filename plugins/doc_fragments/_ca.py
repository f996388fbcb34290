# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of a module that signs with a CA (argument spec: _ca_signers.ca_argument_spec()).
    DOCUMENTATION = r"""
options:
  ca:
    description:
      - The CA that signs. Host certificates are signed by the host CA; user certificates by the user CA (people
        and CI) or, for the automation's own access, by the admin CA.
      - Defaults to the CA of O(type). Only this CA is unlocked, so its passphrase (or its Key Vault permission) is
        all the run needs.
    type: str
    choices: [host, user, admin]
  ca_path:
    description:
      - Folder of the CAs, as made by M(sshca.azure.ssh_ca) (C(host_ca), C(user_ca), C(admin_ca)). Required with
        O(ca_backend=file).
      - With O(ca_backend=azure_keyvault), the folder of the CA public keys; only the issuance log is written
        there (see O(audit_log)).
    type: path
  ca_passphrase:
    description:
      - Passphrase of the signing CA when it has none of its own (O(user_ca_passphrase) and friends), as
        earlier releases used one passphrase for all CAs.
      - If not set, the environment variable E(SSHCA_CA_PASSPHRASE) is used.
    type: str
  ca_allow_unencrypted:
    description:
      - Use CA keys that are stored without a passphrase. Off by default, so an unencrypted CA is never
        used by accident.
    type: bool
    default: false
  ca_backend:
    description:
      - Where the CA keys live. V(file) (OpenSSH private-key files on the controller) or V(azure_keyvault)
        (a key per CA in Azure Key Vault or Managed HSM, see O(vault_url); the certificate is built here and
        only its digest is signed by Key Vault).
    type: str
    choices: [file, azure_keyvault]
    default: file
  ca_signature_algorithm:
    description:
      - Signature algorithm of an RSA CA (Key Vault's RS512 or RS256). Ignored for Ed25519 and ECDSA CAs, whose
        algorithm follows from the key (ECDSA P-256, P-384, P-521 sign with SHA-256, SHA-384, SHA-512).
    type: str
    choices: [rsa-sha2-512, rsa-sha2-256]
    default: rsa-sha2-512
  audit_log:
    description:
      - JSON-lines issuance log on the machine running the module; every certificate signed is appended before
        it is written (time, serial, key id, type, principals, validity, the certified key's and the CA's
        fingerprints, the backend and, for Key Vault, the key id, key version and signing Azure identity).
        It never holds a secret.
      - Defaults to C(issued.jsonl) in O(ca_path), or in C(~/.sshca) without it.
    type: path
requirements:
  - cryptography >= 42
  - bcrypt (for passphrase-encrypted keys)
  - azure-identity and azure-keyvault-keys (for Key Vault)
"""

    # Each CA's own custody: the options ssh_ca and ssh_cert share (_ca_signers.CUSTODY_ARGUMENT_SPEC).
    CUSTODY = r"""
options:
  host_ca_passphrase:
    description:
      - Passphrase of the host CA key file.
      - If not set, the environment variable E(SSHCA_HOST_CA_PASSPHRASE) is used, then the shared passphrase
        (E(SSHCA_CA_PASSPHRASE)).
    type: str
  user_ca_passphrase:
    description:
      - Passphrase of the user CA key file.
      - If not set, the environment variable E(SSHCA_USER_CA_PASSPHRASE) is used, then the shared passphrase
        (E(SSHCA_CA_PASSPHRASE)).
    type: str
  admin_ca_passphrase:
    description:
      - Passphrase of the admin CA key file.
      - If not set, the environment variable E(SSHCA_ADMIN_CA_PASSPHRASE) is used, then the shared passphrase
        (E(SSHCA_CA_PASSPHRASE)).
    type: str
  vault_url:
    description:
      - URL of the Azure Key Vault (C(https://NAME.vault.azure.net)) or Managed HSM (C(https://NAME.managedhsm.azure.net))
        holding the CA keys, for the C(azure_keyvault) backend.
      - If not set, the environment variable E(SSHCA_KEYVAULT_URL) is used.
      - The Azure identity (see O(auth_source)) needs C(get) on each CA key it uses, C(sign) to issue with it, and
        C(create) for M(sshca.azure.ssh_ca) to make it (for example the roles Key Vault Crypto User and Key Vault
        Crypto Officer, scoped to one key).
    type: str
  host_ca_key:
    description:
      - Name of the host CA key in Key Vault, optionally with a version (C(NAME/VERSION)). Without a version, the
        key's current version signs; a new version is a new CA, so pin the version to rotate on your own terms.
      - When not set, the name the CA folder's C(keyvault_keys.json) records (C(rotate_ca.yml) writes it when it
        makes new CA keys, so signing follows a rotation), else C(sshca-host-ca). A name set that differs from that
        record fails.
    type: str
  user_ca_key:
    description:
      - Name of the user CA key in Key Vault, optionally C(NAME/VERSION).
      - When not set, the name the CA folder's C(keyvault_keys.json) records, else C(sshca-user-ca).
    type: str
  admin_ca_key:
    description:
      - Name of the admin CA key in Key Vault, optionally C(NAME/VERSION).
      - When not set, the name the CA folder's C(keyvault_keys.json) records, else C(sshca-admin-ca).
    type: str
"""
