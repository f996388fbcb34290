"""SSH public keys as Azure judges `linuxConfiguration.ssh.publicKeys[].keyData`.

Kept independent of the collection's own parser on purpose: the emulator must judge what the
collection sends, not share its bugs. Azure takes OpenSSH `ssh-rsa` (2048 bits or more) and
`ssh-ed25519` lines and RFC 4716 (SSH2) multi-line blocks of those; it refuses ECDSA, short RSA
and anything malformed. The lab host gets the key as one OpenSSH line, as Azure's agent writes it.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

ACCEPTED_TYPES = ("ssh-rsa", "ssh-ed25519")
RFC4716_BEGIN = "---- BEGIN SSH2 PUBLIC KEY ----"
RFC4716_END = "---- END SSH2 PUBLIC KEY ----"


class KeyRejected(ValueError):
    pass


def _fields(blob: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise KeyRejected("truncated key blob")
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        pos += 4
        if pos + length > len(blob):
            raise KeyRejected("truncated key blob")
        out.append(blob[pos:pos + length])
        pos += length
    return out


def _check_blob(blob: bytes, declared: str | None) -> str:
    fields = _fields(blob)
    if not fields:
        raise KeyRejected("empty key blob")
    key_type = fields[0].decode("ascii", "replace")
    if declared is not None and declared != key_type:
        raise KeyRejected(f"key type {declared} does not match its blob ({key_type})")
    if key_type not in ACCEPTED_TYPES:
        raise KeyRejected(f"key type {key_type} is not supported")
    if key_type == "ssh-ed25519":
        if len(fields) != 2 or len(fields[1]) != 32:
            raise KeyRejected("malformed ssh-ed25519 key")
    else:
        if len(fields) != 3:
            raise KeyRejected("malformed ssh-rsa key")
        bits = int.from_bytes(fields[2], "big").bit_length()
        if bits < 2048:
            raise KeyRejected(f"RSA key of {bits} bits is too short (2048 at least)")
    return key_type


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyRejected("key data is not valid base64") from None


def _rfc4716(text: str) -> tuple[bytes, str]:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    if lines[-1].strip() != RFC4716_END:
        raise KeyRejected("RFC 4716 block without its END line")
    body, comment, pos = [], "", 1
    while pos < len(lines) - 1:
        line = lines[pos]
        match = re.match(r"^([A-Za-z0-9-]{1,64}):\s?(.*)$", line)
        if match and not body:
            value = match.group(2)
            while value.endswith("\\") and pos + 1 < len(lines) - 1:  # header continuation
                pos += 1
                value = value[:-1] + lines[pos]
            if match.group(1).lower() == "comment":
                comment = value.strip().strip('"')
        else:
            body.append(line.strip())
        pos += 1
    if not body:
        raise KeyRejected("RFC 4716 block without key data")
    return _b64("".join(body)), comment


def to_openssh(key_data: str) -> str:
    """The key as one OpenSSH authorized_keys line; raises KeyRejected where Azure says InvalidParameter."""
    text = (key_data or "").strip()
    if not text:
        raise KeyRejected("empty key data")
    if text.startswith(RFC4716_BEGIN):
        # Converted as `ssh-keygen -i -m RFC4716` does (what the Linux agent runs): no comment.
        blob, _comment = _rfc4716(text)
        key_type, comment = _check_blob(blob, None), ""
    else:
        parts = text.split(None, 2)
        if len(parts) < 2 or "\n" in text:
            raise KeyRejected("not an OpenSSH public key line")
        blob, comment = _b64(parts[1]), parts[2] if len(parts) > 2 else ""
        key_type = _check_blob(blob, parts[0])
    line = f"{key_type} {base64.b64encode(blob).decode()}"
    return f"{line} {comment}" if comment else line
