# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenSSH certificates: what to sign, the to-be-signed blob, reading, and when to re-sign.

The certificate wire format is OpenSSH's PROTOCOL.certkeys. `certificate_tbs` and
`assemble_certificate` let a remote signer (Azure Key Vault) sign the bytes without the key
ever leaving it; reading and verifying is done by `cryptography`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import calendar
import ipaddress
import os
import re
import secrets
import time
from dataclasses import dataclass, field

from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (
    SSHKeyError,
    atomic_write,
    check_regenerate,
    key_from_blob,
    parse_public_key,
    wire_mpint,
    wire_string,
    wire_uint32,
    wire_uint64,
)

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import SSHCertificateType, load_ssh_public_identity
except ImportError:  # pragma: no cover - reported by the modules through missing_required_lib
    pass

CERT_SUFFIX = "-cert-v01@openssh.com"
CERT_TYPES = {"user": 1, "host": 2}
DEFAULT_VALID_FOR = {"user": "16h", "host": "30d"}
DEFAULT_USER_EXTENSIONS = ("permit-agent-forwarding", "permit-port-forwarding", "permit-pty", "permit-user-rc")
KNOWN_EXTENSIONS = (*DEFAULT_USER_EXTENSIONS, "permit-X11-forwarding", "no-touch-required")
CRITICAL_OPTIONS = ("force-command", "source-address")
CLOCK_SKEW_SECONDS = 300  # start a certificate this far in the past, for clocks that run behind
FOREVER = 2 ** 64 - 1

_PRINCIPAL_RE = re.compile(r"^[^\s,\x00-\x1f\x7f]{1,255}$")
_DURATION_RE = re.compile(r"^([+-]?)((?:\d+[smhdwSMHDW]?)+)$")
_DURATION_PART_RE = re.compile(r"(\d+)([smhdwSMHDW]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class CertificateError(SSHKeyError):
    """Bad certificate input; one line naming the input."""


# --- validity -------------------------------------------------------------------------------


def parse_duration(text, source):
    """Seconds in `16h`, `30d`, `+1w`, `1d12h`, `90` (seconds), as ssh-keygen reads them."""
    match = _DURATION_RE.match(str(text).strip())
    if not match:
        raise CertificateError(source, "%r is not a duration like 16h, 30d or +1w" % (text,))
    seconds = sum(int(n) * _UNITS[unit.lower()] for n, unit in _DURATION_PART_RE.findall(match.group(2)))
    return -seconds if match.group(1) == "-" else seconds


def parse_time(text, now, source):
    """Epoch seconds for an absolute or relative time.

    Relative: `+16h`, `-5m` (from now). Absolute (UTC unless a zone is given): ISO 8601
    (`2026-05-01T12:00:00Z`, `2026-05-01`), ssh-keygen's `YYYYMMDD[HHMM[SS]]`, or epoch
    seconds as `@1767225600`. `always` and `forever` are the open ends.
    Returns (epoch, absolute).
    """
    value = str(text).strip()
    lowered = value.lower()
    if lowered == "always":
        return 0, True
    if lowered == "forever":
        return FOREVER, True
    if value.startswith("@") and value[1:].isdigit():
        return int(value[1:]), True
    if value[:1] in "+-":
        return now + parse_duration(value, source), False
    if re.match(r"^\d{8}(\d{4}(\d{2})?)?$", value):
        fields = [int(value[0:4]), int(value[4:6]), int(value[6:8]), int(value[8:10] or 0),
                  int(value[10:12] or 0), int(value[12:14] or 0)]
        return _utc_epoch(fields, value, source), True
    match = re.match(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?\s*(Z|[+-]\d{2}:?\d{2})?$",
                     value, re.IGNORECASE)
    if match:
        fields = [int(part or 0) for part in match.groups()[:6]]
        epoch = _utc_epoch(fields, value, source)
        zone = match.group(7)
        if zone and zone.upper() != "Z":
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            epoch -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        return epoch, True
    raise CertificateError(source, "%r is neither a time (2026-05-01T12:00:00Z, 20260501) nor +/-duration" % (value,))


def _utc_epoch(fields, text, source):
    year, month, day, hour, minute, second = fields
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise CertificateError(source, "%r is not a valid date and time" % (text,))
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


@dataclass(frozen=True)
class Validity:
    valid_after: int
    valid_before: int
    after_absolute: bool
    before_absolute: bool

    @property
    def lifetime(self):
        return self.valid_before - self.valid_after


def resolve_validity(cert_type, now, valid_for=None, valid_from=None, valid_to=None):
    """The certificate window: back-dated start, end from valid_for or valid_to."""
    if cert_type not in CERT_TYPES:
        raise CertificateError("type", "must be host or user, not %r" % (cert_type,))
    if valid_for is not None and valid_to is not None:
        raise CertificateError("valid_for", "give valid_for or valid_to, not both")
    if valid_from is None:
        after, after_absolute = now - CLOCK_SKEW_SECONDS, False
    else:
        after, after_absolute = parse_time(valid_from, now, "valid_from")
    if valid_to is not None:
        before, before_absolute = parse_time(valid_to, now, "valid_to")
    else:
        seconds = parse_duration(valid_for or DEFAULT_VALID_FOR[cert_type], "valid_for")
        if seconds <= 0:
            raise CertificateError("valid_for", "must be a positive duration, not %r" % (valid_for,))
        before, before_absolute = now + seconds, False
    if before <= after:
        raise CertificateError("valid_to", "the certificate would end (%s) before it starts (%s)"
                               % (format_time(before), format_time(after)))
    if after < 0:
        raise CertificateError("valid_from", "is before 1970")
    if before > FOREVER:
        raise CertificateError("valid_to", "is after the end of time (2^64-1)")
    return Validity(after, before, after_absolute, before_absolute)


def format_time(epoch):
    if epoch == 0:
        return "always"
    if epoch >= FOREVER:
        return "forever"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# --- what to sign ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CertSpec:
    """Every field of a certificate except the CA, the nonce and the signature."""

    cert_type: str
    public_key: object  # _ssh_keys.PublicKey
    principals: tuple
    valid_after: int
    valid_before: int
    serial: int
    key_id: str
    critical_options: tuple = ()  # sorted (name, value) pairs
    extensions: tuple = ()  # sorted names


def random_serial():
    return secrets.randbits(64)


def make_spec(cert_type, public_key, principals, validity, serial=None, key_id=None,
              critical_options=None, extensions=None):
    """A checked CertSpec; every problem is a CertificateError naming the option."""
    if cert_type not in CERT_TYPES:
        raise CertificateError("type", "must be host or user, not %r" % (cert_type,))
    names = []
    for principal in principals or ():
        principal = str(principal)
        if not _PRINCIPAL_RE.match(principal):
            raise CertificateError("principals", "%r is not a valid principal (no spaces, commas or control characters)"
                                   % (principal,))
        if principal not in names:
            names.append(principal)
    if not names:
        raise CertificateError("principals", "a %s certificate needs at least one principal" % cert_type)
    if serial is None:
        serial = random_serial()
    try:
        serial = int(serial)
    except (TypeError, ValueError):
        raise CertificateError("serial", "%r is not an integer" % (serial,)) from None
    if not 0 <= serial < 2 ** 64:
        raise CertificateError("serial", "must be between 0 and 2^64-1")
    if key_id is None:
        key_id = "%s:%s" % (cert_type, ",".join(sorted(names)))  # reordering principals is no change
    key_id = str(key_id)
    if "\n" in key_id or "\x00" in key_id:
        raise CertificateError("key_id", "must be one line")
    options = _check_critical_options(cert_type, critical_options or {})
    if extensions is None:
        extensions = DEFAULT_USER_EXTENSIONS if cert_type == "user" else ()
    exts = []
    for name in extensions:
        name = str(name)
        if cert_type == "host":
            raise CertificateError("extensions", "host certificates take no extensions (got %r)" % name)
        if name not in KNOWN_EXTENSIONS and "@" not in name:
            raise CertificateError("extensions", "%r is not a known extension (%s, or name@domain)"
                                   % (name, ", ".join(KNOWN_EXTENSIONS)))
        if name not in exts:
            exts.append(name)
    return CertSpec(cert_type, public_key, tuple(names), validity.valid_after, validity.valid_before, serial,
                    key_id, options, tuple(sorted(exts)))


def _check_critical_options(cert_type, options):
    if not isinstance(options, dict):
        raise CertificateError("critical_options", "must be a dict of option name to value")
    if options and cert_type == "host":
        raise CertificateError("critical_options", "host certificates take no critical options")
    checked = []
    for name, value in options.items():
        if name not in CRITICAL_OPTIONS:
            raise CertificateError("critical_options", "%r is not supported (supported: %s)"
                                   % (name, ", ".join(CRITICAL_OPTIONS)))
        if name == "source-address":
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            items = [str(item).strip() for item in items if str(item).strip()]
            if not items:
                raise CertificateError("critical_options", "source-address needs at least one address")
            for item in items:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise CertificateError("critical_options",
                                           "source-address %r is not an address or CIDR" % item) from None
            value = ",".join(items)
        else:
            value = str(value)
            if not value or "\n" in value:
                raise CertificateError("critical_options", "force-command must be one non-empty line")
        checked.append((name, value))
    return tuple(sorted(checked))


# --- the certificate blob (PROTOCOL.certkeys), for signers that sign remotely ------------------


def _public_key_fields(public_key):
    """The key's blob without its leading type string: the certificate embeds just the fields."""
    type_length = 4 + len(public_key.key_type)
    return public_key.blob[type_length:]


def _option_list(pairs):
    out = []
    for name, value in pairs:
        out.append(wire_string(name))
        out.append(wire_string(wire_string(value) if value else b""))
    return b"".join(out)


def certificate_tbs(spec, ca_public_key, nonce):
    """The to-be-signed bytes of a certificate: everything up to, not including, the signature."""
    return b"".join((
        wire_string(spec.public_key.key_type + CERT_SUFFIX),
        wire_string(nonce),
        _public_key_fields(spec.public_key),
        wire_uint64(spec.serial),
        wire_uint32(CERT_TYPES[spec.cert_type]),
        wire_string(spec.key_id),
        wire_string(b"".join(wire_string(p) for p in spec.principals)),
        wire_uint64(spec.valid_after),
        wire_uint64(spec.valid_before),
        wire_string(_option_list(spec.critical_options)),
        wire_string(_option_list((name, "") for name in spec.extensions)),
        wire_string(b""),  # reserved
        wire_string(ca_public_key.blob),
    ))


def ssh_signature(algorithm, signature):
    """The SSH signature blob: `string algorithm, string signature` (RFC 4253 6.6, RFC 8332, RFC 5656)."""
    return wire_string(algorithm) + wire_string(signature)


def ecdsa_signature_fields(r, s):
    """ECDSA's signature field is `mpint r, mpint s` (RFC 5656 3.1.2)."""
    return wire_mpint(r) + wire_mpint(s)


def assemble_certificate(tbs, signature_blob):
    return tbs + wire_string(signature_blob)


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    cert_type: str
    public_key: object  # PublicKey of the certified key
    serial: int
    key_id: str
    principals: tuple
    valid_after: int
    valid_before: int
    critical_options: tuple  # sorted (name, value)
    extensions: tuple  # sorted names
    signing_ca: object  # PublicKey
    blob: bytes = field(repr=False)
    comment: str = ""

    @property
    def key_type(self):
        return self.public_key.key_type + CERT_SUFFIX

    def openssh(self):
        line = "%s %s" % (self.key_type, base64.b64encode(self.blob).decode("ascii"))
        return "%s %s" % (line, self.comment) if self.comment else line

    def remaining_seconds(self, now):
        return max(0, self.valid_before - now)

    def info(self, now):
        """Every field, in the shape ssh_cert_info and ssh_cert return."""
        return {
            "type": self.cert_type,
            "key_type": self.key_type,
            "public_key": self.public_key.openssh_no_comment(),
            "fingerprint": self.public_key.fingerprint(),
            "serial": self.serial,
            "key_id": self.key_id,
            "principals": list(self.principals),
            "valid_after": format_time(self.valid_after),
            "valid_before": format_time(self.valid_before),
            "critical_options": dict(self.critical_options),
            "extensions": list(self.extensions),
            "signing_ca": {"public_key": self.signing_ca.openssh_no_comment(),
                           "fingerprint": self.signing_ca.fingerprint()},
            "expired": now >= self.valid_before,
            "remaining_seconds": self.remaining_seconds(now),
        }


def certificate_from_spec(spec, ca_public_key, blob, comment=""):
    return Certificate(spec.cert_type, spec.public_key, spec.serial, spec.key_id, spec.principals,
                       spec.valid_after, spec.valid_before, spec.critical_options, spec.extensions,
                       ca_public_key, blob, comment)


def _text(value, source, what):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise CertificateError(source, "%s is not UTF-8" % what) from None


def read_certificate(data, source="certificate"):
    """Parse and verify an OpenSSH certificate line (`type-cert-v01@openssh.com base64 [comment]`)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CertificateError(source, "is not UTF-8 text (bad byte at offset %d)" % exc.start) from None
    text = str(data).strip()
    if not text:
        raise CertificateError(source, "is empty")
    if "PRIVATE KEY-----" in text:
        raise CertificateError(source, "is a private key, not a certificate")
    parts = text.split(None, 2)
    if len(parts) < 2 or not parts[0].endswith(CERT_SUFFIX):
        raise CertificateError(source, "is not an OpenSSH certificate (expected *%s base64)" % CERT_SUFFIX)
    if "\n" in text:
        raise CertificateError(source, "has more than one line")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        cert = load_ssh_public_identity(("%s %s" % (parts[0], parts[1])).encode("ascii"))
    except Exception as exc:  # cryptography raises ValueError/TypeError/UnsupportedAlgorithm for bad input
        raise CertificateError(source, "is not a readable certificate (%s)" % str(exc).splitlines()[0][:120]) from None
    try:
        cert.verify_cert_signature()
    except (InvalidSignature, ValueError, TypeError):
        raise CertificateError(source, "has a signature that does not verify against its signing CA") from None
    cert_type = "user" if cert.type == SSHCertificateType.USER else "host"
    public_key = key_from_blob(_public_blob(cert.public_key()), source, min_rsa_bits=1024)
    signing_ca = key_from_blob(_public_blob(cert.signature_key()), source + " (signing CA)", min_rsa_bits=1024)
    options = tuple(sorted((_text(k, source, "a critical option"), _text(v, source, "a critical option"))
                           for k, v in cert.critical_options.items()))
    extensions = tuple(sorted(_text(k, source, "an extension") for k in cert.extensions))
    return Certificate(cert_type, public_key, cert.serial, _text(cert.key_id, source, "the key id"),
                       tuple(_text(p, source, "a principal") for p in cert.valid_principals),
                       cert.valid_after, cert.valid_before, options, extensions, signing_ca, blob,
                       parts[2].strip() if len(parts) > 2 else "")


def _public_blob(crypto_key):
    line = crypto_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


# --- when to re-sign ------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    resign: bool
    reason: str


def differences(existing, spec, ca_public_key, validity, serial_given, policy):
    """Why `existing` is not what `spec` asks for; empty when it is."""
    found = []
    if existing.cert_type != spec.cert_type:
        found.append("type is %s, not %s" % (existing.cert_type, spec.cert_type))
    if existing.public_key.blob != spec.public_key.blob:
        found.append("public key changed")
    if existing.signing_ca.blob != ca_public_key.blob:
        found.append("signed by a different CA")
    if sorted(existing.principals) != sorted(spec.principals):
        found.append("principals changed")
    if existing.key_id != spec.key_id:
        found.append("key id changed")
    if existing.critical_options != spec.critical_options:
        found.append("critical options changed")
    if existing.extensions != spec.extensions:
        found.append("extensions changed")
    if serial_given and existing.serial != spec.serial:
        found.append("serial changed")
    if validity.after_absolute and existing.valid_after != validity.valid_after:
        found.append("valid_from changed")
    if validity.before_absolute and existing.valid_before != validity.valid_before:
        found.append("valid_to changed")
    # A fixed start with a relative end asks for a new lifetime every run: not a change.
    if (policy == "full_idempotence" and not validity.before_absolute and not validity.after_absolute
            and existing.valid_before - existing.valid_after != validity.lifetime):
        found.append("lifetime changed")
    return found


def renewal_due(existing, validity, now):
    """Expired, or less than a third of the validity asked for left; only for ends relative to now."""
    if validity.before_absolute:
        return None  # re-signing would give the same fixed window
    if now >= existing.valid_before:
        return "expired"
    # The life asked for from now on, not the old certificate's span: with a fixed start in the
    # past that span grows every run and would call for a re-sign each time.
    life = validity.valid_before - max(validity.valid_after, now)
    left = existing.valid_before - now
    if left * 3 < life:
        return "less than a third of its life left (%ds of %ds)" % (left, life)
    return None


def decide(existing, spec, ca_public_key, validity, now, policy="partial_idempotence", serial_given=False,
           source="certificate"):
    """Whether to (re-)sign, and why; `existing` is a Certificate, None (absent) or an SSHKeyError."""
    check_regenerate(policy)
    if existing is None:
        return Decision(True, "no certificate yet")
    if isinstance(existing, SSHKeyError):
        if policy in ("never", "fail"):
            raise CertificateError(source, "existing certificate is unreadable and regenerate=%s: %s"
                                   % (policy, existing.problem))
        return Decision(True, "existing certificate is unreadable (%s)" % existing.problem)
    if policy == "always":
        return Decision(True, "regenerate=always")
    if policy == "never":
        return Decision(False, "regenerate=never keeps the existing certificate")
    reasons = differences(existing, spec, ca_public_key, validity, serial_given, policy)
    due = renewal_due(existing, validity, now)
    if due:
        reasons.append(due)
    if not reasons:
        return Decision(False, "certificate is up to date")
    if policy == "fail":
        raise CertificateError(source, "existing certificate must be re-signed (%s) but regenerate=fail"
                               % "; ".join(reasons))
    return Decision(True, "; ".join(reasons))


# --- certificate files (ssh_cert) -----------------------------------------------------------


def read_certificate_file(path, source="path"):
    """The certificate at `path`: a Certificate, None if absent, or the SSHKeyError that reading it gave."""
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        raise CertificateError(source, "%s is a folder, not a file" % path)
    try:
        with open(path, "rb") as stream:
            return read_certificate(stream.read(), path)
    except SSHKeyError as exc:
        return exc


def _read_public_key_file(path):
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except (IOError, OSError) as exc:
        raise CertificateError("public_key_path", "cannot read %s: %s" % (path, exc.strerror)) from None
    return parse_public_key(data, path)


def certificate_targets(params):
    """(public key, absolute path, the path's option name) of each certificate ssh_cert's options ask for.

    One (`public_key` or `public_key_path`, and `path`), or one per item of `certificates`; every key
    is parsed and every path checked here, before the CA is touched or anything is written.
    """
    items = params.get("certificates")
    if items is None:
        if params.get("public_key"):
            public_key = parse_public_key(params["public_key"], "public_key")
        elif params.get("public_key_path"):
            public_key = _read_public_key_file(params["public_key_path"])
        else:
            raise CertificateError("public_key", "give public_key or public_key_path")
        targets = [(public_key, params.get("path"), "path")]
    else:
        for single in ("public_key", "public_key_path", "path"):
            if params.get(single):
                raise CertificateError(single, "give it in each item of certificates, not beside them")
        if not isinstance(items, list) or not items:
            raise CertificateError("certificates", "give a list of at least one {public_key, path}")
        if params.get("serial") is not None and len(items) > 1:
            raise CertificateError("serial", "cannot be given for %d certificates: they would share it, and a KRL "
                                             "revoking one by serial would revoke them all" % len(items))
        targets = []
        for index, item in enumerate(items):
            name = "certificates[%d]." % index
            if not isinstance(item, dict) or not item.get("public_key"):
                raise CertificateError(name + "public_key", "is required")
            targets.append((parse_public_key(item["public_key"], name + "public_key"), item.get("path"), name + "path"))
    checked, seen = [], {}
    for public_key, path, source in targets:
        if not path:
            raise CertificateError(source, "is required")
        path = os.path.abspath(path)
        if not os.path.isdir(os.path.dirname(path)):
            raise CertificateError(source, "folder %s does not exist" % os.path.dirname(path))
        if path in seen:
            raise CertificateError(source, "%s is also %s: each certificate needs its own file" % (path, seen[path]))
        seen[path] = source
        checked.append((public_key, path, source))
    return checked


@dataclass
class CertificatePlan:
    """One certificate file: what is there, what is asked for, and whether it is (re-)signed."""

    path: str
    existing: object  # a Certificate, None (absent) or the SSHKeyError reading it gave
    spec: CertSpec
    decision: Decision
    certificate: object = None  # the Certificate kept or signed; None until a new one is signed

    def result(self):
        """The fields ssh_cert returns for this certificate."""
        shown = self.certificate or self.spec
        result = {
            "resigned": self.decision.resign,
            "reason": self.decision.reason,
            "path": self.path,
            "type": shown.cert_type,
            "serial": shown.serial,
            "key_id": shown.key_id,
            "principals": list(shown.principals),
            "valid_after": format_time(shown.valid_after),
            "valid_before": format_time(shown.valid_before),
        }
        if self.certificate is not None:
            result["certificate"] = self.certificate.openssh()
        return result

    def diff(self):
        existing, certificate = self.existing, self.certificate
        before = existing.openssh() + "\n" if isinstance(existing, Certificate) else ""
        after = certificate.openssh() + "\n" if certificate is not None else "(a new certificate)\n"
        return {"before": _summary(existing) + before, "after": _summary(certificate or self.spec) + after}


def plan_certificates(params, ca, now):
    """A CertificatePlan per certificate asked for; each one decided before any is signed."""
    cert_type = params["type"]
    targets = certificate_targets(params)
    validity = resolve_validity(cert_type, now, params.get("valid_for"), params.get("valid_from"),
                                params.get("valid_to"))
    serial_given = params.get("serial") is not None
    asked = []
    for public_key, path, source in targets:
        existing = read_certificate_file(path, source)
        serial = params.get("serial")
        if serial is None and isinstance(existing, Certificate):
            serial = existing.serial  # the random serial stays put unless a re-sign happens
        asked.append((path, existing, make_spec(cert_type, public_key, params.get("principals"), validity, serial,
                                                params.get("key_id"), params.get("critical_options"),
                                                params.get("extensions"))))
    ca_kind = params.get("ca") or cert_type  # the admin CA signs user certificates too
    # The CA's public key decides; its private key (a slow passphrase KDF) is opened only to sign.
    ca_public_key = ca.public_key(ca_kind) or ca.signer(ca_kind).public_key  # signer() names a missing CA
    plans = []
    for path, existing, spec in asked:
        decision = decide(existing, spec, ca_public_key, validity, now, params.get("regenerate") or
                          "partial_idempotence", serial_given=serial_given, source=path)
        if not decision.resign:
            plans.append(CertificatePlan(path, existing, spec, decision, existing))
            continue
        if not serial_given and isinstance(existing, Certificate):
            spec = make_spec(cert_type, spec.public_key, spec.principals, validity, None, spec.key_id,
                             dict(spec.critical_options), spec.extensions)  # a new certificate, a new serial
        plans.append(CertificatePlan(path, existing, spec, decision))
    return plans


def sign_and_write(plans, ca, ca_kind, check_mode):
    """Sign every certificate the plans re-sign, with one signer, then write them all."""
    due = [plan for plan in plans if plan.decision.resign]
    if not due:
        return
    signer = ca.signer(ca_kind)  # also in check mode: a wrong passphrase fails either way
    if check_mode:
        return
    for plan in due:  # all signed before any is written: a signing failure leaves every file as it was
        plan.certificate = signer.sign_certificate(plan.spec)
    for plan in due:
        atomic_write(plan.path, plan.certificate.openssh() + "\n", 0o644)


def certificate_task(params, ca, check_mode, now=None):
    """Sign (or keep) the certificates `params` (ssh_cert's options) describe; returns the module result.

    The single form (`public_key`/`public_key_path` and `path`) returns that certificate's fields;
    `certificates` returns them per item, in order, under `certificates`, with one diff per item.
    Everything is checked and decided before the CA is unlocked and anything is written.
    """
    now = int(time.time()) if now is None else now
    plans = plan_certificates(params, ca, now)
    sign_and_write(plans, ca, params.get("ca") or params["type"], check_mode)
    if params.get("certificates") is None:
        result = {"changed": plans[0].decision.resign}
        result.update(plans[0].result())
        result["diff"] = plans[0].diff()
        return result
    return {
        "changed": any(plan.decision.resign for plan in plans),
        "certificates": [plan.result() for plan in plans],
        "diff": [dict(plan.diff(), before_header=plan.path, after_header=plan.path) for plan in plans],
    }


def _summary(cert):
    if not isinstance(cert, (Certificate, CertSpec)):
        return ""
    return "serial %d, key id %s, principals %s, valid %s to %s\n" % (
        cert.serial, cert.key_id, ",".join(cert.principals), format_time(cert.valid_after),
        format_time(cert.valid_before))
