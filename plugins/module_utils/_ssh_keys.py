# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenSSH public keys and RFC 4716 (SSH2) public key files, both ways, strictly.

Only wire formats live here; every cryptographic operation (hashing, key checks) is done by
`cryptography`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import os
import re
import struct
import tempfile
from dataclasses import dataclass, field
from enum import Enum

from ansible_collections.sshca.azure.plugins.module_utils._runner import InputError, Requirement

try:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the modules through missing_required_lib
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = exc

CRYPTOGRAPHY = Requirement("cryptography", HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR)

# When an existing key (ssh_keypair) or certificate (ssh_cert) is replaced, as community.crypto
# names it; each module documents what the policies mean for what it keeps.
REGENERATE_POLICIES = ("never", "fail", "partial_idempotence", "full_idempotence", "always")
REGENERATE_OPTION = {"type": "str", "default": "partial_idempotence", "choices": list(REGENERATE_POLICIES)}

KEY_TYPES = (
    "ssh-rsa",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)
ECDSA_CURVES = {"ecdsa-sha2-nistp256": ("nistp256", 256), "ecdsa-sha2-nistp384": ("nistp384", 384),
                "ecdsa-sha2-nistp521": ("nistp521", 521)}
MIN_RSA_BITS = 2048

RFC4716_BEGIN = "---- BEGIN SSH2 PUBLIC KEY ----"
RFC4716_END = "---- END SSH2 PUBLIC KEY ----"
RFC4716_LINE_BYTES = 72  # RFC 4716 section 3: lines are at most 72 8-bit bytes
RFC4716_BODY_CHARS = 70  # what ssh-keygen -e writes; within the limit above
RFC4716_TAG_BYTES = 64
RFC4716_VALUE_BYTES = 1024

_BASE64_RE = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_TAG_RE = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")  # printable US-ASCII except colon (and space)
_LINE_SPLIT_RE = re.compile(r"\r\n|\r|\n")


class SSHKeyError(InputError):
    """Bad key input; the message is one line and names the input it is about."""

    def __init__(self, source, problem=None):
        if problem is None:  # a ready-made message
            source, problem = "", source
        self.source = source
        self.problem = problem
        super(SSHKeyError, self).__init__("%s: %s" % (source, problem) if source else problem)


# What can be wrong with a private key and its passphrase, as types: callers decide on these,
# never on the wording of a message (ours or cryptography's).
class UnreadableKey(SSHKeyError):
    """Not a private key this module can read."""


class PassphraseNeeded(SSHKeyError):
    """The key is encrypted and no passphrase was given."""


class PassphraseNotNeeded(SSHKeyError):
    """A passphrase was given for a key that is not encrypted."""


class WrongPassphrase(SSHKeyError):
    """The key is encrypted and the passphrase does not open it."""


def check_regenerate(policy):
    if policy not in REGENERATE_POLICIES:
        raise SSHKeyError("regenerate", "must be one of %s, not %r" % (", ".join(REGENERATE_POLICIES), policy))
    return policy


# --- SSH wire encoding (RFC 4251 section 5) ------------------------------------------------


class WireReader:
    """Reads RFC 4251 `string`, `uint32` and `mpint` values; raises on any truncation."""

    def __init__(self, data, source, what="key data"):
        self.data = data
        self.pos = 0
        self.source = source
        self.what = what

    def _take(self, n):
        if n > len(self.data) - self.pos:
            raise SSHKeyError(self.source, "%s is truncated" % self.what)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint32(self):
        return struct.unpack(">I", self._take(4))[0]

    def string(self):
        return self._take(self.uint32())

    def text(self):
        raw = self.string()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SSHKeyError(self.source, "%s holds a string that is not UTF-8" % self.what) from None

    def mpint(self):
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise SSHKeyError(self.source, "%s holds a negative integer" % self.what)
        if len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80:
            raise SSHKeyError(self.source, "%s holds an integer with a needless leading zero" % self.what)
        return int.from_bytes(raw, "big")

    def at_end(self):
        return self.pos == len(self.data)

    def end(self):
        if not self.at_end():
            extra = len(self.data) - self.pos
            raise SSHKeyError(self.source, "%s has %d unexpected trailing bytes" % (self.what, extra))


def wire_string(value):
    if not isinstance(value, bytes):
        value = value.encode("utf-8")
    return struct.pack(">I", len(value)) + value


def wire_uint32(value):
    return struct.pack(">I", value)


def wire_uint64(value):
    return struct.pack(">Q", value)


def wire_mpint(value):
    if value == 0:
        return wire_string(b"")
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big")  # one spare bit keeps the sign positive
    if len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80:
        raw = raw[1:]
    return wire_string(raw)


# --- public keys ------------------------------------------------------------------------------


def _sha256(data):
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    blob: bytes
    comment: str = field(compare=False)  # two keys are the same key whatever their comments say
    bits: int

    def openssh(self):
        """The one-line OpenSSH form: `type base64 [comment]`."""
        line = "%s %s" % (self.key_type, base64.b64encode(self.blob).decode("ascii"))
        return "%s %s" % (line, self.comment) if self.comment else line

    def openssh_no_comment(self):
        return "%s %s" % (self.key_type, base64.b64encode(self.blob).decode("ascii"))

    def rfc4716(self, comment=None, headers=None):
        """RFC 4716 text (LF line ends); `comment` defaults to the key's own comment."""
        return to_rfc4716(self, comment=comment, headers=headers)

    def fingerprint(self):
        """`SHA256:<unpadded base64>`, as `ssh-keygen -lf` prints it."""
        return "SHA256:" + base64.b64encode(_sha256(self.blob)).decode("ascii").rstrip("=")

    @property
    def family(self):
        """rsa, ed25519 or ecdsa: the names key_type options use."""
        return {"ssh-rsa": "rsa", "ssh-ed25519": "ed25519"}.get(self.key_type, "ecdsa")

    def to_cryptography(self):
        return serialization.load_ssh_public_key(self.openssh_no_comment().encode("ascii"))

    def with_comment(self, comment):
        return PublicKey(self.key_type, self.blob, comment, self.bits)


def _decode_text(data, source):
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SSHKeyError(source, "is not UTF-8 text (bad byte at offset %d)" % exc.start) from None
    if not isinstance(data, str):
        raise SSHKeyError(source, "must be text, not %s" % type(data).__name__)
    if "\x00" in data:
        raise SSHKeyError(source, "contains a NUL byte")
    return data


def _reject_not_a_public_key(text, source):
    if re.search(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----", text) or "BEGIN SSH2 ENCRYPTED PRIVATE KEY" in text:
        raise SSHKeyError(source, "is a private key; give the public key instead")
    first = text.split(None, 1)[0] if text.split() else ""
    if first.endswith("-cert-v01@openssh.com"):
        raise SSHKeyError(source, "is a certificate (%s), not a public key" % first)


def key_from_blob(blob, source, comment="", min_rsa_bits=MIN_RSA_BITS, expected_type=None):
    """Check a public key blob field by field and return it as a PublicKey."""
    reader = WireReader(blob, source)
    key_type = reader.text()
    if key_type.endswith("-cert-v01@openssh.com"):
        raise SSHKeyError(source, "is a certificate (%s), not a public key" % key_type)
    if key_type not in KEY_TYPES:
        raise SSHKeyError(source, "has unsupported key type %r (supported: %s)" % (key_type[:40], ", ".join(KEY_TYPES)))
    if expected_type is not None and key_type != expected_type:
        raise SSHKeyError(source, "says key type %s but its key data is %s" % (expected_type, key_type))
    if key_type == "ssh-rsa":
        exponent = reader.mpint()
        modulus = reader.mpint()
        bits = modulus.bit_length()
        if exponent < 3 or exponent % 2 == 0:
            raise SSHKeyError(source, "has an invalid RSA public exponent")
        if bits < min_rsa_bits:
            raise SSHKeyError(source, "is a %d-bit RSA key; at least %d bits are required" % (bits, min_rsa_bits))
    elif key_type == "ssh-ed25519":
        point = reader.string()
        if len(point) != 32:
            raise SSHKeyError(source, "has an Ed25519 key of %d bytes, not 32" % len(point))
        bits = 256
    else:
        curve, bits = ECDSA_CURVES[key_type]
        named = reader.text()
        if named != curve:
            raise SSHKeyError(source, "is %s but names curve %r" % (key_type, named[:20]))
        reader.string()
    reader.end()
    key = PublicKey(key_type, bytes(blob), comment, bits)
    try:
        key.to_cryptography()  # cryptography checks the numbers themselves (e.g. the EC point is on the curve)
    except (ValueError, TypeError):
        raise SSHKeyError(source, "holds %s key data that is not a valid key" % key_type) from None
    return key


def _b64decode(text, source, where):
    if not text or not _BASE64_RE.match(text) or len(text) % 4:
        raise SSHKeyError(source, "%s is not valid base64 (truncated or corrupted)" % where)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SSHKeyError(source, "%s is not valid base64 (truncated or corrupted)" % where) from None


def parse_openssh_public_key(data, source="public key", min_rsa_bits=MIN_RSA_BITS):
    """Parse exactly one OpenSSH public key line `type base64 [comment]` (no options prefix)."""
    text = _decode_text(data, source).strip()
    if not text:
        raise SSHKeyError(source, "is empty")
    _reject_not_a_public_key(text, source)
    if "\n" in text or "\r" in text:
        raise SSHKeyError(source, "has more than one line; give exactly one OpenSSH public key")
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise SSHKeyError(source, "is not an OpenSSH public key line (`type base64 [comment]`)")
    key_type, body = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if key_type not in KEY_TYPES:
        raise SSHKeyError(source, "has unsupported key type %r (supported: %s)" % (key_type[:40], ", ".join(KEY_TYPES)))
    blob = _b64decode(body, source, "key data")
    return key_from_blob(blob, source, comment, min_rsa_bits=min_rsa_bits, expected_type=key_type)


def _unquote(value):
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def parse_rfc4716(data, source="public key", min_rsa_bits=MIN_RSA_BITS):
    """Parse an RFC 4716 public key file; returns the key with its Comment (or "") as comment.

    The parsed headers (lower-cased tag -> value) are available through `parse_rfc4716_headers`.
    """
    return _parse_rfc4716(data, source, min_rsa_bits)[0]


def parse_rfc4716_headers(data, source="public key", min_rsa_bits=MIN_RSA_BITS):
    return _parse_rfc4716(data, source, min_rsa_bits)[1]


def _parse_rfc4716(data, source, min_rsa_bits):
    text = _decode_text(data, source)
    _reject_not_a_public_key(text, source)
    # Header values keep their spaces; markers and key data may carry trailing blanks.
    lines = _LINE_SPLIT_RE.split(text.strip())
    if lines[0].rstrip() != RFC4716_BEGIN:
        raise SSHKeyError(source, "does not start with %r" % RFC4716_BEGIN)
    stripped = [line.rstrip(" \t") for line in lines]
    try:
        end = stripped.index(RFC4716_END)
    except ValueError:
        raise SSHKeyError(source, "has no %r line" % RFC4716_END) from None
    if any(line.strip() for line in lines[end + 1:]):
        raise SSHKeyError(source, "has text after the END line")
    headers = {}
    body = []
    index = 1
    while index < end:
        line = lines[index]
        number = index + 1
        if not stripped[index]:
            index += 1
            continue
        if len(line.encode("utf-8")) > RFC4716_LINE_BYTES:
            raise SSHKeyError(source, "line %d is longer than %d bytes" % (number, RFC4716_LINE_BYTES))
        if line.startswith("----"):
            raise SSHKeyError(source, "line %d: unexpected marker %r" % (number, line[:40]))
        if body or _BASE64_RE.match(stripped[index]):
            line = stripped[index]
            if ":" in line:
                raise SSHKeyError(source, "line %d: header after the key data" % number)
            if not _BASE64_RE.match(line):
                raise SSHKeyError(source, "line %d: key data is not base64" % number)
            body.append(line)
            index += 1
            continue
        if ":" not in line:
            raise SSHKeyError(source, "line %d: header without a colon" % number)
        # A header, possibly continued over several lines by a trailing backslash.
        full = line
        while full.endswith("\\"):
            index += 1
            if index >= end:
                raise SSHKeyError(source, "line %d: header continues into the END line" % number)
            following = lines[index]
            if len(following.encode("utf-8")) > RFC4716_LINE_BYTES:
                raise SSHKeyError(source, "line %d is longer than %d bytes" % (index + 1, RFC4716_LINE_BYTES))
            full = full[:-1] + following
        tag, _colon, value = full.partition(":")
        if not _TAG_RE.match(tag) or len(tag) > RFC4716_TAG_BYTES:
            raise SSHKeyError(source, "line %d: invalid header tag %r" % (number, tag[:RFC4716_TAG_BYTES]))
        value = value.lstrip(" ")
        if len(value.encode("utf-8")) > RFC4716_VALUE_BYTES:
            raise SSHKeyError(source, "line %d: header %s is longer than %d bytes" % (number, tag, RFC4716_VALUE_BYTES))
        headers[tag.lower()] = value  # tags are case-insensitive; unknown ones are kept but not used
        index += 1
    if not body:
        raise SSHKeyError(source, "has no key data between the BEGIN and END lines")
    blob = _b64decode("".join(body), source, "key data")
    comment = _unquote(headers.get("comment", ""))
    key = key_from_blob(blob, source, comment, min_rsa_bits=min_rsa_bits)
    return key, headers


def looks_like_rfc4716(data):
    """RFC 4716 rather than an OpenSSH line: it has a marker line, even a damaged one."""
    if isinstance(data, bytes):
        data = data.decode("ascii", "replace")
    return isinstance(data, str) and ("SSH2 PUBLIC KEY" in data or data.lstrip().startswith("----"))


def parse_public_key(data, source="public key", min_rsa_bits=MIN_RSA_BITS):
    """Parse an OpenSSH one-line public key or an RFC 4716 file, whichever `data` is."""
    if looks_like_rfc4716(data):
        return parse_rfc4716(data, source, min_rsa_bits=min_rsa_bits)
    return parse_openssh_public_key(data, source, min_rsa_bits=min_rsa_bits)


# --- RFC 4716 output -------------------------------------------------------------------------


def _header_lines(tag, value, source):
    """`Tag: value` folded into lines of at most 72 bytes with trailing-backslash continuation.

    Continuation lines never contain ": " and never start with "----": ssh-keygen -i would
    take such a line for a header or marker and lose count of the continuation.
    """
    if not _TAG_RE.match(tag) or len(tag) > RFC4716_TAG_BYTES:
        raise SSHKeyError(source, "header tag %r is not valid in RFC 4716" % tag[:RFC4716_TAG_BYTES])
    if "\n" in value or "\r" in value:
        raise SSHKeyError(source, "header %s must be one line" % tag)
    if value.endswith("\\"):
        raise SSHKeyError(source, "header %s must not end with a backslash" % tag)
    if len(value.encode("utf-8")) > RFC4716_VALUE_BYTES:
        raise SSHKeyError(source, "header %s is longer than %d bytes" % (tag, RFC4716_VALUE_BYTES))
    text = "%s: %s" % (tag, value)
    if len(text.encode("utf-8")) <= RFC4716_LINE_BYTES:
        return [text]
    lines = []
    start = 0
    while True:
        size = 0
        cut = start
        while cut < len(text):
            width = len(text[cut].encode("utf-8"))
            if size + width > RFC4716_LINE_BYTES - 1:  # keep a byte for the backslash
                break
            if lines and text[cut] == " " and cut > start and text[cut - 1] == ":":
                break  # a continuation line must not hold ": "
            size += width
            cut += 1
        if cut == len(text) and size <= RFC4716_LINE_BYTES:
            lines.append(text[start:])
            return lines
        while cut > start + 1 and text.startswith("----", cut):
            cut -= 1  # the next line must not start with "----"
        if text.startswith("----", cut):
            raise SSHKeyError(source, "header %s holds a run of dashes too long to fold" % tag)
        lines.append(text[start:cut] + "\\")
        start = cut


def to_rfc4716(key, comment=None, headers=None, source="public key"):
    """RFC 4716 text for `key`: Comment first (quoted), then any extra headers, LF line ends."""
    if comment is None:
        comment = key.comment
    lines = [RFC4716_BEGIN]
    if comment:
        lines.extend(_header_lines("Comment", '"%s"' % comment, source))
    for tag, value in (headers or {}).items():
        if tag.lower() == "comment":
            raise SSHKeyError(source, "give the comment through `comment`, not as a header")
        lines.extend(_header_lines(str(tag), str(value), source))
    body = base64.b64encode(key.blob).decode("ascii")
    lines.extend(body[i:i + RFC4716_BODY_CHARS] for i in range(0, len(body), RFC4716_BODY_CHARS))
    lines.append(RFC4716_END)
    return "\n".join(lines) + "\n"


# --- private key files --------------------------------------------------------------------
# Key generation and (de)serialisation are cryptography's; this only decides formats and writes
# files safely.


def generate_private_key(key_type, size=None, source="key"):
    """A new private key: rsa (size bits, >= 2048), ed25519, or ecdsa (size 256/384/521)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "rsa":
        size = int(size or 3072)
        if size < MIN_RSA_BITS:
            raise SSHKeyError(source, "RSA keys must have at least %d bits, not %d" % (MIN_RSA_BITS, size))
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if key_type == "ecdsa":
        curves = {256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1}
        size = int(size or 256)
        if size not in curves:
            raise SSHKeyError(source, "ECDSA keys are 256, 384 or 521 bits, not %d" % size)
        return ec.generate_private_key(curves[size]())
    raise SSHKeyError(source, "key type must be rsa, ed25519 or ecdsa, not %r" % (key_type,))


def private_key_to_openssh(private_key, passphrase=None):
    """OpenSSH private-key format; encrypted (aes256-ctr, bcrypt KDF) when a passphrase is given."""
    encryption = (serialization.BestAvailableEncryption(_passphrase_bytes(passphrase)) if passphrase
                  else serialization.NoEncryption())
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)


def _passphrase_bytes(passphrase):
    return passphrase if isinstance(passphrase, bytes) else str(passphrase).encode("utf-8")


def private_key_encryption(data):
    """Whether a private key file is encrypted (True/False), read from its format; None if the
    format is not one we know (OpenSSH, PKCS#8 or traditional PEM)."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    if "-----BEGIN OPENSSH PRIVATE KEY-----" in text:
        body = "".join(line for line in text.splitlines() if line and not line.startswith("-----"))
        try:
            raw = base64.b64decode(body)
        except (binascii.Error, ValueError):
            return None
        magic = b"openssh-key-v1\x00"
        if not raw.startswith(magic):
            return None
        try:
            return WireReader(raw[len(magic):], "private key").string() != b"none"
        except SSHKeyError:
            return None
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text:
        return True
    if re.search(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----", text):
        return bool(re.search(r"^Proc-Type: *4, *ENCRYPTED", text, re.MULTILINE))
    return None


def private_key_is_encrypted(data):
    return private_key_encryption(data) is True


def load_private_key(data, passphrase, source):
    """Load an OpenSSH or PEM private key. Each problem is its own SSHKeyError type naming `source`."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    encrypted = private_key_encryption(data)
    if encrypted is None:
        raise UnreadableKey(source, "is not a readable private key")
    if encrypted and not passphrase:
        raise PassphraseNeeded(source, "is encrypted; a passphrase is needed")
    if passphrase and not encrypted:
        raise PassphraseNotNeeded(source, "is not encrypted, but a passphrase was given")
    password = _passphrase_bytes(passphrase) if encrypted else None
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            return serialization.load_ssh_private_key(data, password)
        return serialization.load_pem_private_key(data, password)
    except UnsupportedAlgorithm:
        raise UnreadableKey(source, "is a private key of a kind cryptography cannot read") from None
    except (ValueError, TypeError):  # never echo what cryptography says: it may quote key bytes
        if encrypted:
            raise WrongPassphrase(source, "cannot be decrypted: wrong passphrase") from None
        raise UnreadableKey(source, "is not a readable private key") from None


def public_key_of(private_key, comment=""):
    line = private_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return key_from_blob(base64.b64decode(line.split()[1]), "private key", comment, min_rsa_bits=1024)


def atomic_write(path, data, mode=0o600):
    """Write a file whole or not at all: temp file in the same folder, fsync, rename, fsync the folder."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=folder)
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- a keypair on disk (ssh_keypair) ----------------------------------------------------------



class KeyAction(Enum):
    """What KeypairFiles.plan() decides for the private key."""

    KEEP = "keep"
    CREATE = "create"
    REGENERATE = "regenerate"
    ENCRYPT = "encrypt"  # the same key, now encrypted with the passphrase


class KeypairFiles:
    """A private key plus its OpenSSH and RFC 4716 public key files.

    `plan()` says what would change and why; `apply()` does it. Neither ever puts private key
    bytes into anything it returns.
    """

    def __init__(self, path, key_type="rsa", size=None, comment="", passphrase=None,
                 public_key_path=None, rfc4716_path=None, regenerate="partial_idempotence"):
        if not path:
            raise SSHKeyError("path", "must be given")
        if key_type not in ("rsa", "ed25519"):
            raise SSHKeyError("type", "must be rsa or ed25519, not %r" % (key_type,))
        check_regenerate(regenerate)
        if key_type == "rsa":
            size = int(size or 3072)
            if size < MIN_RSA_BITS:
                raise SSHKeyError("size", "RSA keys must have at least %d bits, not %d" % (MIN_RSA_BITS, size))
        else:
            size = 256
        if comment and ("\n" in comment or "\r" in comment):
            raise SSHKeyError("comment", "must be one line")
        self.path = os.path.abspath(os.path.expanduser(path))
        self.key_type = key_type
        self.size = size
        self.comment = comment or ""
        self.passphrase = passphrase or None
        self.public_key_path = public_key_path or self.path + ".pub"
        self.rfc4716_path = rfc4716_path or self.path + ".rfc4716.pub"
        self.regenerate = regenerate
        for name, value in (("path", self.path), ("public_key_path", self.public_key_path),
                            ("rfc4716_path", self.rfc4716_path)):
            folder = os.path.dirname(os.path.abspath(value))
            if not os.path.isdir(folder):
                raise SSHKeyError(name, "folder %s does not exist" % folder)
            if os.path.isdir(value):
                raise SSHKeyError(name, "%s is a folder, not a file" % value)
        self._loaded = None

    def _read_existing(self):
        """(private key or None, the SSHKeyError that makes it unusable, or KeyAction.ENCRYPT, or None)."""
        if not os.path.exists(self.path):
            return None, None
        with open(self.path, "rb") as stream:
            data = stream.read()
        try:
            return load_private_key(data, self.passphrase, self.path), None
        except PassphraseNotNeeded:
            return load_private_key(data, None, self.path), KeyAction.ENCRYPT
        except SSHKeyError as exc:
            return None, exc

    def plan(self):
        """{'key': KeyAction, 'reason': str, 'public': PublicKey|None}"""
        key, problem = self._read_existing()
        if key is None and problem is None:
            return {"key": KeyAction.CREATE, "reason": "no private key yet", "public": None}
        if isinstance(problem, SSHKeyError):
            if self.regenerate in ("full_idempotence", "always"):
                reason = "existing key is unusable (%s)" % problem.problem
                return {"key": KeyAction.REGENERATE, "reason": reason, "public": None}
            raise SSHKeyError(self.path, "%s (regenerate=%s keeps it; use full_idempotence to replace it)"
                              % (problem.problem, self.regenerate))
        public = public_key_of(key, self.comment)
        self._loaded = key
        if self.regenerate == "always":
            return {"key": KeyAction.REGENERATE, "reason": "regenerate=always", "public": public}
        mismatch = []
        actual_type = public.family
        if actual_type != self.key_type:
            mismatch.append("type is %s, not %s" % (actual_type, self.key_type))
        elif actual_type == "rsa" and public.bits != self.size:
            mismatch.append("size is %d, not %d" % (public.bits, self.size))
        if mismatch and self.regenerate != "never":
            if self.regenerate == "fail":
                raise SSHKeyError(self.path, "existing key does not match (%s) and regenerate=fail"
                                  % "; ".join(mismatch))
            return {"key": KeyAction.REGENERATE, "reason": "; ".join(mismatch), "public": public}
        if problem is KeyAction.ENCRYPT:
            return {"key": KeyAction.ENCRYPT, "reason": "existing key is not encrypted; encrypting it",
                    "public": public}
        return {"key": KeyAction.KEEP, "reason": "key is up to date", "public": public}

    def public_files(self, public):
        return {self.public_key_path: public.openssh() + "\n", self.rfc4716_path: public.rfc4716()}

    def stale_public_files(self, public):
        stale = []
        for path, content in self.public_files(public).items():
            if not os.path.exists(path):
                stale.append(path)
                continue
            with open(path, "rb") as stream:
                if stream.read() != content.encode("utf-8"):
                    stale.append(path)
        return stale

    def apply(self, plan):
        """Carry out `plan`; returns the public key now on disk."""
        action = plan["key"]
        if action in (KeyAction.CREATE, KeyAction.REGENERATE):
            key = generate_private_key(self.key_type, self.size, source="type")
            atomic_write(self.path, private_key_to_openssh(key, self.passphrase), 0o600)
        elif action is KeyAction.ENCRYPT:
            key = self._loaded
            atomic_write(self.path, private_key_to_openssh(key, self.passphrase), 0o600)
        else:
            key = self._loaded
        public = public_key_of(key, self.comment)
        for path in self.stale_public_files(public):
            atomic_write(path, self.public_files(public)[path], 0o644)
        return public

    def remove(self, check_mode):
        present = [p for p in (self.path, self.public_key_path, self.rfc4716_path) if os.path.exists(p)]
        if not check_mode:
            for path in present:
                os.unlink(path)
        return present
