"""Azure Key Vault keys: create RSA and EC keys, read them as JWK, sign and verify digests.

The private halves stay in the emulator's state (a lab stand-in for an HSM); callers only
ever get public JWKs and signatures, as from the real service. EC signatures are the raw
r||s concatenation Key Vault returns, not DER.

Settings (`key_vault` in the emulator's settings, see KEY_VAULT_SETTINGS):
- `permissions`: key name -> the operations the caller may do on it (`get`, `list`, `create`,
  `update`, `delete`, `recover`, `purge`, `sign`, `verify`), as an RBAC role assignment scoped to
  one key grants them; any other operation answers 403 `Forbidden`/`ForbiddenByRbac` the way Key
  Vault words it. Keys not listed allow everything.
- `sign_latency`: seconds each sign takes (an HSM round trip), spent outside the state lock so
  signs overlap as they do against the real service.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .arm import ArmError, Reply
from .store import Store

NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1, "P-256K": ec.SECP256K1}
HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
EC_ALG_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "ES256K": "P-256K"}
RSA_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
EC_OPS = ["sign", "verify"]
KEY_VAULT_SETTINGS = {"permissions": {}, "sign_latency": 0.0}
# Operations that change what the vault holds, so the state is saved after them.
_CHANGES = {"create", "update", "delete", "recover", "purge"}
# RBAC data actions as Key Vault's 403 names them.
_DATA_ACTIONS = {"get": "keys/read", "list": "keys/read", "delete": "keys/delete",
                 "recover": "deletedKeys/recover/action", "purge": "deletedKeys/delete"}


class VaultError(ArmError):
    """A Key Vault error, whose body also carries the `innererror` code Key Vault adds."""

    def __init__(self, status: int, code: str, message: str, inner: str):
        super().__init__(status, code, message)
        self.inner = inner

    def body(self) -> dict:
        body = super().body()
        body["error"]["innererror"] = {"code": self.inner}
        return body


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ArmError(400, "BadParameter", "Value is not valid base64url.") from None


def _int_bytes(value: int, size: int | None = None) -> bytes:
    return value.to_bytes(size or (value.bit_length() + 7) // 8, "big")


class KeyVault:
    def __init__(self, store: Store, vault_url: str, settings: Callable[[], dict] | None = None,
                 config: dict | None = None):
        self.store = store
        self.vault_url = vault_url.rstrip("/")
        self._settings = settings or (lambda: {})
        self.config = config or {}
        self._keys_lock = threading.Lock()
        self._loaded: dict[str, object] = {}  # version -> private key object (parsing PEM is slow)

    def settings(self) -> dict:
        return {**KEY_VAULT_SETTINGS, **(self._settings().get("key_vault") or {})}

    def handle(self, method: str, parts: list[str], body: dict | None) -> Reply:
        """Answer one request; takes the state lock itself, and not while a sign is pending."""
        operation = self._operation(method, parts)
        name = parts[1] if len(parts) > 1 else ""
        self._authorize(operation, name)
        if operation in ("sign", "verify") and len(parts) in (3, 4):
            with self.store.lock:  # no version ("/keys/{name}//sign") is the current one
                version = self._version(name, parts[2] if len(parts) == 4 else "")
            return getattr(self, f"_{operation}")(version, body or {})
        with self.store.lock:
            reply = self._handle(method, parts, body)
            if operation in _CHANGES:
                self.store.save()
        return reply

    @staticmethod
    def _operation(method: str, parts: list[str]) -> str:
        """The access-policy permission a request needs (`get`, `sign`, ...)."""
        last = parts[-1] if len(parts) > 1 else ""
        if parts[0] == "deletedkeys":
            return {"GET": "get", "DELETE": "purge"}.get(method, "recover")
        if len(parts) == 1:
            return "list"
        if method == "POST":
            return last if last in ("create", "sign", "verify") else "other"
        return {"GET": "list" if last == "versions" else "get", "PATCH": "update", "DELETE": "delete"}.get(
            method, "other")

    def _authorize(self, operation: str, name: str) -> None:
        granted = {key.lower(): ops for key, ops in (self.settings().get("permissions") or {}).items()}
        if not name or name.lower() not in granted or operation in granted[name.lower()]:
            return
        action = _DATA_ACTIONS.get(operation, f"keys/{operation}/action")
        client = str(self.config.get("client_id"))
        caller = (f"appid={client};oid={uuid.uuid5(uuid.NAMESPACE_URL, client)};"
                  f"iss=https://sts.windows.net/{self.config.get('tenant_id')}/")
        resource = (f"/subscriptions/{self.config.get('subscription_id')}/resourcegroups/lab/providers/"
                    f"microsoft.keyvault/vaults/lab/keys/{name.lower()}")
        raise VaultError(403, "Forbidden", (
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or "
            "role definitions were changed recently, please observe propagation time.\r\n"
            f"Caller: {caller}\r\nAction: 'Microsoft.KeyVault/vaults/{action}'\r\nResource: '{resource}'\r\n"
            "Assignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\n"
            "Vault: lab;location=lab\r\n"), "ForbiddenByRbac")

    def _handle(self, method: str, parts: list[str], body: dict | None) -> Reply:
        if parts[0] == "keys":
            if len(parts) == 1 and method == "GET":
                return Reply(200, {"value": [self._item(v[-1]) for v in self.store.keys.values()], "nextLink": None})
            name = parts[1] if len(parts) > 1 else ""
            if len(parts) == 3 and parts[2] == "create" and method == "POST":
                return self._create(name, body or {})
            if len(parts) == 3 and parts[2] == "versions" and method == "GET":
                return Reply(200, {"value": [self._item(v) for v in self._versions(name)], "nextLink": None})
            if len(parts) == 2 and method == "DELETE":
                return self._delete(name)
            if len(parts) in (2, 3) and method in ("GET", "PATCH"):
                version = self._version(name, parts[2] if len(parts) == 3 else "")
                if method == "PATCH":
                    self._update(version, body or {})
                return Reply(200, self._bundle(version))
        if parts[0] == "deletedkeys" and len(parts) >= 2:
            deleted = self.store.deleted_keys.get(parts[1].lower())
            if not deleted:
                raise ArmError(404, "KeyNotFound", f"Deleted Key not found: {parts[1]}")
            if len(parts) == 2 and method == "GET":
                return Reply(200, self._deleted_bundle(deleted))
            if len(parts) == 2 and method == "DELETE":
                del self.store.deleted_keys[parts[1].lower()]
                return Reply(204)
            if len(parts) == 3 and parts[2] == "recover" and method == "POST":
                self.store.keys[parts[1].lower()] = deleted["versions"]
                del self.store.deleted_keys[parts[1].lower()]
                return Reply(200, self._bundle(deleted["versions"][-1]))
        raise ArmError(400, "BadParameter", f"{method} /{'/'.join(parts)} is not a Key Vault keys operation.")

    # --- keys ---------------------------------------------------------------------------

    def _versions(self, name: str) -> list[dict]:
        versions = self.store.keys.get(name.lower())
        if not versions:
            raise ArmError(404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault. If "
                                               "you recently deleted this key you may be able to recover it using "
                                               "the correct recovery command.")
        return versions

    def _version(self, name: str, version: str) -> dict:
        versions = self._versions(name)
        if not version:
            return versions[-1]
        for entry in versions:
            if entry["version"] == version:
                return entry
        raise ArmError(404, "KeyNotFound", f"A key with (name/id) {name}/{version} was not found in this key vault.")

    def _create(self, name: str, body: dict) -> Reply:
        if not NAME_RE.match(name):
            raise ArmError(400, "BadParameter", f"The request URI contains an invalid name: {name}")
        if name.lower() in self.store.deleted_keys:
            raise ArmError(409, "Conflict", f"Key {name} is currently in a deleted but recoverable state, and its "
                                            "name cannot be reused; in this state, the key can only be recovered "
                                            "or purged.")
        kty = body.get("kty")
        if kty in ("RSA", "RSA-HSM"):
            size = body.get("key_size") or 2048
            if size not in (2048, 3072, 4096):
                raise ArmError(400, "BadParameter", f"Invalid key size {size}: RSA keys are 2048, 3072 or 4096 bits.")
            exponent = body.get("public_exponent") or 65537
            private = rsa.generate_private_key(public_exponent=exponent, key_size=size)
            ops = body.get("key_ops") or RSA_OPS
        elif kty in ("EC", "EC-HSM"):
            crv = body.get("crv") or "P-256"
            if crv not in CURVES:
                raise ArmError(400, "BadParameter", f"Invalid curve name {crv}.")
            private = ec.generate_private_key(CURVES[crv]())
            ops = body.get("key_ops") or EC_OPS
        else:
            raise ArmError(400, "BadParameter", f"Property kty has invalid value {kty!r}: RSA, RSA-HSM, EC or "
                                                "EC-HSM is expected.")
        now = int(time.time())
        attributes = {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable+Purgeable",
                      "recoverableDays": 90, "exportable": False}
        for key in ("enabled", "nbf", "exp"):
            if (body.get("attributes") or {}).get(key) is not None:
                attributes[key] = body["attributes"][key]
        entry = {"name": name, "version": uuid.uuid4().hex, "kty": kty, "key_ops": ops,
                 "attributes": attributes, "tags": body.get("tags") or None,
                 "pem": private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()}
        self.store.keys.setdefault(name.lower(), []).append(entry)
        return Reply(200, self._bundle(entry))

    def _update(self, entry: dict, body: dict) -> None:
        for key, value in (body.get("attributes") or {}).items():
            if key in ("enabled", "nbf", "exp"):
                entry["attributes"][key] = value
        if "tags" in body:
            entry["tags"] = body["tags"]
        if body.get("key_ops"):
            entry["key_ops"] = body["key_ops"]
        entry["attributes"]["updated"] = int(time.time())

    def _delete(self, name: str) -> Reply:
        versions = self._versions(name)
        del self.store.keys[name.lower()]
        deleted = {"versions": versions, "deletedDate": int(time.time())}
        self.store.deleted_keys[name.lower()] = deleted
        return Reply(200, self._deleted_bundle(deleted))

    def _kid(self, entry: dict) -> str:
        return f"{self.vault_url}/keys/{entry['name']}/{entry['version']}"

    def _private(self, entry: dict):
        with self._keys_lock:
            key = self._loaded.get(entry["version"])
            if key is None:
                key = serialization.load_pem_private_key(entry["pem"].encode(), password=None)
                self._loaded[entry["version"]] = key
        return key

    def _jwk(self, entry: dict) -> dict:
        public = self._private(entry).public_key()
        jwk = {"kid": self._kid(entry), "kty": entry["kty"], "key_ops": entry["key_ops"]}
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            jwk.update(n=_b64u(_int_bytes(numbers.n)), e=_b64u(_int_bytes(numbers.e)))
        else:
            numbers = public.public_numbers()
            size = (public.curve.key_size + 7) // 8
            crv = next(name for name, curve in CURVES.items() if curve.name == public.curve.name)
            jwk.update(crv=crv, x=_b64u(_int_bytes(numbers.x, size)), y=_b64u(_int_bytes(numbers.y, size)))
        return jwk

    def _bundle(self, entry: dict) -> dict:
        bundle = {"key": self._jwk(entry), "attributes": entry["attributes"]}
        if entry.get("tags"):
            bundle["tags"] = entry["tags"]
        return bundle

    def _item(self, entry: dict) -> dict:
        item = {"kid": f"{self.vault_url}/keys/{entry['name']}", "attributes": entry["attributes"]}
        if entry.get("tags"):
            item["tags"] = entry["tags"]
        return item

    def _deleted_bundle(self, deleted: dict) -> dict:
        entry = deleted["versions"][-1]
        return {**self._bundle(entry), "recoveryId": f"{self.vault_url}/deletedkeys/{entry['name']}",
                "deletedDate": deleted["deletedDate"], "scheduledPurgeDate": deleted["deletedDate"] + 90 * 86400}

    # --- cryptography --------------------------------------------------------------------

    def _usable(self, entry: dict, op: str) -> None:
        if not entry["attributes"].get("enabled", True):
            raise VaultError(403, "Forbidden", f"Operation {op} is not allowed on a disabled key.", "KeyDisabled")
        if op not in entry["key_ops"]:
            raise VaultError(403, "Forbidden", f"Operation {op} is not permitted on this key.",
                             "KeyOperationForbidden")

    def _scheme(self, private, alg: str, digest: bytes):
        """(hash, padding or None) for alg, after checking it fits the key and the digest length."""
        hash_cls = HASHES.get(alg[-3:]) if alg[:2] in ("RS", "PS", "ES") else None
        if alg == "ES256K":
            hash_cls = hashes.SHA256
        if hash_cls is None:
            raise ArmError(400, "BadParameter", f"Invalid algorithm {alg}.")
        if len(digest) != hash_cls.digest_size:
            raise ArmError(400, "BadParameter", f"Invalid length of 'value': {len(digest)} bytes is not a digest "
                                                f"for {alg}.")
        is_rsa = isinstance(private, rsa.RSAPrivateKey)
        if is_rsa != alg.startswith(("RS", "PS")) or (
                not is_rsa and CURVES[EC_ALG_CURVE[alg]].name != private.curve.name):
            raise ArmError(400, "BadParameter", f"Key and signing algorithm {alg} are incompatible.")
        if alg.startswith("RS"):
            return hash_cls(), padding.PKCS1v15()
        if alg.startswith("PS"):
            return hash_cls(), padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls.digest_size)
        return hash_cls(), None

    def _sign(self, entry: dict, body: dict) -> Reply:
        self._usable(entry, "sign")
        private = self._private(entry)
        digest = _unb64u(body.get("value") or "")
        hash_obj, pad = self._scheme(private, body.get("alg") or "", digest)
        latency = float(self.settings().get("sign_latency") or 0)
        if latency > 0:
            time.sleep(latency)
        if pad is not None:
            signature = private.sign(digest, pad, utils.Prehashed(hash_obj))
        else:
            r, s = utils.decode_dss_signature(private.sign(digest, ec.ECDSA(utils.Prehashed(hash_obj))))
            size = (private.curve.key_size + 7) // 8
            signature = _int_bytes(r, size) + _int_bytes(s, size)
        return Reply(200, {"kid": self._kid(entry), "value": _b64u(signature)})

    def _verify(self, entry: dict, body: dict) -> Reply:
        self._usable(entry, "verify")
        private = self._private(entry)
        digest, signature = _unb64u(body.get("digest") or ""), _unb64u(body.get("value") or "")
        hash_obj, pad = self._scheme(private, body.get("alg") or "", digest)
        try:
            if pad is not None:
                private.public_key().verify(signature, digest, pad, utils.Prehashed(hash_obj))
            else:
                half = len(signature) // 2
                der = utils.encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                                 int.from_bytes(signature[half:], "big"))
                private.public_key().verify(der, digest, ec.ECDSA(utils.Prehashed(hash_obj)))
            valid = True
        except InvalidSignature:
            valid = False
        return Reply(200, {"value": valid})
