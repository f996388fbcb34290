# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CA signers: one interface, one backend per place a CA key can live.

A backend stores a host CA and a user CA and hands out a `CASigner` for each. Callers only use
`signer.public_key` and `signer.sign_certificate(spec)`. A backend whose key cannot leave its
store (Azure Key Vault) implements `sign_data` only: the base class builds the to-be-signed
certificate bytes locally and wraps the remote signature (see `_ssh_certs.certificate_tbs`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import abc
import os
import stat
import traceback

from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import (
    assemble_certificate,
    certificate_from_spec,
    certificate_tbs,
    ecdsa_signature_fields,
    ssh_signature,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (
    CRYPTOGRAPHY_IMPORT_ERROR,
    HAS_CRYPTOGRAPHY,
    SSHKeyError,
    atomic_write,
    generate_private_key,
    load_private_key,
    parse_openssh_public_key,
    private_key_is_encrypted,
    private_key_to_openssh,
    public_key_of,
)

try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
except ImportError:  # pragma: no cover - select_backend reports it
    pass

CA_KINDS = ("host", "user")
CA_KEY_TYPES = ("ed25519", "rsa", "ecdsa")
CA_KEY_SIZES = {"rsa": 4096, "ecdsa": 384}  # CA keys outlive many certificates: the stronger size
_EC_HASHES = {256: "SHA256", 384: "SHA384", 521: "SHA512"}


class CASigner(abc.ABC):
    """Signs certificates with one CA key."""

    @property
    @abc.abstractmethod
    def public_key(self):
        """The CA's public key (`_ssh_keys.PublicKey`)."""

    @abc.abstractmethod
    def sign_data(self, data):
        """The SSH signature blob (`string algorithm, string signature`) over `data`."""

    def sign_certificate(self, spec, comment=""):
        """A signed `_ssh_certs.Certificate` for `spec`, made with the certificate blob writer."""
        tbs = certificate_tbs(spec, self.public_key, os.urandom(32))
        return certificate_from_spec(spec, self.public_key, assemble_certificate(tbs, self.sign_data(tbs)), comment)


class KeySigner(CASigner):
    """A CA whose private key is in this process (loaded by the file backend)."""

    def __init__(self, private_key, comment=""):
        self._private_key = private_key
        self._public_key = public_key_of(private_key, comment)

    @property
    def public_key(self):
        return self._public_key

    def sign_data(self, data):
        key = self._private_key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return ssh_signature("ssh-ed25519", key.sign(data))
        if isinstance(key, rsa.RSAPrivateKey):
            return ssh_signature("rsa-sha2-512", key.sign(data, padding.PKCS1v15(), hashes.SHA512()))
        bits = key.curve.key_size
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(getattr(hashes, _EC_HASHES[bits])())))
        return ssh_signature(self._public_key.key_type, ecdsa_signature_fields(r, s))


class CABackend(abc.ABC):
    """Where the host and user CA keys live."""

    name = None

    @abc.abstractmethod
    def plan(self):
        """What `ensure` would change, as a list of one-line descriptions (empty: nothing)."""

    @abc.abstractmethod
    def ensure(self):
        """Create whatever `plan` lists; returns the list of changes made."""

    @abc.abstractmethod
    def signer(self, kind):
        """The CASigner for the `host` or `user` CA; SSHKeyError if it is missing or locked."""

    @abc.abstractmethod
    def public_key(self, kind):
        """The public key of the `host` or `user` CA, without unlocking it (None if absent)."""


class FileCA(CABackend):
    """Host and user CA keys as OpenSSH private-key files in one 0700 folder.

    Files: `host_ca`, `host_ca.pub`, `user_ca`, `user_ca.pub`. The private keys are
    passphrase-encrypted unless `allow_unencrypted` is set and no passphrase is given.
    """

    name = "file"

    def __init__(self, path, passphrase=None, allow_unencrypted=False, key_type=None):
        if not path:
            raise SSHKeyError("path", "the CA folder must be given")
        if key_type is not None and key_type not in CA_KEY_TYPES:
            raise SSHKeyError("key_type", "must be one of %s, not %r" % (", ".join(CA_KEY_TYPES), key_type))
        if not passphrase and not allow_unencrypted:
            raise SSHKeyError("passphrase", "CA keys are encrypted at rest: give a passphrase "
                                            "(or set allow_unencrypted=true to opt out)")
        self.path = os.path.abspath(os.path.expanduser(path))
        self.passphrase = passphrase or None
        self.allow_unencrypted = allow_unencrypted
        self.key_type = key_type
        self._signers = {}

    def key_path(self, kind):
        return os.path.join(self.path, "%s_ca" % kind)

    def _check_folder(self):
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise SSHKeyError(self.path, "exists and is not a folder")

    def plan(self):
        self._check_folder()
        changes = []
        if not os.path.isdir(self.path):
            changes.append("create folder %s (0700)" % self.path)
        elif stat.S_IMODE(os.stat(self.path).st_mode) != 0o700:
            changes.append("set mode 0700 on %s" % self.path)
        for kind in CA_KINDS:
            private = self.key_path(kind)
            if not os.path.exists(private):
                changes.append("create %s CA key %s (%s)" % (kind, private, self.key_type or "ed25519"))
                continue
            self._check_existing(kind)
            if stat.S_IMODE(os.stat(private).st_mode) != 0o600:
                changes.append("set mode 0600 on %s" % private)
            expected = self._public_line(kind)
            if not os.path.exists(private + ".pub") or _read(private + ".pub").strip() != expected:
                changes.append("write %s.pub" % private)
        return changes

    def _check_existing(self, kind):
        """An existing CA key must open with our passphrase and match the requested type."""
        private = self.key_path(kind)
        data = _read_bytes(private)
        if private_key_is_encrypted(data):
            if not self.passphrase:
                raise SSHKeyError(private, "is encrypted; give its passphrase")
        elif not self.allow_unencrypted:
            raise SSHKeyError(private, "is not encrypted; set allow_unencrypted=true to use it as it is")
        elif self.passphrase:
            raise SSHKeyError(private, "is not encrypted, but a passphrase was given")
        signer = self._load(kind)
        if self.key_type and signer.public_key.family != self.key_type:
            raise SSHKeyError(private, "is a %s key, not %s; move it away to make a new CA"
                              % (signer.public_key.family, self.key_type))
        return signer

    def ensure(self):
        changes = self.plan()
        if not changes:
            return changes
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        os.chmod(self.path, 0o700)
        for kind in CA_KINDS:
            private = self.key_path(kind)
            if not os.path.exists(private):
                key_type = self.key_type or "ed25519"
                key = generate_private_key(key_type, CA_KEY_SIZES.get(key_type), source="key_type")
                atomic_write(private, private_key_to_openssh(key, self.passphrase), 0o600)
                self._signers[kind] = KeySigner(key, "sshca %s CA" % kind)  # no need to decrypt it again
            os.chmod(private, 0o600)
            line = self._public_line(kind)
            if not os.path.exists(private + ".pub") or _read(private + ".pub").strip() != line:
                atomic_write(private + ".pub", line + "\n", 0o644)
        return changes

    def _public_line(self, kind):
        return self._load(kind).public_key.openssh()

    def _load(self, kind):
        cache = self._signers
        if kind not in cache:
            private = self.key_path(kind)
            if not os.path.exists(private):
                raise SSHKeyError(private, "does not exist; create the CA with sshca.azure.ssh_ca first")
            key = load_private_key(_read_bytes(private), self.passphrase, private)
            cache[kind] = KeySigner(key, "sshca %s CA" % kind)
        return cache[kind]

    def signer(self, kind):
        if kind not in CA_KINDS:
            raise SSHKeyError("type", "must be host or user, not %r" % (kind,))
        return self._load(kind)

    def public_key(self, kind):
        private = self.key_path(kind)
        if not os.path.exists(private):
            return None
        if kind not in self._signers and os.path.exists(private + ".pub"):
            # ssh_ca keeps the .pub in step with the key; reading it spares the passphrase KDF.
            try:
                return parse_openssh_public_key(_read_bytes(private + ".pub"), private + ".pub")
            except SSHKeyError:
                pass  # unreadable: the private key decides
        return self._load(kind).public_key


def _read(path):
    with open(path, "r") as stream:
        return stream.read()


def _read_bytes(path):
    with open(path, "rb") as stream:
        return stream.read()


BACKENDS = {"file": FileCA}


def select_backend(module, backend="file", **options):
    """The CA backend named `backend`, or fail the module (missing library, bad options)."""
    if not HAS_CRYPTOGRAPHY:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("cryptography"), exception="".join(
            traceback.format_exception(type(CRYPTOGRAPHY_IMPORT_ERROR), CRYPTOGRAPHY_IMPORT_ERROR, None)))
    if backend not in BACKENDS:
        module.fail_json(msg="backend: must be one of %s, not %r" % (", ".join(BACKENDS), backend))
    try:
        return BACKENDS[backend](**options)
    except SSHKeyError as exc:
        module.fail_json(msg=str(exc))


# Options shared by every module that signs with the CA (documented in doc_fragments/_ca.py).
CA_ARGUMENT_SPEC = {
    "ca_path": {"type": "path", "required": True},
    "ca_passphrase": {"type": "str", "no_log": True},
    "ca_allow_unencrypted": {"type": "bool", "default": False},
    "ca_backend": {"type": "str", "default": "file", "choices": list(BACKENDS)},
}


def ca_from_params(module):
    """The CA backend described by CA_ARGUMENT_SPEC's options."""
    params = module.params
    return select_backend(module, params["ca_backend"], path=params["ca_path"], passphrase=params["ca_passphrase"],
                          allow_unencrypted=params["ca_allow_unencrypted"])
