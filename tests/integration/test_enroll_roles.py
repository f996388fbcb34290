"""playbooks/enroll.yml and its roles against lab hosts, judged by real sshd and real logins.

Each case runs through ansible-playbook the way users do: check -> apply -> idempotent check ->
idempotent apply, with the `changed` counts of the play recap asserted every time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
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


RULES = [
    {"principal": "grp:noob", "accounts": ["azureuser"], "host_tags": {"role": "noob"}},
    {"principal": "grp:platform", "accounts": ["azureuser", "ops"], "host_tags": {}},
    {"principal": "grp:web", "accounts": ["azureuser"], "host_tags": {"role": "web"}},
]


def test_enroll_existing_host_locks_it_down_and_reruns_with_its_certificate(lab_host_factory, tmp_path):
    work = tmp_path / "sshca"
    bootstrap = make_keypair(tmp_path, "bootstrap", "rsa")
    # The bootstrap key enroll.yml would make; given here so the lab host can authorize it first.
    (work / "bootstrap").mkdir(parents=True)
    for src, dest in ((bootstrap.private, "id_rsa"), (bootstrap.public, "id_rsa.pub")):
        (work / "bootstrap" / dest).write_bytes(src.read_bytes())
    key = work / "bootstrap" / "id_rsa"
    key.chmod(0o600)
    host = lab_host_factory([bootstrap.public_text], hostname="noob-1")
    extra = {"sshca_work_dir": str(work), "sshca_access_rules": RULES, "sshca_accounts": [{"name": "ops"}],
             "sshca_hosts": [{"name": "noob-1", "address": host.address, "private_ip": "10.0.1.4",
                              "host_tags": {"role": "noob"}}]}

    check = run_playbook("enroll.yml", extra, tmp_path, check=True)
    assert check.rc == 0, check.output[-4000:]
    assert check.changed("localhost") > 0
    assert '"would_enroll": true' in check.output
    assert not (work / "ca").exists()
    assert login(host, key).returncode == 0, "check mode must leave the bootstrap key working"
    assert host.exec("test", "-e", "/etc/ssh/sshd_config.d/10-sshca-enroll.conf", check=False).returncode == 1

    apply = run_playbook("enroll.yml", extra, tmp_path)
    assert apply.rc == 0, apply.output[-4000:]
    assert apply.changed("noob-1") > 0
    assert '"connected_with": "bootstrap key"' in apply.output
    assert PASSPHRASE not in apply.output

    refused = login(host, key)
    assert refused.returncode == 255 and "Permission denied (publickey)." in refused.stderr
    known_hosts = work / "known_hosts"
    admin = login(host, work / "admin" / "id_ed25519", "sudo", "-n", "id", "-un", known_hosts=known_hosts)
    assert admin.returncode == 0, admin.stderr
    assert admin.stdout.strip() == "root"
    # The host certificate answers for the name and the address: no trust on first use.
    assert "@cert-authority noob-1," in known_hosts.read_text()
    effective = host.exec("sshd", "-T").stdout.splitlines()
    assert "authorizedkeysfile none" in effective and "loglevel VERBOSE" in effective

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

    serial = host.exec("ssh-keygen", "-Lf", "/etc/ssh/ssh_host_ed25519_key-cert.pub").stdout
    check_again = run_playbook("enroll.yml", extra, tmp_path, check=True)
    assert check_again.rc == 0, check_again.output[-4000:]
    assert check_again.changed("noob-1") == 0
    again = run_playbook("enroll.yml", extra, tmp_path, extra_args=("-vvv",))
    assert again.rc == 0, again.output[-4000:]
    assert PASSPHRASE not in again.output
    assert again.changed("noob-1") == 0
    assert again.changed("localhost") == 0
    assert '"connected_with": "certificate"' in again.output
    assert host.exec("ssh-keygen", "-Lf", "/etc/ssh/ssh_host_ed25519_key-cert.pub").stdout == serial


def test_drop_in_is_not_placed_when_sshd_would_ignore_it(lab_host_factory, tmp_path):
    """A main sshd_config without `Include sshd_config.d` fails validation; nothing is written."""
    work = tmp_path / "sshca"
    bootstrap = make_keypair(tmp_path, "bootstrap", "rsa")
    host = lab_host_factory([bootstrap.public_text])
    host.exec("sed", "-i", "/^Include/d", "/etc/ssh/sshd_config")
    run = run_playbook("enroll.yml", {
        "sshca_work_dir": str(work), "sshca_bootstrap_key_path": str(bootstrap.private),
        "sshca_hosts": [{"name": "plain", "address": host.address}]}, tmp_path)
    assert run.rc != 0
    assert "/etc/ssh/sshd_config does not Include /etc/ssh/sshd_config.d" in run.output
    assert host.exec("test", "-e", "/etc/ssh/sshd_config.d/10-sshca-enroll.conf", check=False).returncode == 1
    assert login(host, bootstrap.private).returncode == 0


def host_cert_facts(path: Path) -> tuple[str, str, str]:
    """(serial, valid after, valid before) of a certificate, as real ssh-keygen reads it, in UTC."""
    text = subprocess.run(["ssh-keygen", "-Lf", str(path)], capture_output=True, text=True, check=True,
                          env={"TZ": "UTC", "PATH": "/usr/bin:/bin"}).stdout
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
    return [f"{r['method']} {r['path']}" for r in emu.requests(since)
            if r.get("write") and r["path"].startswith("/subscriptions/")]


def test_enroll_records_tags_on_existing_vms_given_by_id_or_inventory(azure, lab_host_factory, ansible_module,
                                                                      tmp_path):
    """sshca_hosts with vm_id, then sshca_hosts_group with sshca_vm_name: the enrollment lands on the
    VM's tags, a host without a VM is enrolled untagged and the summary says so, reruns write nothing."""
    emu, clients, subnet_id = azure
    work = tmp_path / "sshca"
    bootstrap = make_keypair(tmp_path, "bootstrap", "rsa")
    (work / "bootstrap").mkdir(parents=True)
    for src, dest in ((bootstrap.private, "id_rsa"), (bootstrap.public, "id_rsa.pub")):
        (work / "bootstrap" / dest).write_bytes(src.read_bytes())
    (work / "bootstrap" / "id_rsa").chmod(0o600)
    made = ansible_module("azure_vm", {"resource_group": "rg-enroll", "location": "westeurope", "name": "tagged-vm",
                                       "subnet_id": subnet_id, "ssh_public_key": bootstrap.public_text,
                                       "tags": {"owner": "team-a"}, "wait_for_ssh": True})
    assert made.changed and not made.failed, made.result.get("msg")
    [vm] = made.result["vms"]

    def vm_tags():
        return clients.compute.virtual_machines.get("rg-enroll", "tagged-vm").tags

    # sshca_hosts, the VM given by resource id (as terraform/modules/enrolled_vm passes it)
    extra = {"sshca_work_dir": str(work), "sshca_access_rules": RULES,
             "sshca_hosts": [{"name": "tagged-vm", "address": vm["public_ip"], "private_ip": vm["private_ip"],
                              "host_tags": {"role": "noob"}, "vm_id": vm["id"]}]}
    apply = run_playbook("enroll.yml", extra, tmp_path)
    assert apply.rc == 0, apply.output[-4000:]
    serial, after, before = host_cert_facts(work / "hosts" / "tagged-vm" / "ssh_host_ed25519_key-cert.pub")
    assert vm_tags() == {"owner": "team-a", "role": "noob", "sshca-enrolled": after,
                         "sshca-host-cert-serial": serial, "sshca-host-cert-expires": before}
    assert f'"vm_tags": "recorded on {vm["id"]}"' in apply.output

    since = time.time()
    again = run_playbook("enroll.yml", extra, tmp_path)
    assert again.rc == 0, again.output[-4000:]
    assert again.changed("tagged-vm") == 0 and again.changed("localhost") == 0
    assert arm_writes(emu, since) == []

    # sshca_hosts_group: the same VM by name (a new host tag to record), and a host that is no VM
    plain = lab_host_factory([bootstrap.public_text], hostname="plain-1")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"enroll_me": {"hosts": {
        "tagged-vm": {"ansible_host": vm["public_ip"], "sshca_private_ip": vm["private_ip"],
                      "sshca_host_tags": {"role": "noob", "team": "blue"}, "sshca_vm_name": "tagged-vm"},
        "plain-1": {"ansible_host": plain.address, "sshca_host_tags": {"role": "web"}}}}}))
    group = {"sshca_work_dir": str(work), "sshca_access_rules": RULES, "sshca_hosts_group": "enroll_me",
             "sshca_resource_group": "rg-enroll"}
    since = time.time()
    run = run_playbook("enroll.yml", group, tmp_path, extra_args=("-i", str(inventory)))
    assert run.rc == 0, run.output[-4000:]
    assert [w.split()[0] + " " + w.rsplit("/", 1)[-1] for w in arm_writes(emu, since)] == ["PATCH tagged-vm"]
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


@pytest.mark.parametrize("scenario", ["fleet"])
def test_molecule_scenario(scenario):
    """extensions/molecule/<scenario> against a private emulator: check, converge, idempotence, verify."""
    proc = subprocess.run([sys.executable, str(REPO / "extensions" / "molecule" / "run.py"), scenario],
                          capture_output=True, text=True, timeout=2400, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
