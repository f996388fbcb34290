#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_cert
short_description: Sign an OpenSSH host or user certificate with the sshca.azure CA
version_added: 0.1.0
description:
  - Signs a public key into an OpenSSH certificate with the host CA (O(type=host)), the user CA (O(type=user))
    or the admin CA (O(type=user), O(ca=admin)) made by M(sshca.azure.ssh_ca), and writes it to O(path) on the
    machine running the module. Only the signing CA is unlocked.
  - With O(ca_backend=azure_keyvault) the certificate is built here and Key Vault signs its digest with the CA
    key, which never leaves the vault. The result names the key version that signed.
  - With O(certificates), several keys (say a host's ed25519, ECDSA and RSA host keys) are signed in one call,
    sharing every other option; the CA is unlocked once for them all. Every item is checked before the CA is
    unlocked or anything is written.
  - Every certificate signed is first recorded in the issuance log O(audit_log).
  - Idempotent by a named policy, O(regenerate). With the default, an existing certificate is kept until its
    key, CA, type, principals, key id, options, extensions, fixed times or explicit serial change, or until
    it has expired or has less than a third of its life left.
  - The start of a relative validity window is set 5 minutes in the past, so hosts whose clocks run a little
    behind accept the certificate at once.
extends_documentation_fragment:
  - sshca.azure._attributes
  - sshca.azure._attributes.FULL_SUPPORT
  - sshca.azure._ca
  - sshca.azure._ca.custody
  - sshca.azure._azure
attributes:
  diff_mode:
    details:
      - The diff shows the old and new certificate and a one-line summary of each.
      - With O(certificates), one diff per item, headed by its path.
  idempotent:
    details: A certificate is re-signed only for the reasons O(regenerate) names; RV(reason) says which.
options:
  type:
    description: Certificate type; host certificates are signed by the host CA, user certificates by the user CA.
    type: str
    choices: [host, user]
    required: true
  public_key:
    description:
      - The public key to certify, as an OpenSSH line or RFC 4716 text.
      - Exactly one of O(public_key), O(public_key_path) and O(certificates) is required.
    type: str
  public_key_path:
    description: File holding the public key to certify. Exclusive with O(public_key) and O(certificates).
    type: path
  path:
    description:
      - Where the certificate is written (OpenSSH one-line form, mode 0644).
      - Required with O(public_key) or O(public_key_path); exclusive with O(certificates).
    type: path
  certificates:
    description:
      - Several certificates to sign in one call, each from its own public key into its own file; every other
        option applies to each of them. Exclusive with O(public_key), O(public_key_path) and O(path).
      - The paths must differ. O(serial) is refused with more than one item, since certificates sharing a
        serial would all be revoked by a KRL entry for one.
      - A bad item fails the task naming it (C(certificates[2].public_key)), and nothing is written.
    type: list
    elements: dict
    suboptions:
      public_key:
        description: The public key to certify, as an OpenSSH line or RFC 4716 text.
        type: str
        required: true
      path:
        description: Where its certificate is written (OpenSSH one-line form, mode 0644).
        type: path
        required: true
  principals:
    description:
      - Host names and addresses (host certificates) or user names (user certificates) the certificate is
        valid for. At least one is required.
    type: list
    elements: str
    required: true
  valid_for:
    description:
      - Lifetime from now, as C(16h), C(30d), C(+1w) or C(1d12h). Defaults to C(16h) for user and C(30d) for
        host certificates. Exclusive with O(valid_to).
    type: str
  valid_from:
    description:
      - Start of validity; an absolute time (C(2026-05-01T12:00:00Z), C(20260501), C(@epoch), C(always)) or
        relative to now (C(-1h)). Defaults to 5 minutes ago.
    type: str
  valid_to:
    description:
      - End of validity; an absolute time, C(forever), or relative to now (C(+30d)). Exclusive with
        O(valid_for).
    type: str
  serial:
    description:
      - Certificate serial number (0 to 2^64-1). Default is a random 64-bit number, chosen when the
        certificate is signed and kept as long as it is not re-signed.
      - Not with more than one item of O(certificates).
    type: int
  key_id:
    description:
      - Key identity logged by sshd.
      - Defaults to the Azure identity that signs through Key Vault (a user's UPN, or C(app:<application id>) for a
        service principal or managed identity, else C(oid:<object id>)), so sshd's log shows who issued; with the
        file backend to C(<type>:<principals>).
    type: str
  critical_options:
    description:
      - Critical options of a user certificate. C(force-command) (a command) and C(source-address) (comma-separated
        addresses or CIDRs, or a list) are supported.
    type: dict
  extensions:
    description:
      - Extensions of a user certificate. Default, like C(ssh-keygen) without X11 forwarding,
        C(permit-agent-forwarding), C(permit-port-forwarding), C(permit-pty), C(permit-user-rc).
        Give an empty list for none. Host certificates take none.
    type: list
    elements: str
  regenerate:
    description:
      - When an existing certificate at O(path) (or at each item's path) is re-signed.
      - V(never) keeps any readable existing certificate.
      - V(fail) fails when the certificate would be re-signed, saying why.
      - V(partial_idempotence) re-signs when the public key, CA, type, principals, key id, critical options,
        extensions, an explicit O(serial), or absolute O(valid_from)/O(valid_to) differ, or when the
        certificate has expired or has less than a third of its life left (relative windows only).
      - V(full_idempotence) also re-signs when the lifetime of a relative window differs from the one asked for.
      - V(always) re-signs on every run.
    type: str
    choices: [never, fail, partial_idempotence, full_idempotence, always]
    default: partial_idempotence
seealso:
  - module: sshca.azure.ssh_ca
  - module: sshca.azure.ssh_cert_info
"""

EXAMPLES = r"""
- name: Host certificate for a VM's host key
  sshca.azure.ssh_cert:
    type: host
    ca_path: /etc/sshca/ca
    host_ca_passphrase: "{{ vault_host_ca_passphrase }}"
    public_key: "{{ host_key.content | b64decode }}"
    path: "/var/lib/sshca/{{ inventory_hostname }}-cert.pub"
    principals:
      - "{{ inventory_hostname }}"
      - "{{ ansible_host }}"

- name: Certificates for all three of a VM's host keys, with one unlock of the host CA
  sshca.azure.ssh_cert:
    type: host
    ca_path: /etc/sshca/ca
    host_ca_passphrase: "{{ vault_host_ca_passphrase }}"
    certificates:
      - public_key: "ssh-ed25519 {{ ansible_facts.ssh_host_key_ed25519_public }}"
        path: "{{ cert_dir }}/ssh_host_ed25519_key-cert.pub"
      - public_key: >-
          {{ ansible_facts.ssh_host_key_ecdsa_public_keytype }} {{ ansible_facts.ssh_host_key_ecdsa_public }}
        path: "{{ cert_dir }}/ssh_host_ecdsa_key-cert.pub"
      - public_key: "ssh-rsa {{ ansible_facts.ssh_host_key_rsa_public }}"
        path: "{{ cert_dir }}/ssh_host_rsa_key-cert.pub"
    principals:
      - "{{ inventory_hostname }}"
      - "{{ ansible_host }}"
  vars:
    cert_dir: "/var/lib/sshca/{{ inventory_hostname }}"
  delegate_to: localhost

- name: A 16-hour user certificate for a person (only the user CA's passphrase is needed)
  sshca.azure.ssh_cert:
    type: user
    ca_path: /etc/sshca/ca
    user_ca_passphrase: "{{ vault_user_ca_passphrase }}"
    public_key_path: ~/.ssh/id_ed25519.pub
    path: ~/.ssh/id_ed25519-cert.pub
    principals: [alice]
    key_id: alice@example.com

- name: A user certificate signed in Azure Key Vault; the key id names the signing identity
  sshca.azure.ssh_cert:
    type: user
    ca_backend: azure_keyvault
    vault_url: https://contoso-sshca.vault.azure.net
    ca_path: ~/.sshca/ca
    public_key_path: ~/.ssh/id_ed25519.pub
    path: ~/.ssh/id_ed25519-cert.pub
    principals: [alice]

- name: The automation's admin certificate, from the admin CA
  sshca.azure.ssh_cert:
    type: user
    ca: admin
    ca_path: /etc/sshca/ca
    public_key_path: ~/.sshca/admin.pub
    path: ~/.sshca/admin-cert.pub
    principals: [sshca-admin]
    valid_for: 1h

- name: A CI certificate limited to one command and one network
  sshca.azure.ssh_cert:
    type: user
    ca_path: /etc/sshca/ca
    user_ca_passphrase: "{{ vault_user_ca_passphrase }}"
    public_key_path: /ci/deploy.pub
    path: /ci/deploy-cert.pub
    principals: [deploy]
    valid_for: 1h
    critical_options:
      force-command: /usr/local/bin/deploy
      source-address: 10.0.0.0/8
"""

RETURN = r"""
certificates:
  description:
    - One entry per item of O(certificates), in order, each with the keys the single form returns at the top
      level, RV(path), RV(certificate) (when one exists), RV(type), RV(serial), RV(key_id), RV(principals),
      RV(valid_after), RV(valid_before), RV(resigned) and RV(reason).
    - The task is changed when any of them is (in check mode, would be) re-signed.
  returned: with O(certificates)
  type: list
  elements: dict
  sample:
    - path: /var/lib/sshca/vm1/ssh_host_ed25519_key-cert.pub
      certificate: ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t...
      type: host
      serial: 12391315337200603786
      key_id: host:vm1
      principals: [vm1, 127.0.0.20]
      valid_after: "2026-11-25T21:54:34Z"
      valid_before: "2026-12-25T22:00:00Z"
      resigned: true
      reason: no certificate yet
path:
  description: Path of the certificate.
  returned: without O(certificates)
  type: str
certificate:
  description: The certificate (OpenSSH line). Not returned in check mode when a new one would be signed.
  returned: without O(certificates), when a certificate exists
  type: str
type:
  description: Certificate type.
  returned: without O(certificates)
  type: str
  sample: user
serial:
  description: Serial number.
  returned: without O(certificates)
  type: int
  sample: 12391315337200603786
key_id:
  description: Key identity.
  returned: without O(certificates)
  type: str
  sample: alice@example.com
principals:
  description: Principals.
  returned: without O(certificates)
  type: list
  elements: str
  sample: [alice]
valid_after:
  description: Start of validity, ISO 8601 UTC (C(always) for no start).
  returned: without O(certificates)
  type: str
  sample: "2026-11-25T21:54:34Z"
valid_before:
  description: End of validity, ISO 8601 UTC (C(forever) for no end).
  returned: without O(certificates)
  type: str
  sample: "2026-11-26T13:59:34Z"
resigned:
  description: Whether the certificate was (in check mode, would be) signed anew.
  returned: without O(certificates)
  type: bool
reason:
  description: Why it was re-signed, or why not.
  returned: without O(certificates)
  type: str
  sample: less than a third of its life left (17000s of 57900s)
ca:
  description: The CA that signs (or signed) the certificate.
  returned: always
  type: str
  sample: user
ca_backend:
  description: Where that CA's key lives.
  returned: always
  type: str
  sample: azure_keyvault
ca_key_id:
  description: Key Vault identifier of the CA key, with the version that signed (or would sign).
  returned: with O(ca_backend=azure_keyvault)
  type: str
  sample: https://contoso-sshca.vault.azure.net/keys/sshca-user-ca/7f2090ddc3f7483499e9a9fbb4b5962b
ca_key_version:
  description: The version of the Key Vault CA key that signed (or would sign).
  returned: with O(ca_backend=azure_keyvault)
  type: str
  sample: 7f2090ddc3f7483499e9a9fbb4b5962b
audit_log:
  description: The issuance log the new certificates were recorded in.
  returned: when a certificate was signed
  type: str
  sample: /home/alice/.sshca/ca/issued.jsonl
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible modules import after their documentation
from ansible_collections.sshca.azure.plugins.module_utils._ca_signers import (  # noqa: E402
    CA_REQUIRED_IF,
    ca_argument_spec,
    certificate_from_params,
)
from ansible_collections.sshca.azure.plugins.module_utils._runner import run_module  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (  # noqa: E402
    CRYPTOGRAPHY,
    REGENERATE_OPTION,
)


def main():
    argument_spec = ca_argument_spec()
    argument_spec.update({
        "type": {"type": "str", "required": True, "choices": ["host", "user"]},
        "public_key": {"type": "str", "no_log": False},
        "public_key_path": {"type": "path"},
        "path": {"type": "path"},
        "certificates": {"type": "list", "elements": "dict", "options": {
            "public_key": {"type": "str", "required": True, "no_log": False},
            "path": {"type": "path", "required": True},
        }},
        "principals": {"type": "list", "elements": "str", "required": True},
        "valid_for": {"type": "str"},
        "valid_from": {"type": "str"},
        "valid_to": {"type": "str"},
        "serial": {"type": "int"},
        "key_id": {"type": "str"},
        "critical_options": {"type": "dict"},
        "extensions": {"type": "list", "elements": "str"},
        "regenerate": REGENERATE_OPTION,
    })
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("public_key", "public_key_path"), ("public_key", "certificates"),
                            ("public_key_path", "certificates"), ("path", "certificates"), ("valid_for", "valid_to")],
        required_one_of=[("public_key", "public_key_path", "certificates"), ("path", "certificates")],
        required_if=CA_REQUIRED_IF,
        supports_check_mode=True,
    )
    run_module(module, "ssh_cert", lambda: certificate_from_params(module), requirements=[CRYPTOGRAPHY])


if __name__ == "__main__":
    main()
