#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: sshd_cert_trust
short_description: Write, in one call, the files a host's sshd reads for certificate logins
version_added: 0.1.0
description:
  - Writes on the managed host, in one module call, the host certificates, the file of trusted user CAs, the
    principals command, one folder of principals files per signing CA, and any other O(files); installs an
    empty key revocation list when there is none; removes the paths given in O(remove); and enables or
    disables one systemd O(timer).
  - Folders are made first (mode C(0755)), then each file is written to a temporary file in its folder,
    synced, given owner C(root:root) and its mode (C(0644), the principals command C(0755)) and renamed over
    the target, so sshd never reads a half-written file. A file already as asked is left alone.
  - Each folder of O(principals) holds exactly the files given for it; any other regular file in it
    is removed, so an account no rule allows any more stops logging in.
  - An existing key revocation list is never touched, whatever it holds (C(playbooks/revoke.yml) owns it);
    a missing one is made with C(ssh-keygen -k), revoking nothing.
  - It needs only the host's Python standard library, C(ssh-keygen) (for a missing KRL) and C(systemctl)
    (for O(timer)).
  - Bad input fails with one line naming the option and path, before anything is written.
extends_documentation_fragment:
  - sshca.azure._attributes
  - sshca.azure._attributes.FULL_SUPPORT
attributes:
  diff_mode:
    details:
      - One diff per folder or file made, changed or removed, with its text before and after.
      - One for the timer when it is enabled or disabled, with its state before and after.
options:
  host_certificates:
    description:
      - The host certificates to install, each the path sshd's C(HostCertificate) reads (absolute) to the
        certificate (one OpenSSH line).
      - In check mode a certificate may be empty (not signed yet); it is then reported as to be written.
    type: dict
    default: {}
  trusted_ca_keys_path:
    description: The file sshd's C(TrustedUserCAKeys) reads. Not written when not given.
    type: path
  trusted_ca_keys:
    description: Its text, the trusted CA public keys one per line.
    type: str
    default: ''
  principals_command_path:
    description:
      - The program sshd's C(AuthorizedPrincipalsCommand) runs (its folder is made).
      - Not written when not given.
    type: path
  principals_command:
    description: Its text (a script).
    type: str
    default: ''
  principals:
    description:
      - Per signing CA, a folder of principals files (C(<folder>/<account>)), which sshd's principals command
        reads. Each folder holds exactly the accounts given; any other regular file in it is removed.
    type: list
    elements: dict
    default: []
    suboptions:
      folder:
        description: The folder.
        type: path
        required: true
      ca:
        description: The signing CA's kind (V(user), V(admin)), named in each file's comment.
        type: str
        required: true
      accounts:
        description: Account to the list of principals that may log in as it with a certificate of this CA.
        type: dict
        default: {}
  revoked_keys_path:
    description: The key revocation list sshd's C(RevokedKeys) reads; made, empty, only when missing.
    type: path
  files:
    description:
      - Other files to write the same way (temporary file, sync, owner C(root:root), mode, rename), after the
        ones above and before O(remove).
      - A missing folder is made (mode C(0755)); an existing folder keeps its owner and mode (they go to
        folders such as C(/usr/local/libexec) and C(/etc/systemd/system)).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file, an absolute path without C(..), C(//) or a trailing C(/), each given once.
        type: path
        required: true
      content:
        description: Its text.
        type: str
        required: true
      mode:
        description:
          - Its mode, a quoted octal string of three or four digits.
          - An unquoted YAML C(0644) reaches the module as the number 420 and is refused, not misread.
        type: raw
        default: '0644'
  timer:
    description:
      - A systemd timer to keep enabled and started, or disabled and stopped.
      - With O(timer.enabled=true), after every file is written, C(systemctl daemon-reload) runs if a file in
        C(/etc/systemd/system), C(/lib/systemd/system) or C(/usr/lib/systemd/system) was written or removed
        by this call; then C(systemctl enable --now) runs unless the timer is already enabled and active.
      - With O(timer.enabled=false), before anything is removed, C(systemctl disable --now) runs if systemctl
        reports the timer enabled or active; a timer it does not know is left alone.
      - In check mode only C(systemctl is-enabled) and C(systemctl is-active) run; a timer whose unit file
        is not written yet is reported as to be enabled.
    type: dict
    suboptions:
      name:
        description: The timer unit, for example C(sshca-host-cert-check.timer).
        type: str
        required: true
      enabled:
        description: Whether the timer is enabled and active (V(true)) or disabled and stopped (V(false)).
        type: bool
        required: true
  remove:
    description: Files or folders to remove (a folder with everything in it).
    type: list
    elements: path
    default: []
  look_for:
    description:
      - Paths only looked for, and left alone; those that exist are returned in RV(found).
      - A later call can then remove them, when it is safe to, only on the hosts that have them.
    type: list
    elements: path
    default: []
"""

EXAMPLES = r"""
- name: Install the host certificate and trust the user CA
  become: true
  sshca.azure.sshd_cert_trust:
    host_certificates:
      /etc/ssh/ssh_host_ed25519_key-cert.pub: "{{ signed.certificate }}"
    trusted_ca_keys_path: /etc/ssh/sshca/trusted_user_ca_keys.pub
    trusted_ca_keys: "{{ user_ca_public_key }}"
    principals:
      - folder: /etc/ssh/sshca/user_principals
        ca: user
        accounts:
          azureuser: [grp:platform]
    revoked_keys_path: /etc/ssh/sshca/revoked_keys

- name: Install a daily check with its systemd units and start its timer
  become: true
  sshca.azure.sshd_cert_trust:
    files:
      - path: /usr/local/libexec/sshca-host-cert-check.py
        content: "{{ lookup('ansible.builtin.file', 'sshca-host-cert-check.py') }}"
      - path: /etc/systemd/system/sshca-host-cert-check.service
        content: "{{ lookup('ansible.builtin.template', 'sshca-host-cert-check.service.j2') }}"
      - path: /etc/systemd/system/sshca-host-cert-check.timer
        content: "{{ lookup('ansible.builtin.template', 'sshca-host-cert-check.timer.j2') }}"
    timer:
      name: sshca-host-cert-check.timer
      enabled: true

- name: Stop that timer, then remove the check's files
  become: true
  sshca.azure.sshd_cert_trust:
    timer:
      name: sshca-host-cert-check.timer
      enabled: false
    remove:
      - /etc/systemd/system/sshca-host-cert-check.timer
      - /etc/systemd/system/sshca-host-cert-check.service
      - /usr/local/libexec/sshca-host-cert-check.py

- name: Remove an earlier release's files
  become: true
  sshca.azure.sshd_cert_trust:
    remove: [/etc/ssh/sshca/principals, /etc/ssh/sshca/user_ca.pub]
"""

RETURN = r"""
results:
  description:
    - One entry per folder, file, removal and timer, in the order they were handled.
    - A timer to disable comes first (it is stopped before any file is removed); one to enable comes last.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The folder or file, or the timer's unit name.
      type: str
    kind:
      description: V(directory), V(file), V(krl) (the key revocation list), V(absent) (to remove) or V(timer).
      type: str
    action:
      description:
        - V(create), V(update) (text, owner or mode), V(remove) or V(unchanged); for the timer V(enable),
          V(disable) or V(unchanged).
        - In check mode, what a run would do.
      type: str
  sample: [{path: /etc/ssh/sshca/user_principals/azureuser, kind: file, action: create}]
found:
  description: The paths of O(look_for) that exist.
  returned: always
  type: list
  elements: str
  sample: [/etc/ssh/sshca/principals]
"""

import os  # noqa: E402 - Ansible modules import after their documentation

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._runner import run_module  # noqa: E402
from ansible_collections.sshca.azure.plugins.module_utils._sshd_trust import (  # noqa: E402
    TrustFilesError,
    trust_files_task,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "host_certificates": {"type": "dict", "default": {}},
            "trusted_ca_keys_path": {"type": "path"},
            "trusted_ca_keys": {"type": "str", "default": "", "no_log": False},  # public keys
            "principals_command_path": {"type": "path"},
            "principals_command": {"type": "str", "default": ""},
            "principals": {"type": "list", "elements": "dict", "default": [], "options": {
                "folder": {"type": "path", "required": True},
                "ca": {"type": "str", "required": True},
                "accounts": {"type": "dict", "default": {}},
            }},
            "revoked_keys_path": {"type": "path"},
            "files": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "path", "required": True},
                "content": {"type": "str", "required": True},
                "mode": {"type": "raw", "default": "0644"},
            }},
            "timer": {"type": "dict", "options": {
                "name": {"type": "str", "required": True},
                "enabled": {"type": "bool", "required": True},
            }},
            "remove": {"type": "list", "elements": "path", "default": []},
            "look_for": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )

    def make_empty_krl(path):
        keygen = module.get_bin_path("ssh-keygen", required=True)
        rc, _out, err = module.run_command([keygen, "-q", "-k", "-f", path, "/dev/null"])
        if rc != 0:
            raise TrustFilesError("revoked_keys_path: ssh-keygen -k failed: %s" % err.strip())

    systemctl_path = module.get_bin_path("systemctl") if module.params["timer"] else None

    def systemctl(args):
        return module.run_command([systemctl_path, *args])

    run_module(module, "sshd_cert_trust", lambda: trust_files_task(
        module.params, module.check_mode, module._diff, owner=(0, 0) if os.geteuid() == 0 else None,
        make_empty_krl=make_empty_krl, systemctl=systemctl if systemctl_path else None))


if __name__ == "__main__":
    main()
