"""CA rotation with overlap (playbooks/rotate_ca.yml) on two lab hosts, one bookworm with ssh.service and one
trixie with socket-activated sshd (stand-ins for Ubuntu 22.04 and 24.04, not Ubuntu): real logins and strict
clients at every phase, real sshd refusing the old user CA once it is retired."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_enroll_roles import (
    RECAP,
    ca_signed,
    fingerprint,
    host_keys,
    login,
    run_playbook,
    served_certificates,
    user_cert,
    work_with_bootstrap,
)
from test_lifecycle import by_config

pytestmark = pytest.mark.lab

RULES = [{"principal": "grp:ops", "accounts": ["azureuser"], "host_tags": {}}]


def served_signing_cas(address: str) -> set[str]:
    """Fingerprints of the CAs that signed the host certificates sshd serves."""
    return set(re.findall(r"Signing CA: \S+ (SHA256:\S+)", served_certificates(address)))


def changed(run) -> dict[str, int]:
    return {name: int(count) for name, _ok, count, _u, _f in RECAP.findall(run.output)}


def test_rotation_keeps_logins_working_at_every_phase_and_retire_refuses_the_old_user_ca(
        lab_host_factory, tmp_path):
    work, _bootstrap, bootstrap_public = work_with_bootstrap(tmp_path)
    fleet = {"rot-b": lab_host_factory([bootstrap_public], hostname="rot-b"),
             "rot-t": lab_host_factory([bootstrap_public], hostname="rot-t", suite="trixie",
                                       ssh_activation="socket")}
    enroll = run_playbook("enroll.yml", {
        "sshca_work_dir": str(work), "sshca_access_rules": RULES,
        "sshca_hosts": [{"name": name, "address": host.address, "host_keys": host_keys(host)}
                        for name, host in fleet.items()]}, tmp_path)
    assert enroll.rc == 0, enroll.output[-4000:]
    ca, ca_next = work / "ca", work / "ca.next"
    old = {kind: fingerprint(ca / f"{kind}_ca.pub") for kind in ("host", "user", "admin")}
    old_user = user_cert(work, "old-user", ["grp:ops"])
    old_admin = tmp_path / "old-admin"
    shutil.copytree(work / "admin", old_admin)
    known_hosts = work / "known_hosts"

    def logins(phase: str, host_ca: str, *, old_user_in: bool, accepted: tuple[Path, ...] = ()) -> None:
        """At each phase, on each host: the admin through the work folder's ssh_config (strict host checking,
        known_hosts from rotate_ca), the host certificates' CA, and user certificates old and new."""
        for name, host in fleet.items():
            admin = by_config(work, name, "sudo", "-n", "id", "-un")
            assert admin.returncode == 0 and admin.stdout.strip() == "root", (phase, name, admin.stderr)
            assert served_signing_cas(host.address) == {host_ca}, (phase, name)
            old_login = login(host, old_user, "id", "-un", known_hosts=known_hosts)
            assert (old_login.returncode == 0) is old_user_in, (phase, name, old_login.stderr)
            if not old_user_in:
                assert "Permission denied (publickey)." in old_login.stderr, (phase, name)
            for key in accepted:
                fresh = login(host, key, "id", "-un", known_hosts=known_hosts)
                assert fresh.returncode == 0 and fresh.stdout.strip() == "azureuser", (phase, name, key, fresh.stderr)

    logins("enrolled", old["host"], old_user_in=True)

    def rotate(phase: str, **options):
        return run_playbook("rotate_ca.yml", {"sshca_work_dir": str(work), "sshca_rotate_phase": phase}, tmp_path,
                            **options)

    # introduce, in check mode first: nothing made, nothing changed on the hosts.
    check = rotate("introduce", check=True)
    assert check.rc == 0 and not ca_next.exists(), check.output[-4000:]
    assert changed(check) == {"localhost": 1, "rot-b": 0, "rot-t": 0}, check.output[-4000:]

    introduce = rotate("introduce")
    assert introduce.rc == 0, introduce.output[-4000:]
    new = {kind: fingerprint(ca_next / f"{kind}_ca.pub") for kind in ("host", "user", "admin")}
    assert not set(new.values()) & set(old.values())
    assert known_hosts.read_text().count("@cert-authority ") == 4  # both host CAs, for each host
    # Hosts trust the new user CA and the new admin CA next to the old ones, each for its own principals.
    # What a holder of the new CAs can sign (ca_signed reads <folder>/ca/, here the new CAs).
    next_view = tmp_path / "next"
    next_view.mkdir()
    (next_view / "ca").symlink_to(ca_next)
    new_user = ca_signed(next_view, "user", "new-user", ["grp:ops"])
    new_admin = ca_signed(next_view, "admin", "new-admin", ["sshca-admin"])
    logins("introduced", old["host"], old_user_in=True, accepted=(new_user, new_admin))
    forged_admin = ca_signed(next_view, "user", "forged-admin", ["sshca-admin"])
    for name, host in fleet.items():
        assert login(host, forged_admin, known_hosts=known_hosts).returncode == 255, name
    again = rotate("introduce")
    assert again.rc == 0 and changed(again) == {"localhost": 0, "rot-b": 0, "rot-t": 0}, again.output[-4000:]

    # switch: the new CAs sign everything from now on; what the old ones signed still works.
    switch = rotate("switch")
    assert switch.rc == 0, switch.output[-4000:]
    assert not ca_next.exists() and fingerprint(work / "ca.previous" / "host_ca.pub") == old["host"]
    assert fingerprint(ca / "host_ca.pub") == new["host"]
    issued_after = user_cert(work, "issued-after-switch", ["grp:ops"])
    for key, kind in ((issued_after, "user"), (work / "admin" / "id_ed25519", "admin")):
        listing = subprocess.run(["ssh-keygen", "-L", "-f", f"{key}-cert.pub"], capture_output=True, text=True,
                                 check=True).stdout
        assert f"Signing CA: ED25519 {new[kind]}" in listing, (kind, listing)
    logins("switched", new["host"], old_user_in=True, accepted=(issued_after, new_user, old_admin / "id_ed25519"))

    # retire: every host serves the new host CA, so the old CAs go; real sshd refuses the old user CA.
    retire = rotate("retire")
    assert retire.rc == 0, retire.output[-4000:]
    logins("retired", new["host"], old_user_in=False, accepted=(issued_after, new_user))
    for name, host in fleet.items():  # the admin certificate from the old admin CA is refused too
        assert login(host, old_admin / "id_ed25519", known_hosts=known_hosts).returncode == 255, name
    trusted = known_hosts.read_text()
    assert trusted.count("@cert-authority ") == 2
    assert (ca / "host_ca.pub").read_text().split()[1] in trusted
    assert (work / "ca.previous" / "host_ca.pub").exists() is False
    assert len(list(work.glob("ca.retired-*/host_ca"))) == 1
    again = rotate("retire")
    assert again.rc == 0 and changed(again) == {"localhost": 0, "rot-b": 0, "rot-t": 0}, again.output[-4000:]
