# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CA signers: one interface, one backend per place a CA key can live.

Three CAs, three custodies: the host CA signs host certificates, the user CA user certificates
for people and CI, the admin CA the automation's own user certificates. Each is its own key,
unlocked on its own (a passphrase per CA file, a Key Vault key per CA), so whoever holds one
cannot sign with another.

A backend hands out a `CASigner` per CA. Callers only use `signer.public_key` and
`signer.sign_certificate(spec)`. A backend whose key cannot leave its store (Azure Key Vault,
`_ca_keyvault.py`) implements `sign_data` only: the base class builds the to-be-signed
certificate bytes locally and wraps the remote signature (see `_ssh_certs.certificate_tbs`).
Every certificate signed is recorded in the issuance log, when one is attached, before it is
handed back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import abc
import contextlib
import fcntl
import json
import os
import stat
import time
import traceback

from ansible.module_utils.basic import env_fallback
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import (
    CertificateError,
    assemble_certificate,
    certificate_from_spec,
    certificate_task,
    certificate_tbs,
    ecdsa_signature_fields,
    format_time,
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

CA_KINDS = ("host", "user", "admin")
# The certificate type each CA signs: the admin CA signs user certificates for the automation.
CERT_TYPE_OF_CA = {"host": "host", "user": "user", "admin": "user"}
CA_KEY_TYPES = ("ed25519", "rsa", "ecdsa")
CA_KEY_SIZES = {"rsa": 4096, "ecdsa": 384}  # CA keys outlive many certificates: the stronger size
ALLOWED_KEY_SIZES = {"rsa": (3072, 4096), "ecdsa": (256, 384, 521), "ed25519": ()}
RSA_SIGNATURE_ALGORITHMS = {"rsa-sha2-512": "SHA512", "rsa-sha2-256": "SHA256"}
_EC_HASHES = {256: "SHA256", 384: "SHA384", 521: "SHA512"}
# One passphrase per CA; the single variable of earlier releases unlocks any CA without its own.
PASSPHRASE_VARIABLES = {kind: "SSHCA_%s_CA_PASSPHRASE" % kind.upper() for kind in CA_KINDS}
SHARED_PASSPHRASE_VARIABLE = "SSHCA_CA_PASSPHRASE"  # noqa: S105 - a name
ISSUANCE_LOG_NAME = "issued.jsonl"


class CASigner(abc.ABC):
    """Signs certificates with one CA key."""

    backend = None  # the CABackend.name that made it
    kind = None  # host, user or admin
    issuance_log = None  # an IssuanceLog: every certificate is recorded before it is handed back

    @property
    @abc.abstractmethod
    def public_key(self):
        """The CA's public key (`_ssh_keys.PublicKey`)."""

    @abc.abstractmethod
    def sign_data(self, data):
        """The SSH signature blob (`string algorithm, string signature`) over `data`."""

    def provenance(self):
        """What the issuance log and the module result say about the key that signed (no secret)."""
        return {}

    def sign_certificate(self, spec, comment=""):
        """A signed `_ssh_certs.Certificate` for `spec`, made with the certificate blob writer."""
        tbs = certificate_tbs(spec, self.public_key, os.urandom(32))
        certificate = certificate_from_spec(spec, self.public_key, assemble_certificate(tbs, self.sign_data(tbs)),
                                            comment)
        if self.issuance_log is not None:
            self.issuance_log.record(certificate, self)
        return certificate


def rsa_hash_name(algorithm):
    if algorithm not in RSA_SIGNATURE_ALGORITHMS:
        raise SSHKeyError("ca_signature_algorithm", "must be one of %s, not %r"
                          % (", ".join(RSA_SIGNATURE_ALGORITHMS), algorithm))
    return RSA_SIGNATURE_ALGORITHMS[algorithm]


class KeySigner(CASigner):
    """A CA whose private key is in this process (loaded by the file backend)."""

    backend = "file"

    def __init__(self, private_key, comment="", rsa_algorithm="rsa-sha2-512"):
        self._private_key = private_key
        self._public_key = public_key_of(private_key, comment)
        self._rsa_algorithm = rsa_algorithm
        self._rsa_hash = rsa_hash_name(rsa_algorithm)

    @property
    def public_key(self):
        return self._public_key

    def sign_data(self, data):
        key = self._private_key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return ssh_signature("ssh-ed25519", key.sign(data))
        if isinstance(key, rsa.RSAPrivateKey):
            digest = getattr(hashes, self._rsa_hash)()
            return ssh_signature(self._rsa_algorithm, key.sign(data, padding.PKCS1v15(), digest))
        bits = key.curve.key_size
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(getattr(hashes, _EC_HASHES[bits])())))
        return ssh_signature(self._public_key.key_type, ecdsa_signature_fields(r, s))


class CABackend(abc.ABC):
    """Where the host, user and admin CA keys live."""

    name = None

    @abc.abstractmethod
    def plan(self):
        """What `ensure` would change, as a list of one-line descriptions (empty: nothing)."""

    @abc.abstractmethod
    def ensure(self):
        """Create whatever `plan` lists; returns the list of changes made."""

    @abc.abstractmethod
    def signer(self, kind):
        """The CASigner for the `host`, `user` or `admin` CA; SSHKeyError if it is missing or locked."""

    @abc.abstractmethod
    def public_key(self, kind):
        """The public key of a CA, without unlocking it (None if absent)."""

    def default_key_id(self, kind):
        """The key id certificates get when none is asked for; None: `<type>:<principals>`."""
        return None

    def describe(self, kind):
        """Where the CA key lives, for module results (no secret)."""
        return {}


def check_key_size(key_type, key_size):
    """key_size must suit key_type (any type when not given)."""
    if key_size is None:
        return None
    allowed = ALLOWED_KEY_SIZES.get(key_type or "ed25519", ())
    if key_size not in allowed:
        raise SSHKeyError("key_size", "%s CA keys take %s, not %s" % (
            key_type or "ed25519", "no key_size" if not allowed else " or ".join(str(n) for n in allowed) + " bits",
            key_size))
    return key_size


def check_kind(kind, source="ca"):
    if kind not in CA_KINDS:
        raise SSHKeyError(source, "must be host, user or admin, not %r" % (kind,))
    return kind


@contextlib.contextmanager
def folder_lock(path):
    """An exclusive lock on a folder, held while a CA is created in it (parallel first runs make one CA)."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def plan_private_folder(path):
    """What making `path` a 0700 folder takes (a list of changes); SSHKeyError if it is a file."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise SSHKeyError(path, "exists and is not a folder")
    if not os.path.isdir(path):
        return ["create folder %s (0700)" % path]
    if stat.S_IMODE(os.stat(path).st_mode) != 0o700:
        return ["set mode 0700 on %s" % path]
    return []


def ensure_under_lock(path, plan, create):
    """Run `create()` if `plan()` lists changes, holding the lock on the folder `path` (None: no folder).

    `plan()` runs first so every problem is found before anything is written, then again under the
    lock: a parallel run may have made the CA meanwhile, and then there is nothing left to do.
    """
    changes = plan()
    if not changes:
        return changes
    made = False
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            os.mkdir(path, 0o700)
            made = True
        except FileExistsError:
            pass  # it exists, or a parallel run made it
    with folder_lock(path) if path else contextlib.nullcontext():
        changes = plan()
        if made and changes:
            # The folder is reported by the run that fills it: a parallel run that made the
            # folder but found the CA already created under the lock changed nothing else.
            changes.insert(0, "create folder %s (0700)" % path)
        if path:
            os.chmod(path, 0o700)
        create()
    return changes


class FileCA(CABackend):
    """The CA keys as OpenSSH private-key files in one 0700 folder.

    Files: `host_ca`, `user_ca`, `admin_ca` and their `.pub`. Each private key is encrypted with
    its own passphrase (`passphrases[kind]`, else `passphrase`) unless `allow_unencrypted` is set
    and none is given. Only the CAs in `kinds` are created, checked or unlocked; the others'
    public keys are read from their `.pub` files.
    """

    name = "file"

    def __init__(self, path, passphrase=None, allow_unencrypted=False, key_type=None, key_size=None,
                 passphrases=None, kinds=CA_KINDS, rsa_algorithm="rsa-sha2-512", issuance_log=None):
        if not path:
            raise SSHKeyError("path", "the CA folder must be given")
        if key_type is not None and key_type not in CA_KEY_TYPES:
            raise SSHKeyError("key_type", "must be one of %s, not %r" % (", ".join(CA_KEY_TYPES), key_type))
        self.kinds = tuple(check_kind(kind) for kind in kinds)
        self.passphrases = {kind: (passphrases or {}).get(kind) or passphrase or None for kind in CA_KINDS}
        self.allow_unencrypted = allow_unencrypted
        for kind in self.kinds:
            self._passphrase(kind)  # fail before anything is read or written
        self.path = os.path.abspath(os.path.expanduser(path))
        self.key_type = key_type
        self.key_size = check_key_size(key_type, key_size)
        self.rsa_algorithm = rsa_algorithm
        rsa_hash_name(rsa_algorithm)
        self.issuance_log = issuance_log
        self._signers = {}

    def _passphrase(self, kind):
        passphrase = self.passphrases[kind]
        if not passphrase and not self.allow_unencrypted:
            raise SSHKeyError("%s_ca_passphrase" % kind, "the %s CA is encrypted at rest: give its passphrase (or "
                                                         "set %s), or set allow_unencrypted=true to opt out"
                              % (kind, PASSPHRASE_VARIABLES[kind]))
        return passphrase

    def key_path(self, kind):
        return os.path.join(self.path, "%s_ca" % kind)

    def describe(self, kind):
        return {"path": self.key_path(kind)}

    def plan(self):
        changes = plan_private_folder(self.path)
        for kind in self.kinds:
            private = self.key_path(kind)
            if not os.path.exists(private):
                changes.append("create %s CA key %s (%s)" % (kind, private, self._new_key_type()))
                continue
            self._check_existing(kind)
            if stat.S_IMODE(os.stat(private).st_mode) != 0o600:
                changes.append("set mode 0600 on %s" % private)
            expected = self._public_line(kind)
            if not os.path.exists(private + ".pub") or _read(private + ".pub").strip() != expected:
                changes.append("write %s.pub" % private)
        return changes

    def _new_key_type(self):
        key_type = self.key_type or "ed25519"
        size = self.key_size or CA_KEY_SIZES.get(key_type)
        return "%s %d" % (key_type, size) if size else key_type

    def _check_existing(self, kind):
        """An existing CA key must open with its passphrase and match the requested type."""
        private = self.key_path(kind)
        passphrase = self._passphrase(kind)
        data = _read_bytes(private)
        if private_key_is_encrypted(data):
            if not passphrase:
                raise SSHKeyError(private, "is encrypted; give its passphrase (%s)" % PASSPHRASE_VARIABLES[kind])
        elif not self.allow_unencrypted:
            raise SSHKeyError(private, "is not encrypted; set allow_unencrypted=true to use it as it is")
        elif passphrase:
            raise SSHKeyError(private, "is not encrypted, but a passphrase was given")
        signer = self._load(kind)
        if self.key_type and signer.public_key.family != self.key_type:
            raise SSHKeyError(private, "is a %s key, not %s; move it away to make a new CA"
                              % (signer.public_key.family, self.key_type))
        return signer

    def ensure(self):
        return ensure_under_lock(self.path, self.plan, lambda: [self._write_key(kind) for kind in self.kinds])

    def _write_key(self, kind):
        private = self.key_path(kind)
        if not os.path.exists(private):
            key_type = self.key_type or "ed25519"
            key = generate_private_key(key_type, self.key_size or CA_KEY_SIZES.get(key_type), source="key_type")
            atomic_write(private, private_key_to_openssh(key, self._passphrase(kind)), 0o600)
            self._signers[kind] = self._signer(key, kind)  # no need to decrypt it again
        os.chmod(private, 0o600)
        line = self._public_line(kind)
        if not os.path.exists(private + ".pub") or _read(private + ".pub").strip() != line:
            atomic_write(private + ".pub", line + "\n", 0o644)

    def _signer(self, key, kind):
        signer = KeySigner(key, "sshca %s CA" % kind, self.rsa_algorithm)
        signer.kind = kind
        signer.issuance_log = self.issuance_log
        return signer

    def _public_line(self, kind):
        return self._load(kind).public_key.openssh()

    def _load(self, kind):
        cache = self._signers
        if kind not in cache:
            private = self.key_path(kind)
            if not os.path.exists(private):
                raise SSHKeyError(private, "does not exist; create the CA with sshca.azure.ssh_ca first")
            key = load_private_key(_read_bytes(private), self._passphrase(kind), private)
            cache[kind] = self._signer(key, kind)
        return cache[kind]

    def signer(self, kind):
        check_kind(kind, "type")
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


# --- the issuance log -------------------------------------------------------------------------


class IssuanceLog:
    """A JSON-lines record of every certificate signed on this controller; never a secret.

    One line per certificate, appended under a lock with one write: time, serial, key id, type,
    principals, validity, the certified key's and the CA's fingerprints, the backend, and what
    the backend says about its key (Key Vault: key id, key version, signing identity).
    """

    def __init__(self, path):
        self.path = os.path.abspath(os.path.expanduser(path))

    def check(self):
        """The log must be writable before anything is signed (nothing is issued unrecorded)."""
        folder = os.path.dirname(self.path)
        if os.path.isdir(self.path):
            raise SSHKeyError("audit_log", "%s is a folder, not a file" % self.path)
        if not os.path.isdir(folder):
            raise SSHKeyError("audit_log", "folder %s does not exist" % folder)
        if not os.access(self.path if os.path.exists(self.path) else folder, os.W_OK):
            raise SSHKeyError("audit_log", "%s is not writable" % self.path)

    def record(self, certificate, signer):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "serial": certificate.serial,
            "key_id": certificate.key_id,
            "type": certificate.cert_type,
            "principals": list(certificate.principals),
            "valid_after": format_time(certificate.valid_after),
            "valid_before": format_time(certificate.valid_before),
            "public_key_fingerprint": certificate.public_key.fingerprint(),
            "ca": signer.kind,
            "ca_fingerprint": signer.public_key.fingerprint(),
            "backend": signer.backend,
        }
        entry.update(signer.provenance())
        line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


# --- module glue shared by ssh_ca and ssh_cert ---------------------------------------------------

BACKEND_NAMES = ("file", "azure_keyvault")


def _backend_class(name):
    if name == "azure_keyvault":
        from ansible_collections.sshca.azure.plugins.module_utils._ca_keyvault import KeyVaultCA
        return KeyVaultCA
    return FileCA


def select_backend(module, backend="file", **options):
    """The CA backend named `backend`, or fail the module (missing library, bad options)."""
    if not HAS_CRYPTOGRAPHY:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("cryptography"), exception="".join(
            traceback.format_exception(type(CRYPTOGRAPHY_IMPORT_ERROR), CRYPTOGRAPHY_IMPORT_ERROR, None)))
    if backend not in BACKEND_NAMES:
        module.fail_json(msg="backend: must be one of %s, not %r" % (", ".join(BACKEND_NAMES), backend))
    cls = _backend_class(backend)
    missing = getattr(cls, "missing_library", lambda: None)()
    if missing:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
    try:
        return cls(**options)
    except SSHKeyError as exc:
        module.fail_json(msg=str(exc))


# Each CA's own passphrase and Key Vault key: the options ssh_ca and ssh_cert share
# (documented in doc_fragments/_ca.py, CUSTODY).
CUSTODY_ARGUMENT_SPEC = {}
for _kind in CA_KINDS:
    CUSTODY_ARGUMENT_SPEC["%s_ca_passphrase" % _kind] = {
        "type": "str", "no_log": True, "fallback": (env_fallback, [PASSPHRASE_VARIABLES[_kind]])}
    # No default here: unset, the CA folder's record of a rotation names the key, else sshca-<kind>-ca.
    CUSTODY_ARGUMENT_SPEC["%s_ca_key" % _kind] = {"type": "str", "no_log": False}
CUSTODY_ARGUMENT_SPEC["vault_url"] = {"type": "str", "fallback": (env_fallback, ["SSHCA_KEYVAULT_URL"])}


def custody_params(params, kinds):
    """Per-CA passphrases and Key Vault key names from CUSTODY_ARGUMENT_SPEC's options."""
    return ({kind: params.get("%s_ca_passphrase" % kind) for kind in kinds},
            {kind: params.get("%s_ca_key" % kind) for kind in kinds})


def azure_params(params):
    """The shared Azure auth options (module_utils/_azure.py), for the Key Vault backend."""
    from ansible_collections.sshca.azure.plugins.module_utils._azure import AUTH_ARGUMENT_SPEC
    return {name: params.get(name) for name in AUTH_ARGUMENT_SPEC}


def backend_options(params, backend, path, kinds, shared_passphrase, allow_unencrypted, **extra):
    """Constructor options of the backend named `backend` (only the CAs in `kinds` are unlocked)."""
    passphrases, key_names = custody_params(params, kinds)
    if backend == "azure_keyvault":
        return dict(path=path, vault_url=params.get("vault_url"), key_names=key_names, kinds=kinds,
                    azure=azure_params(params), **extra)
    extra.pop("hsm", None)
    return dict(path=path, passphrase=shared_passphrase, passphrases=passphrases,
                allow_unencrypted=allow_unencrypted, kinds=kinds, **extra)


def ca_argument_spec():
    """ssh_cert's CA options (doc_fragments/_ca.py): which CA signs, where it lives, how it is unlocked."""
    from ansible_collections.sshca.azure.plugins.module_utils._azure import AUTH_ARGUMENT_SPEC
    spec = {
        "ca": {"type": "str", "choices": list(CA_KINDS)},
        "ca_path": {"type": "path"},
        "ca_passphrase": {"type": "str", "no_log": True, "fallback": (env_fallback, [SHARED_PASSPHRASE_VARIABLE])},
        "ca_allow_unencrypted": {"type": "bool", "default": False},
        "ca_backend": {"type": "str", "default": "file", "choices": list(BACKEND_NAMES)},
        "ca_signature_algorithm": {"type": "str", "default": "rsa-sha2-512",
                                   "choices": list(RSA_SIGNATURE_ALGORITHMS)},
        "audit_log": {"type": "path"},
    }
    spec.update(CUSTODY_ARGUMENT_SPEC)
    spec.update(AUTH_ARGUMENT_SPEC)
    return spec


CA_REQUIRED_IF = [("ca_backend", "file", ("ca_path",)), ("ca_backend", "azure_keyvault", ("vault_url",))]


def signing_ca(params):
    """The CA that signs ssh_cert's certificate: `ca`, else the one for its type."""
    cert_type = params["type"]
    kind = params.get("ca") or cert_type
    if CERT_TYPE_OF_CA[kind] != cert_type:
        raise CertificateError("ca", "the %s CA signs %s certificates, not %s certificates"
                               % (kind, CERT_TYPE_OF_CA[kind], cert_type))
    return kind


def issuance_log_path(params):
    """audit_log, else issued.jsonl in the CA folder, else in ~/.sshca."""
    if params.get("audit_log"):
        return params["audit_log"]
    folder = params.get("ca_path") or os.path.join("~", ".sshca")
    return os.path.join(folder, ISSUANCE_LOG_NAME)


def certificate_from_params(module):
    """Run ssh_cert: only the signing CA is unlocked, once for all the certificates of the call (the
    backend caches its signer); each certificate is logged before it is written."""
    params = dict(module.params)
    try:
        kind = signing_ca(params)
    except SSHKeyError as exc:
        module.fail_json(msg=str(exc))
    log = IssuanceLog(issuance_log_path(params))
    ca = select_backend(module, params["ca_backend"], **backend_options(
        params, params["ca_backend"], params.get("ca_path"), (kind,), params.get("ca_passphrase"),
        params["ca_allow_unencrypted"], rsa_algorithm=params["ca_signature_algorithm"], issuance_log=log))
    if not module.check_mode:
        log.check()
    if params.get("key_id") is None:
        params["key_id"] = ca.default_key_id(kind)
    params["ca"] = kind
    result = certificate_task(params, ca, module.check_mode)
    result["ca"] = kind
    result["ca_backend"] = ca.name
    if result["changed"] and not module.check_mode:
        result["audit_log"] = log.path
    result.update({"ca_%s" % name: value for name, value in ca.describe(kind).items() if name != "path"})
    return result
