"""Bad input: one clear line naming the input, and nothing written.

Each case goes through the code path a module uses (certificate_task for ssh_cert, FileCA for ssh_ca,
KeypairFiles for ssh_keypair, read_certificate for ssh_cert_info and the filters), so "nothing
written" is checked where writing would happen.
"""

# ruff: noqa: S105, S106 - the passphrases here are test fixtures, not secrets

from __future__ import annotations

import base64
import hashlib
import struct
import subprocess
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._ca_signers import FileCA
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import (
    certificate_task,
    read_certificate,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (
    KeypairFiles,
    SSHKeyError,
)

from conftest import make_keypair

CA_PASS = "ca-pass"


def blob_of(line: str) -> bytes:
    return base64.b64decode(line.split()[1])


def line_of(key_type: str, blob: bytes) -> str:
    return f"{key_type} {base64.b64encode(blob).decode()}"


def sshstr(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def rfc(body_lines, headers=(), begin="---- BEGIN SSH2 PUBLIC KEY ----", end="---- END SSH2 PUBLIC KEY ----"):
    lines = [begin, *headers, *body_lines]
    if end:
        lines.append(end)
    return "\n".join(lines) + "\n"


def wrap(blob: bytes, width: int = 70) -> list[str]:
    text = base64.b64encode(blob).decode()
    return [text[i:i + width] for i in range(0, len(text), width)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs the cases are built from; the CA is made once and must never change."""
    root = tmp_path_factory.mktemp("world")
    ca = FileCA(str(root / "ca"), passphrase=CA_PASS)
    ca.ensure()
    good = make_keypair(root, "good")
    ecdsa = make_keypair(root, "ec", "ecdsa")
    weak = root / "weak"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(weak)], check=True)
    other_ca = make_keypair(root, "other_ca")
    subprocess.run(["ssh-keygen", "-q", "-s", str(other_ca.private), "-I", "x", "-n", "alice",
                    str(good.public)], check=True)
    cert_line = (root / "good-cert.pub").read_text().strip()
    return {
        "root": root,
        "ca_path": str(root / "ca"),
        "good": good.public_text.strip(),
        "good_blob": blob_of(good.public_text),
        "ecdsa": ecdsa.public_text.strip(),
        "weak": (root / "weak.pub").read_text().strip(),
        "private": good.private.read_text(),
        "cert": cert_line,
    }


def snapshot(*folders: Path) -> dict[str, str]:
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


# --- how each case is run -------------------------------------------------------------------


def run_cert(world, out: Path, inputs: Path, overrides: dict, passphrase=CA_PASS, ca_path=None):
    params = {"type": "user", "public_key": world["good"], "public_key_path": None, "path": str(out / "cert.pub"),
              "principals": ["alice"], "valid_for": None, "valid_from": None, "valid_to": None, "serial": None,
              "key_id": None, "critical_options": None, "extensions": None, "regenerate": "partial_idempotence"}
    if "public_key_file" in overrides:
        target = inputs / "input.pub"
        content = overrides.pop("public_key_file")
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
        params.update(public_key=None, public_key_path=str(target))
    if "existing_cert" in overrides:
        (out / "cert.pub").write_text(overrides.pop("existing_cert"))
    params.update(overrides)
    ca = FileCA(ca_path or world["ca_path"], passphrase=passphrase)
    certificate_task(params, ca, check_mode=False)


CASES = {}


def case(name, expected, runner):
    CASES[name] = (expected, runner)


def cert_case(name, expected, make_overrides, **kwargs):
    case(name, expected, lambda w, out, inp: run_cert(w, out, inp, make_overrides(w), **kwargs))


def with_blob(edit):
    """An OpenSSH line whose blob has been edited."""
    return lambda w: {"public_key": line_of("ssh-ed25519", edit(w["good_blob"]))}


# OpenSSH public key lines (ssh_cert's public_key option)
cert_case("empty public key", "public_key", lambda w: {"public_key": ""})
cert_case("truncated base64", "public_key", lambda w: {"public_key": w["good"][:-7]})
cert_case("base64 with a bad character", "public_key",
          lambda w: {"public_key": w["good"].split()[0] + " " + w["good"].split()[1][:-4] + "!!!="})
cert_case("blob cut short", "public_key", with_blob(lambda b: b[:-5] + b"\0\0\0"))
cert_case("blob with trailing bytes", "public_key", with_blob(lambda b: b + b"\0\0\0\0"))
cert_case("line type differs from blob type", "public_key",
          lambda w: {"public_key": line_of("ssh-rsa", w["good_blob"])})
cert_case("unknown key type (dss)", "public_key",
          lambda w: {"public_key": "ssh-dss " + w["good"].split()[1]})
cert_case("unknown key type inside the blob", "public_key",
          lambda w: {"public_key": line_of("ssh-ed25519", sshstr(b"ssh-ed448") + sshstr(b"k" * 57))})
cert_case("RSA 1024", "public_key", lambda w: {"public_key": w["weak"]})
cert_case("certificate where a key is expected", "public_key", lambda w: {"public_key": w["cert"]})
cert_case("OpenSSH private key where a public key is expected", "public_key",
          lambda w: {"public_key": w["private"]})
cert_case("PEM private key", "public_key",
          lambda w: {"public_key": "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n"
                                   "-----END PRIVATE KEY-----\n"})
cert_case("two keys on two lines", "public_key", lambda w: {"public_key": w["good"] + "\n" + w["ecdsa"]})
cert_case("type without key data", "public_key", lambda w: {"public_key": "ssh-ed25519"})
cert_case("ed25519 key of 31 bytes", "public_key",
          lambda w: {"public_key": line_of("ssh-ed25519", sshstr(b"ssh-ed25519") + sshstr(b"k" * 31))})
cert_case("ecdsa blob naming the wrong curve", "public_key",
          lambda w: {"public_key": line_of("ecdsa-sha2-nistp256", blob_of(w["ecdsa"]).replace(
              sshstr(b"nistp256"), sshstr(b"nistp384")))})
cert_case("ecdsa point not on the curve", "public_key",
          lambda w: {"public_key": line_of("ecdsa-sha2-nistp256", blob_of(w["ecdsa"])[:-1]
                                           + bytes([blob_of(w["ecdsa"])[-1] ^ 1]))})
cert_case("authorized_keys options prefix", "public_key", lambda w: {"public_key": 'from="10.0.0.1" ' + w["good"]})
cert_case("NUL byte", "public_key", lambda w: {"public_key": w["good"] + "\x00"})
cert_case("non-UTF-8 bytes in a key file", "input.pub",
          lambda w: {"public_key_file": w["good"].encode() + b" caf\xe9\n"})
cert_case("key file that does not exist", "public_key_path",
          lambda w: {"public_key_path": "/nonexistent/key.pub", "public_key": None})

# RFC 4716 files (ssh_cert's public_key_path option)
cert_case("RFC 4716 without BEGIN marker", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(w["good_blob"]), begin="Comment: x")
                     .replace("Comment: x\n", "---- BEGIN SSH2 PUBLIC KEY\n")})
cert_case("RFC 4716 without END marker", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(w["good_blob"]), end=None)})
cert_case("RFC 4716 with a misspelt BEGIN marker", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(w["good_blob"]), begin="---- BEGIN SSH2 PUBLIC KEY -----")})
cert_case("RFC 4716 with an over-long line", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(blob_of(w["ecdsa"]), 76))})
cert_case("RFC 4716 header without a colon", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(w["good_blob"]), ['Comment "no colon"'])})
cert_case("RFC 4716 header after the key data", "input.pub",
          lambda w: {"public_key_file": rfc([*wrap(w["good_blob"]), "Comment: late"])})
cert_case("RFC 4716 with no key data", "input.pub",
          lambda w: {"public_key_file": rfc([], ["Comment: empty"])})
cert_case("RFC 4716 with truncated base64", "input.pub",
          lambda w: {"public_key_file": rfc([base64.b64encode(w["good_blob"]).decode()[:-6]])})
cert_case("RFC 4716 with text after END", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(w["good_blob"])) + "trailing junk\n"})
cert_case("RFC 4716 header tag with a space", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(w["good_blob"]), ["Bad Tag: value"])})
cert_case("RFC 4716 header continued into the END line", "input.pub",
          lambda w: {"public_key_file": rfc([], ["Comment: dangling\\"])})
cert_case("RFC 4716 header value over 1024 bytes", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(w["good_blob"]), ["x-long: " + "a\\\n".join(["a" * 60] * 20)])})
cert_case("RFC 4716 with non-UTF-8 comment", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(w["good_blob"]), ["Comment: caf\udce9"])
                     .encode("utf-8", "surrogateescape")})
cert_case("RFC 4716 holding a certificate", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(blob_of(w["cert"])))})
cert_case("RFC 4716 holding an RSA 1024 key", "input.pub",
          lambda w: {"public_key_file": rfc(wrap(blob_of(w["weak"])))})

# certificate options
cert_case("host certificate with no principals", "principals", lambda w: {"type": "host", "principals": []})
cert_case("user certificate with no principals", "principals", lambda w: {"principals": []})
cert_case("principal with a space", "principals", lambda w: {"principals": ["al ice"]})
cert_case("principal with a comma", "principals", lambda w: {"principals": ["alice,root"]})
cert_case("validity ending before it starts", "valid_to", lambda w: {"valid_from": "+2h", "valid_to": "+1h"})
cert_case("absolute end before absolute start", "valid_to",
          lambda w: {"valid_from": "2027-02-01T00:00:00Z", "valid_to": "2027-01-01"})
cert_case("negative valid_for", "valid_for", lambda w: {"valid_for": "-1h"})
cert_case("valid_for in words", "valid_for", lambda w: {"valid_for": "sixteen hours"})
cert_case("valid_from in words", "valid_from", lambda w: {"valid_from": "yesterday"})
cert_case("impossible date", "valid_to", lambda w: {"valid_to": "2027-13-45"})
cert_case("valid_for and valid_to together", "valid_for", lambda w: {"valid_for": "1h", "valid_to": "+2h"})
cert_case("unknown critical option", "critical_options", lambda w: {"critical_options": {"permit-root": "yes"}})
cert_case("bad source-address", "critical_options",
          lambda w: {"critical_options": {"source-address": "10.0.0.300/8"}})
cert_case("empty force-command", "critical_options", lambda w: {"critical_options": {"force-command": ""}})
cert_case("critical option on a host certificate", "critical_options",
          lambda w: {"type": "host", "critical_options": {"force-command": "id"}})
cert_case("extension on a host certificate", "extensions", lambda w: {"type": "host", "extensions": ["permit-pty"]})
cert_case("unknown extension", "extensions", lambda w: {"extensions": ["permit-everything"]})
cert_case("negative serial", "serial", lambda w: {"serial": -1})
cert_case("serial over 64 bits", "serial", lambda w: {"serial": 2 ** 64})
cert_case("key id over two lines", "key_id", lambda w: {"key_id": "alice\nroot"})
cert_case("certificate folder missing", "path", lambda w: {"path": "/nonexistent/dir/cert.pub"})
cert_case("unknown certificate type", "type", lambda w: {"type": "machine"})
cert_case("unreadable existing certificate with regenerate=never", "cert.pub",
          lambda w: {"existing_cert": "garbage\n", "regenerate": "never"})
cert_case("re-sign needed but regenerate=fail", "cert.pub",
          lambda w: {"existing_cert": w["cert"] + "\n", "regenerate": "fail"})
cert_case("wrong CA passphrase", "user_ca", lambda w: {}, passphrase="not-the-passphrase")
case("CA that does not exist", "user_ca",
     lambda w, out, inp: run_cert(w, out, inp, {}, ca_path=str(inp / "no-ca")))

# ssh_ca
case("CA without passphrase or opt-in", "passphrase", lambda w, out, inp: FileCA(str(out / "ca")).ensure())
case("CA key type dsa", "key_type", lambda w, out, inp: FileCA(str(out / "ca"), "p", key_type="dsa").ensure())
case("CA path is a file", "ca", lambda w, out, inp: (inp.joinpath("ca").write_text("x"),
                                                     FileCA(str(inp / "ca"), "p").ensure()))
case("existing CA with a wrong passphrase", "host_ca",
     lambda w, out, inp: FileCA(w["ca_path"], passphrase="wrong").ensure())

# ssh_keypair
case("RSA keypair of 1024 bits", "size", lambda w, out, inp: KeypairFiles(str(out / "k"), "rsa", 1024).plan())
case("keypair type dsa", "type", lambda w, out, inp: KeypairFiles(str(out / "k"), "dsa").plan())
case("keypair comment over two lines", "comment",
     lambda w, out, inp: KeypairFiles(str(out / "k"), "ed25519", comment="a\nb").plan())
case("keypair folder missing", "path", lambda w, out, inp: KeypairFiles(str(out / "no" / "k"), "ed25519").plan())
case("keypair with a wrong passphrase", "encrypted",
     lambda w, out, inp: (KeypairFiles(str(inp / "encrypted"), "ed25519", passphrase="a").apply(
         KeypairFiles(str(inp / "encrypted"), "ed25519", passphrase="a").plan()),
         KeypairFiles(str(inp / "encrypted"), "ed25519", passphrase="b", public_key_path=str(out / "k.pub"),
                      rfc4716_path=str(out / "k.rfc")).apply(
             KeypairFiles(str(inp / "encrypted"), "ed25519", passphrase="b").plan())))

# ssh_cert_info / filters
case("public key where a certificate is expected", "content",
     lambda w, out, inp: read_certificate(w["good"], "content"))
case("certificate with a forged principal", "content",
     lambda w, out, inp: read_certificate(line_of(w["cert"].split()[0], blob_of(w["cert"]).replace(b"alice", b"admin")),
                                          "content"))
case("certificate that is not UTF-8", "content", lambda w, out, inp: read_certificate(b"\xff\xfe", "content"))
case("certificate truncated", "content",
     lambda w, out, inp: read_certificate(line_of(w["cert"].split()[0], blob_of(w["cert"])[:-40]), "content"))


def test_corpus_is_big_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(world, tmp_path, name):
    expected, runner = CASES[name]
    out = tmp_path / "out"
    inputs = tmp_path / "inputs"
    out.mkdir()
    inputs.mkdir()
    before_ca = snapshot(Path(world["ca_path"]))
    with pytest.raises(SSHKeyError) as caught:
        runner(world, out, inputs)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    source, _sep, problem = message.partition(": ")
    assert expected in source and problem, message  # "<the input>: <what is wrong with it>"
    assert len(message) < 400
    assert "PRIVATE KEY" not in message and "b3BlbnNzaC1rZXktdjE" not in message  # never echo key material
    assert snapshot(Path(world["ca_path"])) == before_ca
    leftover = {Path(p).name for p in snapshot(out)} - {"cert.pub"}
    assert not leftover, f"{name} wrote {leftover}"
    cert = out / "cert.pub"
    if cert.exists():  # only the cases that put a certificate there first
        assert cert.read_text() in ("garbage\n", world["cert"] + "\n")
