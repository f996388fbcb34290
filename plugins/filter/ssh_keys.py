# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters to_rfc4716, from_rfc4716 and ssh_fingerprint (documented in the .yml files beside this one)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import CERT_SUFFIX, read_certificate
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (
    SSHKeyError,
    parse_public_key,
    parse_rfc4716,
)


def _text(value, name):
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise AnsibleFilterError("%s: input must be a string, not %s" % (name, type(value).__name__))
    return value


def to_rfc4716(public_key, comment=None, headers=None):
    """OpenSSH public key line (or RFC 4716 text) -> RFC 4716 text."""
    try:
        key = parse_public_key(_text(public_key, "to_rfc4716"), "to_rfc4716 input")
        if headers is not None and not isinstance(headers, dict):
            raise AnsibleFilterError("to_rfc4716: headers must be a dict")
        return key.rfc4716(comment=comment, headers=headers)
    except SSHKeyError as exc:
        raise AnsibleFilterError(str(exc)) from None


def from_rfc4716(text, comment=None):
    """RFC 4716 text -> OpenSSH public key line (comment from the Comment header unless given)."""
    try:
        key = parse_rfc4716(_text(text, "from_rfc4716"), "from_rfc4716 input")
    except SSHKeyError as exc:
        raise AnsibleFilterError(str(exc)) from None
    return key.with_comment(key.comment if comment is None else comment).openssh()


def ssh_fingerprint(key, name=None):
    """SHA256 fingerprint, as `ssh-keygen -lf` prints it (and sshd gives %F), of a public key (either
    form) or a certificate. `name` (the variable the key came from) names the input in errors."""
    source = "ssh_fingerprint input" + (" %s" % name if name else "")
    value = _text(key, source)
    words = value.split() if isinstance(value, str) else value.decode("utf-8", "replace").split()
    try:
        if words and words[0].endswith(CERT_SUFFIX):
            return read_certificate(value, source).public_key.fingerprint()
        return parse_public_key(value, source, min_rsa_bits=1024).fingerprint()
    except SSHKeyError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule(object):
    def filters(self):
        return {
            "to_rfc4716": to_rfc4716,
            "from_rfc4716": from_rfc4716,
            "ssh_fingerprint": ssh_fingerprint,
        }
