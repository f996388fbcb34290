"""CA rotation with overlap (playbooks/rotate_ca.yml), run twice: file CAs on a bookworm lab host with ssh.service,
and CAs in the emulator's Key Vault on a trixie host with socket-activated sshd (stand-ins for Ubuntu 22.04 and
24.04, not Ubuntu): real logins and strict clients at every phase, real sshd refusing the old user CA once it is
retired, and with Key Vault no CA private key on the controller."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._ca_keyvault import KeyVaultCA
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import make_spec, resolve_validity
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import parse_public_key
from azure.identity import ClientSecretCredential
from test_ca_keyvault import CLIENT_VARIABLES
from test_enroll_roles import (
    RECAP,
    ca_signed,
    fingerprint,
    host_keys,
    login,
    run_playbook,
    served_certificates,
    work_with_bootstrap,
)
from test_lifecycle import by_config, refusal

from conftest import make_keypair
from labkit import emulator

pytestmark = pytest.mark.lab

RULES = [{"principal": "grp:ops", "accounts": ["azureuser"], "host_tags": {}}]


def served_signing_cas(address: str) -> set[str]:
    """Fingerprints of the CAs that signed the host certificates sshd serves."""
    return set(re.findall(r"Signing CA: \S+ (SHA256:\S+)", served_certificates(address)))


def changed(run) -> dict[str, int]:
    return {name: int(count) for name, _ok, count, _u, _f in RECAP.findall(run.output)}


def vault_ca(**options) -> KeyVaultCA:
    """The emulator's vault as the environment names it, for signing and reading in this process."""
    credential = ClientSecretCredential(os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"],
                                        os.environ["AZURE_CLIENT_SECRET"], authority=os.environ["AZURE_AUTHORITY_HOST"],
                                        disable_instance_discovery=True)
    return KeyVaultCA(os.environ["SSHCA_KEYVAULT_URL"], credential=credential, **options)


def vault_signed(view: Path, ca: str, name: str, principals: list[str]) -> Path:
    """A key certified by the Key Vault CA that `view`/ca names (its keyvault_keys.json, else the default
    key name), signed in this process: what someone allowed to sign with that vault key could make."""
    key = make_keypair(view, name)
    signer = vault_ca(path=str(view / "ca"), kinds=(ca,)).signer(ca)
    spec = make_spec("user", parse_public_key(key.public_text), principals,
                     resolve_validity("user", int(time.time())), key_id=name)
    Path(f"{key.private}-cert.pub").write_text(signer.sign_certificate(spec).openssh() + "\n")
    return key.private


@pytest.mark.parametrize("backend, suite, activation", [("file", "bookworm", "service"),
                                                        ("azure_keyvault", "trixie", "socket")])
def test_rotation_keeps_logins_working_at_every_phase_and_retire_refuses_the_old_user_ca(
        lab_host_factory, tmp_path, monkeypatch, backend, suite, activation):
    vault = backend == "azure_keyvault"
    stack = contextlib.ExitStack()
    custody = {}
    if vault:  # the controller's environment points at the emulator's vault, as AZURE_* would at Azure
        emu = stack.enter_context(emulator.running(tmp_path / "emulator"))
        for name in CLIENT_VARIABLES:
            monkeypatch.setenv(name, emu.env()[name])
        custody = {"sshca_ca_backend": backend, "sshca_vault_url": os.environ["SSHCA_KEYVAULT_URL"]}
    with stack:
        rotation_at_every_phase(lab_host_factory, tmp_path, custody, suite, activation)


def rotation_at_every_phase(lab_host_factory, tmp_path, custody, suite, activation):
    vault = bool(custody)
    signed = vault_signed if vault else ca_signed
    work, _bootstrap, bootstrap_public = work_with_bootstrap(tmp_path)
    name = f"rot-{suite[0]}"
    fleet = {name: lab_host_factory([bootstrap_public], hostname=name, suite=suite, ssh_activation=activation)}
    enroll = run_playbook("enroll.yml", {
        "sshca_work_dir": str(work), "sshca_access_rules": RULES, **custody,
        "sshca_hosts": [{"name": name, "address": host.address, "host_keys": host_keys(host)}
                        for name, host in fleet.items()]}, tmp_path)
    assert enroll.rc == 0, enroll.output[-4000:]
    ca, ca_next = work / "ca", work / "ca.next"
    old = {kind: fingerprint(ca / f"{kind}_ca.pub") for kind in ("host", "user", "admin")}

    def user_cert(key_name: str, principals: list[str]) -> Path:
        """playbooks/user_cert.yml from the work folder: the CA it signs with is the folder's."""
        key = work / "users" / key_name
        run = run_playbook("user_cert.yml", {"sshca_work_dir": str(work), "sshca_user_key_path": str(key),
                                             "sshca_user_principals": principals, "sshca_user_key_id": key_name,
                                             **custody}, work)
        assert run.rc == 0, run.output[-3000:]
        return key

    old_user = user_cert("old-user", ["grp:ops"])
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

    def rotate(phase: str, extra: dict | None = None, **options):
        return run_playbook("rotate_ca.yml", {"sshca_work_dir": str(work), "sshca_rotate_phase": phase, **custody,
                                              **(extra or {})}, tmp_path, **options)

    quiet = dict.fromkeys(fleet, 0)
    if vault:  # a new key name that is the current one: one line, nothing made
        same = rotate("introduce", {"sshca_user_ca_key_next": "sshca-user-ca"})
        assert refusal(same) == ("rotate_ca introduce: the new user CA key name is the current one (sshca-user-ca) "
                                 f"in {custody['sshca_vault_url']}: give sshca_<ca>_ca_key_next another name; "
                                 "nothing was written")
        assert not ca_next.exists()

    # introduce, in check mode first: nothing made, nothing changed on the hosts.
    check = rotate("introduce", check=True)
    assert check.rc == 0 and not ca_next.exists(), check.output[-4000:]
    assert changed(check) == {"localhost": 1, **quiet}, check.output[-4000:]

    introduce = rotate("introduce")
    assert introduce.rc == 0, introduce.output[-4000:]
    new = {kind: fingerprint(ca_next / f"{kind}_ca.pub") for kind in ("host", "user", "admin")}
    assert not set(new.values()) & set(old.values())
    assert known_hosts.read_text().count("@cert-authority ") == 2 * len(fleet)  # both host CAs, for each host
    # Hosts trust the new user CA and the new admin CA next to the old ones, each for its own principals.
    # What a holder of the new CAs can sign (ca_signed reads <folder>/ca/, here the new CAs).
    next_view = tmp_path / "next"
    next_view.mkdir()
    (next_view / "ca").symlink_to(ca_next)
    new_user = signed(next_view, "user", "new-user", ["grp:ops"])
    new_admin = signed(next_view, "admin", "new-admin", ["sshca-admin"])
    logins("introduced", old["host"], old_user_in=True, accepted=(new_user, new_admin))
    forged_admin = signed(next_view, "user", "forged-admin", ["sshca-admin"])
    for name, host in fleet.items():
        assert login(host, forged_admin, known_hosts=known_hosts).returncode == 255, name
    again = rotate("introduce")
    assert again.rc == 0 and changed(again) == {"localhost": 0, **quiet}, again.output[-4000:]

    # switch: the new CAs sign everything from now on; what the old ones signed still works.
    switch = rotate("switch")
    assert switch.rc == 0, switch.output[-4000:]
    assert not ca_next.exists() and fingerprint(work / "ca.previous" / "host_ca.pub") == old["host"]
    assert fingerprint(ca / "host_ca.pub") == new["host"]
    if vault:  # the new key names moved with the folder: every later signature is by the new vault keys
        assert json.loads((ca / "keyvault_keys.json").read_text()) == {
            kind: f"sshca-{kind}-ca-2" for kind in ("host", "user", "admin")}
    # A host enrolled inside the overlap trusts both sides, as the first one does: the old user and admin
    # certificates log in, known_hosts trusts both host CAs for it, and retire drops the old side from it too.
    late = f"late-{suite[0]}"
    fleet[late] = lab_host_factory([bootstrap_public], hostname=late, suite=suite, ssh_activation=activation)
    joined = run_playbook("enroll.yml", {
        "sshca_work_dir": str(work), "sshca_access_rules": RULES, **custody,
        "sshca_hosts": [{"name": late, "address": fleet[late].address, "host_keys": host_keys(fleet[late])}]},
        tmp_path)
    assert joined.rc == 0, joined.output[-4000:]
    assert known_hosts.read_text().count("@cert-authority ") == 2 * len(fleet)
    issued_after = user_cert("issued-after-switch", ["grp:ops"])
    for key, kind in ((issued_after, "user"), (work / "admin" / "id_ed25519", "admin")):
        listing = subprocess.run(["ssh-keygen", "-L", "-f", f"{key}-cert.pub"], capture_output=True, text=True,
                                 check=True).stdout
        assert re.search(rf"Signing CA: \S+ {re.escape(new[kind])} ", listing), (kind, listing)
    logins("switched", new["host"], old_user_in=True, accepted=(issued_after, new_user, old_admin / "id_ed25519"))

    # retire: every host serves the new host CA, so the old CAs go; real sshd refuses the old user CA.
    retire = rotate("retire")
    assert retire.rc == 0, retire.output[-4000:]
    logins("retired", new["host"], old_user_in=False, accepted=(issued_after, new_user))
    for name, host in fleet.items():  # the admin certificate from the old admin CA is refused too
        assert login(host, old_admin / "id_ed25519", known_hosts=known_hosts).returncode == 255, name
    trusted = known_hosts.read_text()
    assert trusted.count("@cert-authority ") == len(fleet)
    assert (ca / "host_ca.pub").read_text().split()[1] in trusted
    assert (work / "ca.previous" / "host_ca.pub").exists() is False
    assert len(list(work.glob("ca.retired-*/host_ca.pub"))) == 1
    if vault:  # the old keys stay in the vault for the operator to disable; none was ever on the controller
        old_keys = vault_ca(kinds=("host", "user", "admin"))
        assert {kind: old_keys.public_key(kind).fingerprint() for kind in old} == old
        assert not [path for path in work.rglob("*") if path.is_file() and b"PRIVATE KEY" in path.read_bytes()
                    and path.parent.name not in ("bootstrap", "admin", "users")]
    again = rotate("retire")
    assert again.rc == 0 and changed(again) == {"localhost": 0, **dict.fromkeys(fleet, 0)}, again.output[-4000:]
