"""sshd_cert_trust's logic: one pass writes what sshd reads, check mode writes nothing, an existing
KRL is never overwritten, stale principals files go, bad input fails before any write."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._sshd_trust import TrustFilesError, trust_files_task

from conftest import make_keypair

OWNER = (os.getuid(), os.getgid())
CERT = "ssh-ed25519-cert-v01@openssh.com AAAAfake host"


def empty_krl(path: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-k", "-f", path, "/dev/null"], check=True, capture_output=True)


def params(root: Path, **overrides) -> dict:
    config = root / "etc" / "sshca"
    value = {
        "host_certificates": {str(root / "etc" / "host-cert.pub"): CERT},
        "trusted_ca_keys_path": str(config / "trusted_user_ca_keys.pub"),
        "trusted_ca_keys": "ssh-ed25519 AAAAuser\nssh-ed25519 AAAAadmin\n",
        "principals_command_path": str(root / "libexec" / "sshca-principals"),
        "principals_command": "#!/bin/sh\nexit 0\n",
        "principals": [
            {"folder": str(config / "user_principals"), "ca": "user",
             "accounts": {"azureuser": ["grp:platform"], "ops": ["grp:platform", "grp:ops"]}},
            {"folder": str(config / "admin_principals"), "ca": "admin", "accounts": {"azureuser": ["sshca-admin"]}},
        ],
        "revoked_keys_path": str(config / "revoked_keys"),
        "remove": [],
    }
    value.update(overrides)
    return value


def run(root: Path, check_mode: bool = False, **overrides) -> dict:
    (root / "etc").mkdir(exist_ok=True)
    return trust_files_task(params(root, **overrides), check_mode, want_diff=True, owner=OWNER,
                            make_empty_krl=empty_krl)


def tree(root: Path) -> dict:
    """Every path under root with its mode and text (None for folders and the binary KRL)."""
    found = {}
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.stat().st_mode)
        found[str(path.relative_to(root))] = (oct(mode), path.read_text() if path.is_file()
                                              and path.name != "revoked_keys" else None)
    return found


def test_check_apply_idempotent_check_and_apply(tmp_path):
    predicted = run(tmp_path, check_mode=True)
    assert predicted["changed"] and tree(tmp_path) == {"etc": tree(tmp_path)["etc"]}  # nothing written
    applied = run(tmp_path)
    assert applied["changed"]
    assert [r["action"] for r in applied["results"]] == [r["action"] for r in predicted["results"]]
    files = tree(tmp_path)
    assert files["etc/host-cert.pub"] == ("0o644", CERT + "\n")
    assert files["libexec/sshca-principals"] == ("0o755", "#!/bin/sh\nexit 0\n")
    assert files["etc/sshca/user_principals"] == ("0o755", None)
    assert files["etc/sshca/user_principals/ops"][1].splitlines()[1:] == ["grp:platform", "grp:ops"]
    assert files["etc/sshca/admin_principals/azureuser"][1].endswith("from the admin CA.\nsshca-admin\n")
    assert not any(name.rsplit("/", 1)[-1].startswith(".") for name in files)  # no temporary file left
    assert run(tmp_path, check_mode=True)["changed"] is False
    again = run(tmp_path)
    assert again["changed"] is False and again["diff"] == [] and tree(tmp_path) == files


def test_the_empty_krl_is_real_and_an_existing_one_is_never_overwritten(tmp_path):
    run(tmp_path)
    krl = tmp_path / "etc" / "sshca" / "revoked_keys"
    key = make_keypair(tmp_path, "k")
    query = subprocess.run(["ssh-keygen", "-Q", "-f", str(krl), str(key.public)], capture_output=True, text=True,
                           check=False)
    assert query.returncode == 0, query.stderr  # a KRL ssh-keygen reads, revoking nothing
    subprocess.run(["ssh-keygen", "-q", "-k", "-f", str(krl), str(key.public)], check=True)
    revoked = krl.read_bytes()
    assert run(tmp_path)["changed"] is False
    assert krl.read_bytes() == revoked


def test_stale_principals_files_go_and_a_changed_mode_is_put_back(tmp_path):
    run(tmp_path)
    config = tmp_path / "etc" / "sshca"
    (config / "user_principals" / "gone").write_text("grp:old\n")
    os.chmod(config / "trusted_user_ca_keys.pub", 0o600)
    result = run(tmp_path)
    actions = {Path(r["path"]).name: r["action"] for r in result["results"] if r["action"] != "unchanged"}
    assert actions == {"gone": "remove", "trusted_user_ca_keys.pub": "update"}
    assert not (config / "user_principals" / "gone").exists()
    assert stat.S_IMODE((config / "trusted_user_ca_keys.pub").stat().st_mode) == 0o644


def test_look_for_only_reports_and_remove_takes_folders_and_files_and_diffs_them(tmp_path):
    old = tmp_path / "principals"
    old.mkdir()
    (old / "azureuser").write_text("sshca-admin\n")
    (tmp_path / "user_ca.pub").write_text("ssh-ed25519 AAAAold\n")
    looked = trust_files_task({"look_for": [str(old), str(tmp_path / "user_ca.pub"), str(tmp_path / "none")]},
                              False, True, owner=OWNER)
    assert looked["found"] == [str(old), str(tmp_path / "user_ca.pub")] and not looked["changed"] and old.exists()
    result = trust_files_task({"remove": [str(old), str(tmp_path / "user_ca.pub")]}, False, True, owner=OWNER)
    assert result["changed"] and not old.exists() and not (tmp_path / "user_ca.pub").exists()
    assert [d["after_header"] for d in result["diff"]] == ["(absent)", "(absent)"]
    assert trust_files_task({"remove": [str(old)]}, False, True, owner=OWNER)["changed"] is False


@pytest.mark.parametrize(("overrides", "named"), [
    ({"host_certificates": {"relative/cert.pub": CERT}}, "host_certificates: 'relative/cert.pub'"),
    ({"host_certificates": {"/x/cert.pub": ""}}, "host_certificates: '/x/cert.pub'"),
    ({"principals": [{"folder": "/x", "ca": "user", "accounts": {"../etc": ["a"]}}]}, "/x: '../etc'"),
    ({"principals": [{"folder": "/x", "ca": "user", "accounts": {"ops": "grp:ops"}}]}, "user CA, account 'ops'"),
])
def test_bad_input_is_one_line_naming_it_and_nothing_is_written(tmp_path, overrides, named):
    with pytest.raises(TrustFilesError) as caught:
        run(tmp_path, **overrides)
    assert named in str(caught.value) and "\n" not in str(caught.value)
    assert tree(tmp_path) == {"etc": ("0o755", None)}


def test_check_mode_takes_a_certificate_not_signed_yet(tmp_path):
    result = run(tmp_path, check_mode=True, host_certificates={str(tmp_path / "etc" / "c.pub"): ""})
    assert result["results"][0]["action"] == "create" and not (tmp_path / "etc" / "c.pub").exists()
