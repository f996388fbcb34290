#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_cert_info
short_description: Read every field of an OpenSSH certificate
version_added: 0.1.0
description:
  - Parses an OpenSSH certificate, checks its signature against the CA key it names, and returns every field,
    like C(ssh-keygen -L) does.
  - Works on any OpenSSH certificate, whoever signed it.
extends_documentation_fragment:
  - sshca.azure._attributes
  - sshca.azure._attributes.info_module
options:
  path:
    description: Certificate file (on the machine running the module). Exclusive with O(content).
    type: path
  content:
    description: Certificate as an OpenSSH line. Exclusive with O(path).
    type: str
requirements:
  - cryptography >= 42
seealso:
  - module: sshca.azure.ssh_cert
"""

EXAMPLES = r"""
- name: When does my user certificate expire?
  sshca.azure.ssh_cert_info:
    path: ~/.ssh/id_ed25519-cert.pub
  register: cert

- name: Renew when less than an hour is left
  ansible.builtin.debug:
    msg: "Expires at {{ cert.valid_before }}"
  when: cert.remaining_seconds < 3600
"""

RETURN = r"""
type:
  description: Certificate type, C(user) or C(host).
  returned: success
  type: str
  sample: host
key_type:
  description: Certificate key type.
  returned: success
  type: str
  sample: ssh-ed25519-cert-v01@openssh.com
public_key:
  description: The certified public key (OpenSSH line).
  returned: success
  type: str
fingerprint:
  description: SHA256 fingerprint of the certified public key.
  returned: success
  type: str
  sample: SHA256:IkUxV9NvUiTa5qErsNUgHagu5q++3JbJYiiAePILSK8
serial:
  description: Serial number.
  returned: success
  type: int
key_id:
  description: Key identity.
  returned: success
  type: str
principals:
  description: Principals; empty means valid for any.
  returned: success
  type: list
  elements: str
valid_after:
  description: Start of validity, ISO 8601 UTC, or C(always).
  returned: success
  type: str
  sample: "2026-11-25T21:54:34Z"
valid_before:
  description: End of validity, ISO 8601 UTC, or C(forever).
  returned: success
  type: str
  sample: "2026-11-26T13:59:34Z"
critical_options:
  description: Critical options (name to value; flags have an empty value).
  returned: success
  type: dict
  sample: {"source-address": "10.0.0.0/8"}
extensions:
  description: Extensions.
  returned: success
  type: list
  elements: str
  sample: [permit-pty]
signing_ca:
  description: The CA that signed the certificate.
  returned: success
  type: dict
  contains:
    public_key:
      description: CA public key (OpenSSH line).
      type: str
      returned: success
    fingerprint:
      description: SHA256 fingerprint of the CA key.
      type: str
      returned: success
expired:
  description: Whether the certificate has expired.
  returned: success
  type: bool
remaining_seconds:
  description: Seconds until it expires (0 once expired).
  returned: success
  type: int
"""

import time  # noqa: E402 - Ansible modules import after their documentation

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._runner import run_module  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import (  # noqa: E402
    read_certificate,
    read_certificate_file,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import CRYPTOGRAPHY, SSHKeyError  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path"},
            "content": {"type": "str"},
        },
        mutually_exclusive=[("path", "content")],
        required_one_of=[("path", "content")],
        supports_check_mode=True,
    )

    def task():
        if module.params["path"]:
            cert = read_certificate_file(module.params["path"])
            if cert is None:
                raise SSHKeyError(module.params["path"], "does not exist")
            if isinstance(cert, SSHKeyError):
                raise cert
        else:
            cert = read_certificate(module.params["content"], "content")
        return dict(cert.info(int(time.time())), changed=False)

    run_module(module, "ssh_cert_info", task, requirements=[CRYPTOGRAPHY])


if __name__ == "__main__":
    main()
