# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options every module that signs with the CA takes (argument spec: _ca_signers.CA_ARGUMENT_SPEC).
    DOCUMENTATION = r"""
options:
  ca_path:
    description:
      - Folder holding the host and user CA, as made by M(sshca.azure.ssh_ca).
      - Host certificates are signed by the host CA (C(host_ca)), user certificates by the user CA (C(user_ca)).
    type: path
    required: true
  ca_passphrase:
    description:
      - Passphrase of the CA private keys.
      - Required unless O(ca_allow_unencrypted=true) and the CA keys are stored unencrypted.
    type: str
  ca_allow_unencrypted:
    description:
      - Use CA keys that are stored without a passphrase. Off by default, so an unencrypted CA is never
        used by accident.
    type: bool
    default: false
  ca_backend:
    description:
      - Where the CA keys live. Only C(file) (OpenSSH private-key files on the controller) for now.
    type: str
    choices: [file]
    default: file
requirements:
  - cryptography >= 42
  - bcrypt (for passphrase-encrypted keys)
"""
