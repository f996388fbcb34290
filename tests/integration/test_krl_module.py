"""ssh_krl through real ansible-playbook: check -> apply -> idempotent check -> idempotent apply."""

from __future__ import annotations

import subprocess

from test_cert_modules import four_runs

from conftest import make_keypair


def test_ssh_krl_module(ansible_module, tmp_path):
    ca = tmp_path / "ca"
    made = ansible_module("ssh_ca", {"path": str(ca), "allow_unencrypted": True})
    assert not made.failed, made.result.get("msg")
    user = make_keypair(tmp_path, "alice")
    cert = tmp_path / "alice-cert.pub"
    signed = ansible_module("ssh_cert", {"type": "user", "ca_path": str(ca), "ca_allow_unencrypted": True,
                                         "public_key_path": str(user.public), "path": str(cert),
                                         "principals": ["alice"], "key_id": "alice@example"})
    assert not signed.failed, signed.result.get("msg")
    krl = tmp_path / "revoked_keys"
    args = {"path": str(krl), "ca_path": str(ca),
            "revoked": [{"serial": signed.result["serial"], "ca": "user", "reason": "laptop stolen"}]}

    runs = four_runs(ansible_module, "ssh_krl", args, diff=True)
    assert f"serial {signed.result['serial']} of user CA (alice@example, laptop stolen" in runs[0].output
    assert runs[1].result["count"] == 1
    query = subprocess.run(["ssh-keygen", "-Q", "-f", str(krl), str(cert)], capture_output=True, text=True,
                           check=False)
    assert query.returncode == 1 and "REVOKED" in query.stdout

    typo = ansible_module("ssh_krl", dict(args, revoked=[{"serial": 12345, "ca": "user"}]))
    assert typo.failed
    assert typo.result["msg"].startswith("revoked[0].serial: 12345 was not issued by CA SHA256:")
    assert "\n" not in typo.result["msg"]
