"""One custody per CA, through real ansible-playbook: each CA file opens with its own passphrase,
the user CA's custodian signs with that passphrase alone, and every certificate is logged."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import make_keypair

CUSTODY_VARIABLES = ("SSHCA_CA_PASSPHRASE", "SSHCA_HOST_CA_PASSPHRASE", "SSHCA_USER_CA_PASSPHRASE",
                     "SSHCA_ADMIN_CA_PASSPHRASE")
HOST, USER, SHARED = "Host-Custody-7", "User-Custody-8", "Shared-Earlier-9"


def opens_with(private, passphrase: str) -> bool:
    return subprocess.run(["ssh-keygen", "-y", "-P", passphrase, "-f", str(private)], capture_output=True,
                          check=False).returncode == 0


def keygen_list(path) -> str:
    return subprocess.run(["ssh-keygen", "-L", "-f", str(path)], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def custody_env(monkeypatch):
    for name in CUSTODY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_user_ca_signs_with_the_host_and_admin_passphrases_absent(ansible_module, tmp_path, custody_env):
    folder = tmp_path / "ca"
    # The CA owner: the host and user CAs have their own variables, the admin CA falls back to the
    # single variable of earlier releases.
    custody_env.setenv("SSHCA_HOST_CA_PASSPHRASE", HOST)
    custody_env.setenv("SSHCA_USER_CA_PASSPHRASE", USER)
    custody_env.setenv("SSHCA_CA_PASSPHRASE", SHARED)
    made = ansible_module("ssh_ca", {"path": str(folder)})
    assert made.changed, made.result.get("msg")
    assert opens_with(folder / "host_ca", HOST) and not opens_with(folder / "host_ca", SHARED)
    assert opens_with(folder / "user_ca", USER) and not opens_with(folder / "user_ca", HOST)
    assert opens_with(folder / "admin_ca", SHARED) and not opens_with(folder / "admin_ca", USER)

    # The user CA's custodian (a person, a CI job) holds its passphrase and nothing else.
    custody_env.delenv("SSHCA_HOST_CA_PASSPHRASE")
    custody_env.delenv("SSHCA_CA_PASSPHRASE")
    key = make_keypair(tmp_path, "alice")
    args = {"type": "user", "ca_path": str(folder), "public_key_path": str(key.public),
            "path": str(tmp_path / "alice-cert.pub"), "principals": ["alice"], "key_id": "alice@example.com"}
    run = ansible_module("ssh_cert", args)
    assert run.changed and not run.failed, run.result.get("msg")
    signed = run.result
    assert signed["ca"] == "user" and signed["audit_log"] == str(folder / "issued.jsonl")
    assert f"Signing CA: ED25519 {made.result['user_ca_fingerprint']}" in keygen_list(tmp_path / "alice-cert.pub")

    lines = (folder / "issued.jsonl").read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert {k: entry[k] for k in ("serial", "key_id", "principals", "valid_after", "valid_before")} == {
        k: signed[k] for k in ("serial", "key_id", "principals", "valid_after", "valid_before")}
    assert entry["ca"] == "user" and entry["ca_fingerprint"] == made.result["user_ca_fingerprint"]
    assert entry["backend"] == "file" and entry["type"] == "user"
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(key.public)], check=True, capture_output=True,
                                 text=True).stdout.split()[1]
    assert entry["public_key_fingerprint"] == fingerprint

    # The host CA stays shut: its own variable is absent and the user's passphrase is not its.
    refused = ansible_module("ssh_cert", {**args, "type": "host", "path": str(tmp_path / "host-cert.pub"),
                                          "principals": ["h1"], "key_id": None})
    assert refused.failed
    assert refused.result["msg"] == (
        "host_ca_passphrase: the host CA is encrypted at rest: give its passphrase (or set "
        "SSHCA_HOST_CA_PASSPHRASE), or set allow_unencrypted=true to opt out")
    assert not (tmp_path / "host-cert.pub").exists() and len((folder / "issued.jsonl").read_text().splitlines()) == 1

    output = made.output + run.output + refused.output
    assert not [secret for secret in (HOST, USER, SHARED) if secret in output + "\n".join(lines)]
