# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `azure_keyvault` CA backend: CA keys in Azure Key Vault or Managed HSM, never exported.

The certificate is built here (`CASigner.sign_certificate`); Key Vault only signs the digest of
its to-be-signed bytes:
- RSA keys sign `rsa-sha2-512` (RS512) or `rsa-sha2-256` (RS256): PKCS#1 v1.5, the signature
  field is the raw signature;
- EC keys sign `ecdsa-sha2-nistp256/384/521` (ES256/ES384/ES512): Key Vault returns r||s, SSH
  wants `mpint r, mpint s` (RFC 5656 3.1.2).
Key Vault has no Ed25519. Each CA is its own key, so RBAC can grant `sign` on one CA alone.
A key is named `name` (its current version) or `name/version`; results name the version used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import re
import traceback
from urllib.parse import urlparse

from ansible_collections.sshca.azure.plugins.module_utils._ca_signers import (
    CA_KEY_SIZES,
    CA_KINDS,
    CABackend,
    CASigner,
    check_key_size,
    check_kind,
    ensure_under_lock,
    plan_private_folder,
    rsa_hash_name,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import ecdsa_signature_fields, ssh_signature
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (
    SSHKeyError,
    atomic_write,
    key_from_blob,
    parse_openssh_public_key,
)

try:
    import requests
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
    from azure.core.pipeline.policies import RetryPolicy
    from azure.core.pipeline.transport import RequestsTransport
    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    HAS_KEYVAULT = True
    KEYVAULT_IMPORT_ERROR = None
except ImportError as exc:  # reported by the modules through missing_required_lib
    HAS_KEYVAULT = False
    KEYVAULT_IMPORT_ERROR = exc
    RetryPolicy = object
    ClientAuthenticationError = HttpResponseError = ServiceRequestError = Exception

DEFAULT_KEY_TYPE = "ecdsa"  # EC signs faster and has twice RSA-3072's share of the vault's sign budget
_CURVES = {"P-256": (256, "SHA256", "ES256"), "P-384": (384, "SHA384", "ES384"), "P-521": (521, "SHA512", "ES512")}
_CURVE_OF_SIZE = {bits: name for name, (bits, _hash, _alg) in _CURVES.items()}
_RSA_ALGORITHMS = {"rsa-sha2-512": "RS512", "rsa-sha2-256": "RS256"}
KEY_NAMES_FILE = "keyvault_keys.json"  # in the CA folder: which vault key is each CA, after a rotation
_KEY_NAME_RE = re.compile(r"^[0-9A-Za-z-]{1,127}(/[0-9A-Za-z]{1,64})?$")


def _value(item):
    """An SDK enum's string (KeyType.rsa -> "RSA"), or the string itself."""
    return getattr(item, "value", item)


def _one_line(text, limit=200):
    line = " ".join(str(text).splitlines()[0].split()) if str(text).strip() else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


class _RetryPolicy(RetryPolicy):
    """azure-core's retry, Retry-After honoured; a sign changes nothing in the vault, so it is retried
    like a read. A connection failure is tried twice only: a wrong vault URL should fail fast."""

    def __init__(self):
        super(_RetryPolicy, self).__init__(retry_total=10, retry_status=10, retry_connect=1,
                                           retry_backoff_factor=0.8, retry_backoff_max=60)

    def _is_method_retryable(self, settings, request, response=None):
        if request.method.upper() == "POST" and request.url.split("?")[0].endswith("/sign"):
            return True
        return super(_RetryPolicy, self)._is_method_retryable(settings, request, response)


class IdentityRecorder:
    """A credential that passes tokens through and keeps the claims of the last one.

    The claims name who signs (a person's UPN, or an application's id) for the certificates' key id
    and the issuance log; the token itself is never kept or shown.
    """

    def __init__(self, credential):
        self._credential = credential
        self.claims = {}

    def get_token(self, *scopes, **kwargs):
        token = self._credential.get_token(*scopes, **kwargs)
        try:
            payload = token.token.split(".")[1]
            self.claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError, TypeError):
            self.claims = {}
        return token

    def identity(self):
        """`alice@example.com` (a person) or `app:<application id>` (a service principal, a managed identity),
        else `oid:<object id>`."""
        claims = self.claims
        for name in ("upn", "preferred_username", "unique_name"):
            if claims.get(name):
                return str(claims[name])
        app = claims.get("appid") or claims.get("azp")
        if app:
            return "app:%s" % app
        # A token naming neither still names the principal's object id.
        return "oid:%s" % claims["oid"] if claims.get("oid") else None


class KeyVaultSigner(CASigner):
    """One CA key in Key Vault: signs digests remotely, never sees the private key."""

    backend = "azure_keyvault"

    def __init__(self, crypto_client, key, public_key, source, rsa_algorithm, identity, errors):
        self._client = crypto_client
        self._public_key = public_key
        self._source = source
        self._errors = errors
        self._identity = identity
        self.key_id = key.id
        self.key_version = key.properties.version
        jwk = key.key
        if public_key.family == "rsa":
            self._algorithm, self._hash = _RSA_ALGORITHMS[rsa_algorithm], rsa_hash_name(rsa_algorithm)
            self._ssh_algorithm = rsa_algorithm
        else:
            _bits, self._hash, self._algorithm = _CURVES[_value(jwk.crv)]
            self._ssh_algorithm = public_key.key_type

    @property
    def public_key(self):
        return self._public_key

    def provenance(self):
        return {"vault_key_id": self.key_id, "key_version": self.key_version, "signed_by": self._identity()}

    def sign_data(self, data):
        digest = hashes.Hash(getattr(hashes, self._hash)())
        digest.update(data)
        try:
            result = self._client.sign(self._algorithm, digest.finalize())
        except Exception as exc:  # every SDK failure becomes one line naming the vault and key
            raise self._errors(exc, "sign") from None
        if result.key_id:
            self.key_id = result.key_id
            self.key_version = result.key_id.rstrip("/").rsplit("/", 1)[-1]
        signature = result.signature
        if self._public_key.family == "rsa":
            return ssh_signature(self._ssh_algorithm, signature)
        half = len(signature) // 2
        if len(signature) % 2 or half != (self._public_key.bits + 7) // 8:
            raise SSHKeyError(self._source, "Key Vault returned a %d-byte EC signature, not r||s of %d-byte halves"
                              % (len(signature), (self._public_key.bits + 7) // 8))
        r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        return ssh_signature(self._ssh_algorithm, ecdsa_signature_fields(r, s))


def public_key_from_jwk(jwk, source, comment=""):
    """The SSH public key of a Key Vault JSON web key (RSA or EC P-256/384/521)."""
    kty = _value(jwk.kty)
    if kty in ("RSA", "RSA-HSM"):
        numbers = rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big"))
    elif kty in ("EC", "EC-HSM"):
        crv = _value(jwk.crv)
        curves = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
        if crv not in curves:
            raise SSHKeyError(source, "is an EC key on curve %s; SSH CAs use P-256, P-384 or P-521" % crv)
        numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"),
                                                curves[crv]())
    else:
        raise SSHKeyError(source, "is a %s key, not a signing key (RSA or EC)" % kty)
    line = numbers.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return key_from_blob(base64.b64decode(line.split()[1]), source, comment)


class KeyVaultCA(CABackend):
    """The CA keys in one Key Vault (or Managed HSM), one key per CA.

    `path`, when given, is a local folder for what is public: `<kind>_ca.pub` (written by
    `ensure`) and the issuance log; no private key is ever there.
    """

    name = "azure_keyvault"

    @staticmethod
    def missing_library():
        if HAS_KEYVAULT:
            return None
        return ("azure-keyvault-keys", "".join(traceback.format_exception(
            type(KEYVAULT_IMPORT_ERROR), KEYVAULT_IMPORT_ERROR, None)))

    def __init__(self, vault_url=None, key_names=None, kinds=CA_KINDS, path=None, key_type=None, key_size=None,
                 hsm=False, azure=None, credential=None, rsa_algorithm="rsa-sha2-512", issuance_log=None,
                 pool_size=4):
        self.kinds = tuple(check_kind(kind) for kind in kinds)
        self.vault_url = self._check_url(vault_url)
        self.path = os.path.abspath(os.path.expanduser(path)) if path else None
        names = {kind: "sshca-%s-ca" % kind for kind in CA_KINDS}
        names.update(self._recorded_names(key_names or {}))
        names.update({kind: name for kind, name in (key_names or {}).items() if name})
        self.key_names = {}
        for kind in self.kinds:
            if not _KEY_NAME_RE.match(names[kind]):
                raise SSHKeyError("%s_ca_key" % kind, "%r is not a Key Vault key name (letters, digits, dashes), "
                                                      "optionally /version" % names[kind])
            self.key_names[kind] = names[kind]
        self.key_type, self.key_size = self._check_type(key_type, key_size)
        self.hsm = bool(hsm) or ".managedhsm." in self.vault_url  # Managed HSM holds HSM keys only
        rsa_hash_name(rsa_algorithm)
        self.rsa_algorithm = rsa_algorithm
        self.issuance_log = issuance_log
        self._pool_size = pool_size
        self._azure = azure or {}
        self._credential = credential
        self._clients = None
        self._keys = {}
        self._signers = {}

    # --- inputs -------------------------------------------------------------------------------

    @staticmethod
    def _check_url(url):
        parsed = urlparse(url or "")
        if parsed.scheme != "https" or not parsed.hostname:
            raise SSHKeyError("vault_url", "must be the https URL of a Key Vault or Managed HSM "
                                           "(https://NAME.vault.azure.net), not %r" % (url,))
        return url.rstrip("/")

    def _recorded_names(self, given):
        """The key names `path`/KEY_NAMES_FILE records (rotate_ca.yml writes it when it makes new CA keys and
        moves it with the folder), so that signing follows a rotation without new options. A name given that
        differs from the record fails: it would sign with a CA the hosts are about to drop, or never trusted."""
        record_path = os.path.join(self.path, KEY_NAMES_FILE) if self.path else None
        text = _read_text(record_path) if record_path else ""
        try:
            recorded = json.loads(text) if text.strip() else {}
        except ValueError:
            recorded = None
        if not isinstance(recorded, dict) or not all(isinstance(value, str) for value in recorded.values()):
            raise SSHKeyError(record_path, "is not a JSON object of key names ({\"user\": \"sshca-user-ca-2\", ...})")
        for kind, name in given.items():
            if name and recorded.get(kind) and name != recorded[kind]:
                problem = ("%r disagrees with %s, which names the %s CA key %r since rotate_ca.yml made it: "
                           "give that name, or none" % (name, record_path, kind, recorded[kind]))
                raise SSHKeyError("%s_ca_key" % kind, problem)
        return {kind: name for kind, name in recorded.items() if kind in CA_KINDS and name}

    def source(self, kind):
        """How errors name a CA key: its URL in the vault."""
        return "%s/keys/%s" % (self.vault_url, self.key_names.get(kind) or kind)

    def _check_type(self, key_type, key_size):
        if key_type == "ed25519":
            raise SSHKeyError(self.source(self.kinds[0]), "Key Vault and Managed HSM have no Ed25519 keys; "
                                                          "use key_type rsa or ecdsa")
        return key_type, check_key_size(key_type or DEFAULT_KEY_TYPE, key_size)

    # --- talking to the vault ----------------------------------------------------------------

    def _client(self):
        if self._clients is None:
            from ansible_collections.sshca.azure.plugins.module_utils._azure import (
                AzureConfigError,
                build_credential,
                resolve_cloud,
            )
            credential = self._credential
            if credential is None:
                try:
                    credential = build_credential(self._azure, resolve_cloud(self._azure))
                except AzureConfigError as exc:
                    raise SSHKeyError(str(exc)) from None
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=max(self._pool_size, 4))
            session.mount("https://", adapter)
            recorder = IdentityRecorder(credential)
            common = {"transport": RequestsTransport(session=session, session_owner=False),
                      "retry_policy": _RetryPolicy()}
            self._clients = (KeyClient(self.vault_url, recorder, **common), recorder, common)
        return self._clients

    def error(self, kind, exc, action):
        """One line naming the vault and key for any failure of the SDK."""
        source = self.source(kind)
        if isinstance(exc, SSHKeyError):
            return exc
        if isinstance(exc, ServiceRequestError):
            return SSHKeyError(source, "cannot reach the vault (%s)" % _one_line(exc, 160))
        if isinstance(exc, HttpResponseError) and getattr(exc, "status_code", None):
            error = getattr(exc, "error", None)
            code = getattr(error, "code", None) or exc.reason or ""
            inner = (getattr(error, "innererror", None) or {}).get("code")
            message = getattr(error, "message", None) or exc.message or ""
            action_line = re.search(r"Action: '([^']+)'", message)
            detail = _one_line(message)
            if action_line:
                detail = "%s (%s)" % (detail.rstrip("."), action_line.group(1))
            status = "%d %s%s" % (exc.status_code, code, "/" + inner if inner else "")
            return SSHKeyError(source, "%s refused: %s: %s" % (action, status, detail))
        if isinstance(exc, ClientAuthenticationError):
            return SSHKeyError(source, "no token for the vault: %s" % _one_line(exc))
        return SSHKeyError(source, "%s failed: %s" % (action, _one_line(exc)))

    def _name_and_version(self, kind):
        name, _sep, version = self.key_names[kind].partition("/")
        return name, version or None

    def _get(self, kind):
        """The KeyVaultKey of a CA, or None if the vault has no key of that name."""
        if kind not in self._keys:
            name, version = self._name_and_version(kind)
            try:
                self._keys[kind] = self._client()[0].get_key(name, version)
            except Exception as exc:  # every SDK failure becomes one line naming the vault and key
                if getattr(exc, "status_code", None) != 404 or version is not None:
                    raise self.error(kind, exc, "reading the key") from None
                self._keys[kind] = None  # no such key yet: ssh_ca makes it
        return self._keys[kind]

    def _checked_public_key(self, kind, key):
        """The key's SSH public key, after checking it can sign and is of the type asked for."""
        source = self.source(kind)
        public = public_key_from_jwk(key.key, source, "sshca %s CA" % kind)
        operations = [_value(op) for op in (key.key.key_ops or [])]
        if "sign" not in operations:
            raise SSHKeyError(source, "is not a signing key: its key operations are %s, without sign"
                              % (", ".join(operations) or "none"))
        if key.properties.enabled is False:
            raise SSHKeyError(source, "is disabled")
        if self.key_type and public.family != self.key_type:
            raise SSHKeyError(source, "is a %s key, not %s; give another key name to make a new CA"
                              % (public.family, self.key_type))
        return public

    # --- CABackend ---------------------------------------------------------------------------

    def _new_key(self):
        key_type = self.key_type or DEFAULT_KEY_TYPE
        return key_type, self.key_size or CA_KEY_SIZES[key_type]

    def plan(self):
        changes = plan_private_folder(self.path) if self.path else []
        for kind in self.kinds:
            key = self._get(kind)
            if key is None:
                key_type, size = self._new_key()
                changes.append("create Key Vault key %s (%s%s) for the %s CA" % (
                    self.source(kind), "RSA %d" % size if key_type == "rsa" else "EC P-%d" % size,
                    ", HSM" if self.hsm else "", kind))
                continue
            line = self._checked_public_key(kind, key).openssh()
            if self.path and _read_text(self._public_path(kind)).strip() != line:
                changes.append("write %s" % self._public_path(kind))
        return changes

    def _public_path(self, kind):
        return os.path.join(self.path, "%s_ca.pub" % kind)

    def ensure(self):
        def fresh_plan():
            self._keys = {}  # under the lock: another run may have made the keys meanwhile
            return self.plan()

        return ensure_under_lock(self.path, fresh_plan, self._create_missing)

    def _create_missing(self):
        for kind in self.kinds:
            if self._get(kind) is None:
                self._keys[kind] = self._create(kind)
            if self.path:
                line = self._checked_public_key(kind, self._keys[kind]).openssh()
                if _read_text(self._public_path(kind)).strip() != line:
                    atomic_write(self._public_path(kind), line + "\n", 0o644)

    def _create(self, kind):
        name, _version = self._name_and_version(kind)
        key_type, size = self._new_key()
        client = self._client()[0]
        options = {"hardware_protected": self.hsm, "key_operations": ["sign", "verify"],
                   "tags": {"sshca-ca": kind}}
        try:
            if key_type == "rsa":
                return client.create_rsa_key(name, size=size, **options)
            return client.create_ec_key(name, curve=_CURVE_OF_SIZE[size], **options)
        except Exception as exc:
            raise self.error(kind, exc, "creating the key") from None

    def signer(self, kind):
        check_kind(kind, "type")
        if kind not in self.kinds:
            raise SSHKeyError(self.source(kind), "this run may only sign with the %s CA"
                              % " and ".join(self.kinds))
        if kind not in self._signers:
            key = self._get(kind)
            if key is None:
                raise SSHKeyError(self.source(kind), "does not exist; create it with sshca.azure.ssh_ca "
                                                     "(backend azure_keyvault)")
            public = self._checked_public_key(kind, key)
            _client, recorder, common = self._client()
            crypto = CryptographyClient(key, recorder, **common)
            signer = KeyVaultSigner(crypto, key, public, self.source(kind), self.rsa_algorithm, recorder.identity,
                                    lambda exc, action, kind=kind: self.error(kind, exc, action))
            signer.kind = kind
            signer.issuance_log = self.issuance_log
            self._signers[kind] = signer
        return self._signers[kind]

    def public_key(self, kind):
        if kind in self.kinds:
            key = self._get(kind)
            return self._checked_public_key(kind, key) if key is not None else None
        if self.path and os.path.exists(self._public_path(kind)):
            return parse_openssh_public_key(_read_text(self._public_path(kind)), self._public_path(kind))
        return None

    def default_key_id(self, kind):
        """Who signs: the Azure identity in the vault token (fetched with the CA's public key)."""
        self._get(kind)
        return self._client()[1].identity()

    def describe(self, kind):
        key = self._keys.get(kind)
        if key is None:
            return {}
        signer = self._signers.get(kind)
        return {"key_id": signer.key_id if signer else key.id,
                "key_version": signer.key_version if signer else key.properties.version}


def _read_text(path):
    try:
        with open(path, "r") as stream:
            return stream.read()
    except (IOError, OSError):
        return ""
