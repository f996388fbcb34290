"""playbooks/enroll.yml and its roles against lab hosts, judged by real sshd and real logins.

Each case runs through ansible-playbook the way users do: check -> apply -> idempotent check ->
idempotent apply, with the `changed` counts of the play recap asserted every time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils import _enrollment as contract
from cryptography.hazmat.primitives import serialization
from test_azure_vm import LOCATION

from conftest import REPO, collection_env, make_keypair
from labkit import emulator

pytestmark = pytest.mark.lab

PASSPHRASE = "lab-ca-passphrase-not-secret"  # noqa: S105 - a throwaway CA in tmp_path
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass
class PlaybookRun:
    rc: int
    output: str

    def recap(self, host: str) -> dict[str, int]:
        for name, ok, changed, unreachable, failed in RECAP.findall(self.output):
            if name == host:
                return {"ok": int(ok), "changed": int(changed), "unreachable": int(unreachable),
                        "failed": int(failed)}
        raise AssertionError(f"no recap for {host}:\n{self.output[-3000:]}")

    def changed(self, host: str) -> int:
        return self.recap(host)["changed"]

    def summary(self) -> dict:
        """The per-host summary enroll.yml prints, also after a host failed."""
        assert "TASK [Show the summary]" in self.output, self.output[-40000:]
        text = self.output.split("TASK [Show the summary]", 1)[1]
        body = text[text.index("=> {") + 3:]
        return json.loads(body[:body.index("\n}\n") + 2])["sshca_summary | default({})"]


def run_playbook(name: str, extra_vars: dict, cwd: Path, *, check: bool = False,
                 extra_args: tuple[str, ...] = ()) -> PlaybookRun:
    variables = cwd / f"vars-{name}.json"
    variables.write_text(json.dumps(extra_vars))
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), str(REPO / "playbooks" / name),
            "-e", f"@{variables}", *extra_args]
    if check:
        argv.append("--check")
    env = collection_env() | {"SSHCA_CA_PASSPHRASE": PASSPHRASE}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False)
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr)


def login(host, identity: Path, *command: str, user: str | None = None,
          known_hosts: Path | None = None) -> subprocess.CompletedProcess:
    return host.ssh(identity, *(command or ("true",)), user=user,
                    known_hosts=str(known_hosts) if known_hosts else None)


def user_cert(work: Path, name: str, principals: list[str]) -> Path:
    """A user key with a certificate from the fleet's user CA, issued by playbooks/user_cert.yml."""
    key = work / "users" / name
    run = run_playbook("user_cert.yml", {"sshca_work_dir": str(work), "sshca_user_key_path": str(key),
                                         "sshca_user_principals": principals, "sshca_user_key_id": name}, work)
    assert run.rc == 0, run.output[-3000:]
    return key


def work_with_bootstrap(tmp_path: Path):
    """A work folder holding the bootstrap key enroll.yml would make (so hosts can authorize it first):
    (work folder, bootstrap private key, its public key line)."""
    work = tmp_path / "sshca"
    bootstrap = make_keypair(tmp_path, "bootstrap", "rsa")
    (work / "bootstrap").mkdir(parents=True)
    for src, dest in ((bootstrap.private, "id_rsa"), (bootstrap.public, "id_rsa.pub")):
        (work / "bootstrap" / dest).write_bytes(src.read_bytes())
    (work / "bootstrap" / "id_rsa").chmod(0o600)
    return work, work / "bootstrap" / "id_rsa", bootstrap.public_text


def ca_signed(work: Path, ca: str, name: str, principals: list[str]) -> Path:
    """A key certified by the fleet's `ca` (user or admin) for any principals, with the real
    ssh-keygen: what someone holding that CA could make."""
    key = make_keypair(work, name).private
    unlocked = work / f"{name}-{ca}_ca"
    ca_key = serialization.load_ssh_private_key((work / "ca" / f"{ca}_ca").read_bytes(), PASSPHRASE.encode())
    unlocked.write_bytes(ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    unlocked.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-s", str(unlocked), "-I", name, "-n", ",".join(principals), "-V", "-5m:+1h",
                    f"{key}.pub"], check=True)
    unlocked.unlink()
    return key


def signing_ca(key: Path) -> str:
    """The fingerprint of the CA that signed key's certificate, as ssh-keygen -L shows it."""
    shown = subprocess.run(["ssh-keygen", "-L", "-f", f"{key}-cert.pub"], capture_output=True, text=True, check=True)
    return re.search(r"Signing CA: \S+ (SHA256:\S+)", shown.stdout).group(1)


def fingerprint(public_key: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(public_key)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


def host_keys(host) -> list[str]:
    """The host's public host keys, read out of band (what an operator pins as host_keys)."""
    return host.exec("sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub").stdout.splitlines()


def served_certificate(address: str) -> str:
    """The Ed25519 host certificate sshd serves, as `ssh-keyscan -c | ssh-keygen -L` shows it (in UTC)."""
    scan = subprocess.run(["ssh-keyscan", "-c", "-t", "ed25519", address], capture_output=True, text=True,
                          check=True).stdout
    return subprocess.run(["ssh-keygen", "-L", "-f", "-"], input=scan, capture_output=True, text=True, check=True,
                          env={"TZ": "UTC", "PATH": "/usr/bin:/bin"}).stdout


def served_certificates(address: str) -> str:
    """Every host certificate sshd serves, as a fresh `ssh-keyscan -c | ssh-keygen -L` lists them."""
    scan = subprocess.run(["ssh-keyscan", "-c", "-T", "10", address], capture_output=True, text=True, check=False)
    # Each line holds a certificate type and blob (OpenSSH 9.2 prints no host name before them with -c).
    certs = "\n".join(re.findall(r"\S+-cert-v01@openssh\.com \S+", scan.stdout))
    return subprocess.run(["ssh-keygen", "-L", "-f", "-"], input=certs, capture_output=True, text=True,
                          check=False).stdout


def served_serials(address: str) -> set[int]:
    return {int(serial) for serial in re.findall(r"Serial: (\d+)", served_certificates(address))}


def served_principals(address: str) -> list[str]:
    """The principals of the host certificate sshd serves."""
    block = served_certificate(address).split("Principals:", 1)[1].split("Critical Options:", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


RULES = [
    {"principal": "grp:noob", "accounts": ["azureuser"], "host_tags": {"role": "noob"}},
    {"principal": "grp:platform", "accounts": ["azureuser", "ops"], "host_tags": {}},
    {"principal": "grp:web", "accounts": ["azureuser"], "host_tags": {"role": "web"}},
]


def test_enroll_existing_host_locks_it_down_and_reruns_with_its_certificate(lab_host_factory, tmp_path):
    work, key, bootstrap_public = work_with_bootstrap(tmp_path)
    host = lab_host_factory([bootstrap_public], hostname="noob-1")
    fqdn, extra = "noob-1.westeurope.cloudapp.azure.com", ["noob.example.net"]
    extra_vars = {"sshca_work_dir": str(work), "sshca_access_rules": RULES, "sshca_accounts": [{"name": "ops"}],
                  "sshca_hosts": [{"name": "noob-1", "address": host.address, "private_ip": "10.0.1.4",
                                   "fqdn": fqdn, "extra_principals": extra, "host_tags": {"role": "noob"},
                                   "host_keys": host_keys(host)}]}

    check = run_playbook("enroll.yml", extra_vars, tmp_path, check=True)
    assert check.rc == 0, check.output[-4000:]
    assert check.changed("localhost") > 0
    assert '"would_enroll": true' in check.output
    assert not (work / "ca").exists()
    assert login(host, key).returncode == 0, "check mode must leave the bootstrap key working"
    assert host.exec("test", "-e", "/etc/ssh/sshd_config.d/10-sshca-enroll.conf", check=False).returncode == 1

    apply = run_playbook("enroll.yml", extra_vars, tmp_path)
    assert apply.rc == 0, apply.output[-4000:]
    assert apply.changed("noob-1") > 0
    assert '"connected_with": "bootstrap key"' in apply.output
    assert '"host_keys": "pinned from host_keys"' in apply.output
    assert PASSPHRASE not in apply.output

    # Principals from the operator, in the contract's (and Terraform's) order, as sshd serves them.
    assert served_principals(host.address) == contract.host_principals("noob-1", host.address, "10.0.1.4", fqdn,
                                                                       extra)
    refused = login(host, key)
    assert refused.returncode == 255 and "Permission denied (publickey)." in refused.stderr
    # The bootstrap key left authorized_keys; a copy waits for break-glass.
    assert host.exec("grep", "-c", bootstrap_public.split()[1], "/home/azureuser/.ssh/authorized_keys",
                     check=False).stdout.strip() == "0"
    assert bootstrap_public.split()[1] in host.exec("cat", "/var/lib/sshca/lockout/removed_keys").stdout
    known_hosts = work / "known_hosts"
    admin = login(host, work / "admin" / "id_ed25519", "sudo", "-n", "id", "-un", known_hosts=known_hosts)
    assert admin.returncode == 0, admin.stderr
    assert admin.stdout.strip() == "root"
    # The host certificate answers for the name and the address: no trust on first use.
    assert "@cert-authority noob-1," in known_hosts.read_text()
    effective = host.exec("sshd", "-T", "-C", "user=azureuser").stdout.splitlines()
    for setting in ("authorizedkeysfile none", "authorizedkeyscommand none", "permitrootlogin no",
                    "passwordauthentication no", "loglevel VERBOSE", "revokedkeys /etc/ssh/sshca/revoked_keys",
                    "authorizedprincipalsfile none", "authorizedprincipalscommanduser nobody",
                    "authorizedprincipalscommand /usr/local/libexec/sshca-principals %u %F"):
        assert setting in effective, setting
    # The KRL enrollment installs is a real, empty one, and sshd takes logins with it (above, below).
    krl = host.exec("ssh-keygen", "-Q", "-f", "/etc/ssh/sshca/revoked_keys", "/etc/ssh/ssh_host_ed25519_key.pub")
    assert krl.stdout.strip().endswith(": ok")

    noob = user_cert(work, "noob", ["grp:noob"])
    web = user_cert(work, "web", ["grp:web"])
    platform = user_cert(work, "platform", ["grp:platform"])
    assert login(host, noob, known_hosts=known_hosts).returncode == 0
    denied = login(host, web, known_hosts=known_hosts)
    assert denied.returncode == 255 and "Permission denied (publickey)." in denied.stderr
    assert login(host, platform, "id", "-un", user="ops", known_hosts=known_hosts).stdout.strip() == "ops"
    assert login(host, noob, user="ops", known_hosts=known_hosts).returncode == 255
    journal = host.exec("journalctl", "-u", "ssh", "--no-pager").stdout
    assert re.search(r"Accepted publickey for azureuser .* ID noob \(serial \d+\)", journal)

    # Admin access only from the admin CA, whatever principals a certificate carries.
    assert signing_ca(work / "admin" / "id_ed25519") == fingerprint(work / "ca" / "admin_ca.pub")
    forged = ca_signed(work, "user", "forged-admin", ["sshca-admin", "azureuser", "root"])
    refused_admin = login(host, forged, known_hosts=known_hosts)
    assert refused_admin.returncode == 255 and "Permission denied (publickey)." in refused_admin.stderr
    admin_ca_admin = ca_signed(work, "admin", "admin-ca-admin", ["sshca-admin"])
    assert login(host, admin_ca_admin, "id", "-un", known_hosts=known_hosts).stdout.strip() == "azureuser"
    admin_ca_user = ca_signed(work, "admin", "admin-ca-user", ["grp:platform", "grp:noob", "ops"])
    for account in ("ops", "azureuser"):
        assert login(host, admin_ca_user, user=account, known_hosts=known_hosts).returncode == 255, account
    assert login(host, admin_ca_admin, user="ops", known_hosts=known_hosts).returncode == 255
    user_ca_user = ca_signed(work, "user", "user-ca-user", ["grp:platform"])
    assert login(host, user_ca_user, "id", "-un", user="ops", known_hosts=known_hosts).stdout.strip() == "ops"

    serial = host.exec("ssh-keygen", "-Lf", "/etc/ssh/ssh_host_ed25519_key-cert.pub").stdout
    check_again = run_playbook("enroll.yml", extra_vars, tmp_path, check=True)
    assert check_again.rc == 0, check_again.output[-4000:]
    assert check_again.changed("noob-1") == 0
    again = run_playbook("enroll.yml", extra_vars, tmp_path, extra_args=("-vvv",))
    assert again.rc == 0, again.output[-4000:]
    assert PASSPHRASE not in again.output
    assert again.changed("noob-1") == 0
    assert again.changed("localhost") == 0
    assert '"connected_with": "certificate"' in again.output
    assert host.exec("ssh-keygen", "-Lf", "/etc/ssh/ssh_host_ed25519_key-cert.pub").stdout == serial

    # A host enrolled by a release before the admin CA (user CA only, the admin principal in a principals file,
    # no mark on the controller): the rerun reaches it with a user-CA admin certificate and moves it over.
    host.exec("sh", "-c", BEFORE_ADMIN_CA, "sh", (work / "ca" / "user_ca.pub").read_text().strip())
    (work / "hosts" / "noob-1" / "trusts-admin-ca").unlink()
    deadline = time.monotonic() + 20
    while login(host, forged, known_hosts=known_hosts).returncode != 0:
        assert time.monotonic() < deadline, "the earlier release's layout never took the forged certificate"
        time.sleep(0.5)
    # No master connection of the earlier runs (authenticated with the admin-CA certificate) is reused.
    control_dir = "sshca-" + hashlib.sha1(str(work).encode(), usedforsecurity=False).hexdigest()[:12]
    for socket in (Path.home() / ".ansible" / "cp" / control_dir).glob("*"):
        socket.unlink()
    upgrade = run_playbook("enroll.yml", extra_vars, tmp_path)
    assert upgrade.rc == 0, upgrade.output[-4000:]
    assert upgrade.changed("noob-1") > 0
    journal = host.exec("journalctl", "-u", "ssh", "--no-pager").stdout
    assert re.search(r"Accepted publickey for azureuser .* ID sshca-enroll-before-admin-ca ", journal)
    assert login(host, forged, known_hosts=known_hosts).returncode == 255
    assert login(host, work / "admin" / "id_ed25519", known_hosts=known_hosts).returncode == 0
    for earlier in ("/etc/ssh/sshca/user_ca.pub", "/etc/ssh/sshca/principals"):
        assert host.exec("test", "-e", earlier, check=False).returncode == 1, earlier


# What a release before the admin CA left on a host; $1 is the user CA public key.
BEFORE_ADMIN_CA = r"""
set -e
printf '%s\n' "$1" > /etc/ssh/sshca/user_ca.pub
mkdir -p /etc/ssh/sshca/principals
printf 'sshca-admin\ngrp:noob\ngrp:platform\n' > /etc/ssh/sshca/principals/azureuser
rm -rf /etc/ssh/sshca/admin_principals /etc/ssh/sshca/user_principals /etc/ssh/sshca/trusted_user_ca_keys.pub
sed -i -e 's#^TrustedUserCAKeys .*#TrustedUserCAKeys /etc/ssh/sshca/user_ca.pub#' \
  -e 's#^AuthorizedPrincipalsFile .*#AuthorizedPrincipalsFile /etc/ssh/sshca/principals/%u#' \
  -e '/^AuthorizedPrincipalsCommand/d' /etc/ssh/sshd_config.d/10-sshca-enroll.conf
systemctl try-reload-or-restart ssh
"""


def test_drop_in_is_not_placed_when_sshd_would_ignore_it(lab_host_factory, tmp_path):
    """A main sshd_config without `Include sshd_config.d` fails validation; nothing is written."""
    work = tmp_path / "sshca"
    bootstrap = make_keypair(tmp_path, "bootstrap", "rsa")
    host = lab_host_factory([bootstrap.public_text])
    host.exec("sed", "-i", "/^Include/d", "/etc/ssh/sshd_config")
    run = run_playbook("enroll.yml", {
        "sshca_work_dir": str(work), "sshca_bootstrap_key_path": str(bootstrap.private),
        "sshca_hosts": [{"name": "plain", "address": host.address, "accept_new_host_keys": True}]}, tmp_path)
    assert run.rc != 0
    assert "/etc/ssh/sshd_config does not Include /etc/ssh/sshd_config.d" in run.output
    plain = run.summary()["plain"]
    assert plain["host_keys"] == "TRUSTED ON FIRST USE (accept_new_host_keys), not pinned"
    assert "does not Include" in plain["failed"] and plain["locked"] is False
    assert "enroll: not enrolled: plain" in run.output
    assert host.exec("test", "-e", "/etc/ssh/sshd_config.d/10-sshca-enroll.conf", check=False).returncode == 1
    assert login(host, bootstrap.private).returncode == 0


def served_cert_facts(address: str) -> tuple[str, str, str]:
    """(serial, valid after, valid before) of the host certificate sshd serves, in UTC."""
    text = served_certificate(address)
    serial = re.search(r"Serial: (\d+)", text).group(1)
    after, before = re.search(r"Valid: from (\S+) to (\S+)", text).groups()
    return serial, after + "Z", before + "Z"


@pytest.fixture
def azure(tmp_path_factory):
    """A private emulator (its VMs are lab hosts) with a resource group and a subnet; the Azure
    variables are in os.environ, so ansible-playbook's azure_vm reaches it."""
    saved = dict(os.environ)
    with emulator.running(tmp_path_factory.mktemp("emulator")) as emu:  # removes its lab hosts afterwards
        os.environ.update(emu.env())
        try:
            subnet_id = emu.make_network("rg-enroll", LOCATION)
            yield emu, emu.sdk_clients(), subnet_id
        finally:
            os.environ.clear()
            os.environ.update(saved)


def arm_writes(emu, since: float) -> list[str]:
    """ARM writes that change resources (Run Command reads host keys, it changes nothing)."""
    return [f"{r['method']} {r['path']}" for r in emu.requests(since)
            if r.get("write") and r["path"].startswith("/subscriptions/") and not r["path"].endswith("/runCommand")]


def run_commands(emu, since: float) -> list[tuple[float, str]]:
    """(time, VM name) of every Run Command call since `since`."""
    return [(r["t"], r["path"].split("/")[-2]) for r in emu.requests(since) if r["path"].endswith("/runCommand")]


def first_login(host, since: float) -> float:
    """When sshd on the host first accepted a login after `since` (epoch seconds)."""
    lines = host.exec("journalctl", "-u", "ssh", "-o", "short-unix", "--no-pager", "--since", f"@{int(since)}").stdout
    return min(float(line.split()[0]) for line in lines.splitlines() if "Accepted publickey" in line)


def test_enroll_records_tags_on_existing_vms_given_by_id_or_inventory(azure, lab_host_factory, ansible_module,
                                                                      tmp_path):
    """sshca_hosts with vm_id, then sshca_hosts_group with sshca_vm_name: the enrollment lands on the
    VM's tags, a host without a VM is enrolled untagged and the summary says so, reruns write nothing."""
    emu, clients, subnet_id = azure
    work, _key, bootstrap_public = work_with_bootstrap(tmp_path)
    made = ansible_module("azure_vm", {"resource_group": "rg-enroll", "location": "westeurope", "name": "tagged-vm",
                                       "subnet_id": subnet_id, "ssh_public_key": bootstrap_public,
                                       "tags": {"owner": "team-a"}, "wait_for_ssh": True})
    assert made.changed and not made.failed, made.result.get("msg")
    [vm] = made.result["vms"]

    def vm_tags():
        return clients.compute.virtual_machines.get("rg-enroll", "tagged-vm").tags

    # sshca_hosts, the VM given by resource id (as terraform/modules/enrolled_vm passes it)
    extra = {"sshca_work_dir": str(work), "sshca_access_rules": RULES,
             "sshca_hosts": [{"name": "tagged-vm", "address": vm["public_ip"], "private_ip": vm["private_ip"],
                              "host_tags": {"role": "noob"}, "vm_id": vm["id"]}]}
    since = time.time()
    apply = run_playbook("enroll.yml", extra, tmp_path)
    assert apply.rc == 0, apply.output[-4000:]
    # The host keys came through Azure, before the first SSH login, and exactly those were signed.
    [vm_host] = [h for h in emu.lab_hosts() if h.address == vm["public_ip"]]
    [(asked, name)] = run_commands(emu, since)
    assert name == "tagged-vm" and asked < first_login(vm_host, since)
    assert '"host_keys": "pinned from Azure Run Command"' in apply.output
    pinned = (work / "pinned" / "tagged-vm").read_text().splitlines()
    assert sorted(line.split(None, 1)[1] for line in pinned) == sorted(
        " ".join(key.split()[:2]) for key in host_keys(vm_host))
    assert served_principals(vm["public_ip"]) == ["tagged-vm", vm["public_ip"], vm["private_ip"]]
    # The registry tags tell what the host serves, not what the controller keeps.
    serial, after, before = served_cert_facts(vm["public_ip"])
    assert vm_tags() == {"owner": "team-a", "role": "noob", "sshca-enrolled": after,
                         "sshca-host-cert-serial": serial, "sshca-host-cert-expires": before}
    assert f'"vm_tags": "recorded on {vm["id"]}"' in apply.output

    since = time.time()
    again = run_playbook("enroll.yml", extra, tmp_path)
    assert again.rc == 0, again.output[-4000:]
    assert again.changed("tagged-vm") == 0 and again.changed("localhost") == 0
    assert arm_writes(emu, since) == []

    # sshca_hosts_group: the same VM by name (a new host tag to record), and a host that is no VM
    plain = lab_host_factory([bootstrap_public], hostname="plain-1")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"enroll_me": {"hosts": {
        "tagged-vm": {"ansible_host": vm["public_ip"], "sshca_private_ip": vm["private_ip"],
                      "sshca_host_tags": {"role": "noob", "team": "blue"}, "sshca_vm_name": "tagged-vm"},
        "plain-1": {"ansible_host": plain.address, "sshca_host_tags": {"role": "web"},
                    "sshca_host_keys": host_keys(plain)}}}}))
    group = {"sshca_work_dir": str(work), "sshca_access_rules": RULES, "sshca_hosts_group": "enroll_me",
             "sshca_resource_group": "rg-enroll"}
    since = time.time()
    run = run_playbook("enroll.yml", group, tmp_path, extra_args=("-i", str(inventory)))
    assert run.rc == 0, run.output[-4000:]
    assert [w.split()[0] + " " + w.rsplit("/", 1)[-1] for w in arm_writes(emu, since)] == ["PATCH tagged-vm"]
    assert [name for _when, name in run_commands(emu, since)] == ["tagged-vm"]  # plain-1's keys were given
    assert vm_tags() == {"owner": "team-a", "role": "noob", "team": "blue", "sshca-enrolled": after,
                         "sshca-host-cert-serial": serial, "sshca-host-cert-expires": before}
    assert ('"vm_tags": "not recorded: no VM reference (vm_id, or vm_name with a resource group)"'
            in run.output)
    assert login(plain, work / "admin" / "id_ed25519", known_hosts=work / "known_hosts").returncode == 0

    since = time.time()
    again = run_playbook("enroll.yml", group, tmp_path, extra_args=("-i", str(inventory)))
    assert again.rc == 0, again.output[-4000:]
    assert again.changed("tagged-vm") == 0 and again.changed("plain-1") == 0
    assert arm_writes(emu, since) == []


@pytest.mark.parametrize("scenario", ["fleet", "lifecycle"])
def test_molecule_scenario(scenario):
    """extensions/molecule/<scenario> against a private emulator: check, converge, idempotence, verify."""
    proc = subprocess.run([sys.executable, str(REPO / "extensions" / "molecule" / "run.py"), scenario],
                          capture_output=True, text=True, timeout=2400, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
