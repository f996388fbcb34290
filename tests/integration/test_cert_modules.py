"""Each module through real ansible-playbook: check -> apply -> idempotent check -> idempotent apply."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import make_keypair


def keygen(*args: str) -> str:
    return subprocess.run(["ssh-keygen", *args], check=True, capture_output=True, text=True).stdout


def private_key_lines(path: Path, passphrase: str | None = None) -> list[str]:
    """Strings that only a leak of the private key could put into Ansible's output.

    The base64 lines of the key file (minus those that only hold the embedded public key), and the
    secret numbers themselves in hex, decimal and base64 at every byte alignment.
    """
    text = path.read_text()
    public = subprocess.run(["ssh-keygen", "-y", "-P", passphrase or "", "-f", str(path)], check=True,
                            capture_output=True, text=True).stdout
    found = [line for line in text.splitlines()
             if line and not line.startswith("-----") and line not in public]
    key = serialization.load_ssh_private_key(text.encode(), passphrase.encode() if passphrase else None)
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        secrets = [numbers.d, numbers.p, numbers.q]
        found += [str(n) for n in secrets] + [f"{n:x}" for n in secrets]
        raw = [n.to_bytes((n.bit_length() + 7) // 8, "big") for n in secrets]
    else:
        raw = [key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())]
    for chunk in raw:
        found += [base64.b64encode(chunk[i:i + 24]).decode() for i in range(3)] + [chunk.hex()]
    return found


def four_runs(ansible_module, module: str, args: dict, expect_change: bool = True, **kwargs):
    """check, apply, check, apply; asserts `changed` at each step and returns the four runs."""
    runs = []
    for check, changed in ((True, expect_change), (False, expect_change), (True, False), (False, False)):
        run = ansible_module(module, args, check=check, **kwargs)
        assert not run.failed, run.result.get("msg")
        assert run.changed is changed, (module, "check" if check else "apply", run.result)
        runs.append(run)
    return runs


def assert_no_secret(output: str, *secrets: str):
    for secret in secrets:
        assert secret not in output


def test_ssh_keypair(ansible_module, tmp_path):
    path = tmp_path / "bootstrap"
    args = {"path": str(path), "type": "rsa", "comment": "bootstrap@test", "passphrase": "kp-secret-1"}
    check = ansible_module("ssh_keypair", args, check=True, diff=True)
    assert check.changed and not path.exists()
    assert check.result["diff"]["after"] == "(a new key)\n"
    apply, check_again, apply_again = (four_runs_tail(ansible_module, "ssh_keypair", args))
    result = apply.result
    assert result["fingerprint"] == keygen("-l", "-f", str(path) + ".pub").split()[1]
    assert result["size"] == 3072 and result["type"] == "rsa"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert keygen("-i", "-m", "RFC4716", "-f", str(path) + ".rfc4716.pub").split()[:2] == \
        result["public_key"].split()[:2]
    assert result["public_key_rfc4716"] == Path(str(path) + ".rfc4716.pub").read_text()
    assert check_again.result["fingerprint"] == apply_again.result["fingerprint"] == result["fingerprint"]
    verbose = ansible_module("ssh_keypair", args, verbosity=3)
    assert not verbose.changed
    assert_no_secret(verbose.output + check.output + apply.output, "kp-secret-1",
                     *private_key_lines(path, "kp-secret-1"))


def four_runs_tail(ansible_module, module, args):
    """apply -> idempotent check -> idempotent apply, after a check run made by the caller."""
    apply = ansible_module(module, args)
    assert apply.changed and not apply.failed, apply.result
    check_again = ansible_module(module, args, check=True)
    assert not check_again.changed and not check_again.failed, check_again.result
    apply_again = ansible_module(module, args)
    assert not apply_again.changed and not apply_again.failed, apply_again.result
    return apply, check_again, apply_again


def test_ssh_ca(ansible_module, tmp_path):
    folder = tmp_path / "ca"
    args = {"path": str(folder), "passphrase": "ca-secret-2"}
    runs = four_runs(ansible_module, "ssh_ca", args)
    assert runs[0].result["changes"]  # the check run says what it would create (writing nothing: see below)
    result = runs[1].result
    for kind in ("host", "user"):
        assert result[f"{kind}_ca_path"] == str(folder / f"{kind}_ca")
        assert result[f"{kind}_ca_fingerprint"] == keygen("-l", "-f", str(folder / f"{kind}_ca.pub")).split()[1]
        assert runs[3].result[f"{kind}_ca_public_key"] == result[f"{kind}_ca_public_key"]
    assert (folder.stat().st_mode & 0o777) == 0o700
    verbose = ansible_module("ssh_ca", args, verbosity=3, diff=True)
    assert not verbose.changed
    assert_no_secret("".join(r.output for r in runs) + verbose.output, "ca-secret-2",
                     *private_key_lines(folder / "host_ca", "ca-secret-2"),
                     *private_key_lines(folder / "user_ca", "ca-secret-2"))


def test_ssh_ca_check_mode_writes_nothing(ansible_module, tmp_path):
    run = ansible_module("ssh_ca", {"path": str(tmp_path / "ca"), "allow_unencrypted": True}, check=True)
    assert run.changed and not (tmp_path / "ca").exists()


def test_ssh_ca_wrong_passphrase_fails_with_one_line(ansible_module, tmp_path):
    ansible_module("ssh_ca", {"path": str(tmp_path / "ca"), "passphrase": "Right-Pass-5"})
    run = ansible_module("ssh_ca", {"path": str(tmp_path / "ca"), "passphrase": "Typo-Pass-6"})
    assert run.failed
    assert run.result["msg"] == f"{tmp_path / 'ca' / 'host_ca'}: cannot be decrypted: wrong passphrase"


@pytest.fixture
def ca_folder(ansible_module, tmp_path) -> Path:
    run = ansible_module("ssh_ca", {"path": str(tmp_path / "ca"), "passphrase": "ca-secret-3"})
    assert run.changed
    return tmp_path / "ca"


def test_ssh_cert_user(ansible_module, tmp_path, ca_folder):
    subject = make_keypair(tmp_path, "alice")
    cert_path = tmp_path / "alice-cert.pub"
    args = {"type": "user", "ca_path": str(ca_folder), "ca_passphrase": "ca-secret-3",
            "public_key_path": str(subject.public), "path": str(cert_path), "principals": ["alice"],
            "key_id": "alice@test", "critical_options": {"source-address": "127.0.0.0/8"}}
    runs = four_runs(ansible_module, "ssh_cert", args)
    assert runs[0].result["resigned"] and runs[0].result["reason"] == "no certificate yet"
    assert "certificate" not in runs[0].result  # check mode signs nothing
    signed = runs[1].result
    assert signed["certificate"] == cert_path.read_text().strip()
    assert runs[2].result["reason"] == runs[3].result["reason"] == "certificate is up to date"
    assert runs[3].result["serial"] == signed["serial"]  # the random serial stays while nothing changes
    listing = keygen("-L", "-f", str(cert_path))
    assert f"Serial: {signed['serial']}" in listing and "source-address 127.0.0.0/8" in listing
    assert keygen("-l", "-f", str(ca_folder / "user_ca.pub")).split()[1] in listing
    changed = ansible_module("ssh_cert", {**args, "principals": ["alice", "deploy"]}, diff=True)
    assert changed.changed and changed.result["reason"] == "principals changed"
    assert changed.result["serial"] != signed["serial"]
    assert changed.result["diff"]["before"].endswith(signed["certificate"] + "\n")
    assert_no_secret("".join(r.output for r in runs) + changed.output, "ca-secret-3",
                     *private_key_lines(ca_folder / "user_ca", "ca-secret-3"), *private_key_lines(subject.private))


def test_ssh_cert_host_with_public_key_string(ansible_module, tmp_path, ca_folder):
    host_key = make_keypair(tmp_path, "ssh_host_ed25519_key")
    cert_path = tmp_path / "ssh_host_ed25519_key-cert.pub"
    args = {"type": "host", "ca_path": str(ca_folder), "ca_passphrase": "ca-secret-3",
            "public_key": host_key.public_text, "path": str(cert_path), "principals": ["vm1", "127.0.0.20"]}
    runs = four_runs(ansible_module, "ssh_cert", args)
    listing = keygen("-L", "-f", str(cert_path))
    assert "host certificate" in listing
    assert keygen("-l", "-f", str(ca_folder / "host_ca.pub")).split()[1] in listing
    assert runs[1].result["valid_before"] > runs[1].result["valid_after"]


def test_ssh_cert_bad_input_fails_and_writes_nothing(ansible_module, tmp_path, ca_folder):
    cert_path = tmp_path / "x-cert.pub"
    run = ansible_module("ssh_cert", {"type": "host", "ca_path": str(ca_folder), "ca_passphrase": "ca-secret-3",
                                      "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "path": str(cert_path),
                                      "principals": ["h"]})
    assert run.failed and run.result["msg"].startswith("public_key: ")
    assert not cert_path.exists()


def test_ssh_cert_info(ansible_module, tmp_path):
    ca = make_keypair(tmp_path, "ca")
    subject = make_keypair(tmp_path, "bob")
    keygen("-s", str(ca.private), "-I", "bob-id", "-n", "bob", "-z", "17", "-V", "+1h", str(subject.public))
    args = {"path": str(tmp_path / "bob-cert.pub")}
    runs = four_runs(ansible_module, "ssh_cert_info", args, expect_change=False)
    info = runs[1].result
    assert info["type"] == "user" and info["key_id"] == "bob-id" and info["serial"] == 17
    assert info["principals"] == ["bob"] and info["expired"] is False
    assert 3500 < info["remaining_seconds"] <= 3600
    assert info["signing_ca"]["fingerprint"] == keygen("-l", "-f", str(ca.public)).split()[1]
    assert info["fingerprint"] == keygen("-l", "-f", str(subject.public)).split()[1]
    assert "permit-pty" in info["extensions"]
    by_content = ansible_module("ssh_cert_info", {"content": (tmp_path / "bob-cert.pub").read_text()})
    assert by_content.result["serial"] == 17


def test_ssh_keypair_absent(ansible_module, tmp_path):
    pair = make_keypair(tmp_path, "old")
    rfc = tmp_path / "old.rfc4716.pub"
    rfc.write_text("x\n")
    runs = four_runs(ansible_module, "ssh_keypair", {"path": str(pair.private), "state": "absent"})
    assert runs[0].result["reason"].startswith("removed ")
    assert not pair.private.exists() and not pair.public.exists() and not rfc.exists()
