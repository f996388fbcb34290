"""Attacks on enrollment, judged by real sshd and real logins.

- An impostor answers for a VM at first contact: the run fails for that host before anything is
  signed, naming the host and both fingerprints.
- Key sources left open by other configuration (an AuthorizedKeysCommand drop-in, Match blocks that
  reopen authorized_keys): the host ends truly locked, or fails and rolls back; never `locked`
  while a key logs in.
- The controller is killed mid-lockout, with and without a reboot of the host: the bootstrap key
  logs in again within the window, and a rerun converges to locked.
- Break-glass through Run Command on a host whose user CA was replaced and whose rollback is disarmed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_enroll_roles
from test_enroll_roles import (
    PASSPHRASE,
    host_keys,
    login,
    run_playbook,
    work_with_bootstrap,
)

from conftest import REPO, collection_env, make_keypair
from labkit import hosts

pytestmark = pytest.mark.lab
azure = test_enroll_roles.azure  # the private emulator fixture

WINDOW = 45  # seconds of rollback window in the kill tests
LOCKOUT_DROPIN = "/etc/ssh/sshd_config.d/10-sshca-lockout.conf"
STATE = "/var/lib/sshca/lockout"
HELPER = "/usr/local/sbin/sshca-lockout"


def fingerprints(keys: list[str]) -> list[str]:
    listed = subprocess.run(["ssh-keygen", "-lf", "-"], input="\n".join(keys) + "\n", capture_output=True, text=True,
                            check=True).stdout
    return [line.split()[1] for line in listed.splitlines()]


def refused(host, key) -> bool:
    result = login(host, key)
    return result.returncode == 255 and "Permission denied (publickey)." in result.stderr


def make_vms(ansible_module, subnet_id, public_key, *names):
    made = ansible_module("azure_vm", {"resource_group": "rg-enroll", "location": "westeurope", "subnet_id": subnet_id,
                                       "ssh_public_key": public_key, "wait_for_ssh": True,
                                       "vms": [{"name": name} for name in names]})
    assert made.changed and not made.failed, made.result.get("msg")
    return {vm["name"]: vm for vm in made.result["vms"]}


def lab_host_at(emu, address: str) -> hosts.Host:
    [host] = [h for h in emu.lab_hosts() if h.address == address]
    return host


def test_impostor_at_first_contact_and_key_sources_left_open(azure, lab_host_factory, ansible_module, tmp_path):
    emu, _clients, subnet_id = azure
    work, bootstrap, bootstrap_public = work_with_bootstrap(tmp_path)
    vm = make_vms(ansible_module, subnet_id, bootstrap_public, "victim")["victim"]
    victim = lab_host_at(emu, vm["public_ip"])

    # The VM's address, as the controller resolves it, is answered by another machine.
    impostor = lab_host_factory([bootstrap_public], hostname="victim")

    # Hosts whose AuthorizedKeysCommand serves an attacker's key and the bootstrap key, as the Entra ID
    # login extension serves keys. entra-late: the extension's lines at the end of sshd_config, and a
    # Match block after them reopening authorized_keys. entra-early: in a drop-in sorting before ours.
    attacker = make_keypair(tmp_path, "attacker")
    serve_keys = (f"""printf '#!/bin/sh\\necho "%s"\\necho "%s"\\n' '{attacker.public_text.strip()}' \
'{bootstrap_public.strip()}' > /usr/local/bin/keys && chmod 0755 /usr/local/bin/keys\n""")
    command = "AuthorizedKeysCommand /usr/local/bin/keys %%u\\nAuthorizedKeysCommandUser root\\n"
    late = lab_host_factory([bootstrap_public], hostname="entra-late")
    late.exec("sh", "-c", serve_keys + f"printf '{command}Match User azureuser\\n    AuthorizedKeysFile "
                                       ".ssh/authorized_keys\\n' >> /etc/ssh/sshd_config && systemctl reload ssh")
    early = lab_host_factory([bootstrap_public], hostname="entra-early")
    early.exec("sh", "-c", serve_keys + f"printf '{command}' > /etc/ssh/sshd_config.d/05-entra.conf "
                                        "&& systemctl reload ssh")
    for host in (late, early):
        hosts.wait_for_ssh(host.address)  # a reloaded sshd re-executes: a moment without a listener
        assert login(host, attacker.private).returncode == 0, "the AuthorizedKeysCommand must admit keys at first"

    # match-first: a Match block in a drop-in that sorts before ours reopens authorized_keys.
    matchfirst = lab_host_factory([bootstrap_public], hostname="match-first")
    matchfirst.exec("sh", "-c", "printf 'Match User azureuser\\n    AuthorizedKeysFile .ssh/authorized_keys\\n' "
                                "> /etc/ssh/sshd_config.d/01-legacy.conf && systemctl reload ssh")
    hosts.wait_for_ssh(matchfirst.address)

    hosts_to_enroll = [{"name": "victim", "address": impostor.address, "vm_id": vm["id"]},
                       {"name": "entra-late", "address": late.address, "accept_new_host_keys": True},
                       {"name": "entra-early", "address": early.address, "host_keys": host_keys(early)},
                       {"name": "match-first", "address": matchfirst.address, "host_keys": host_keys(matchfirst)}]
    run = run_playbook("enroll.yml", {"sshca_work_dir": str(work), "sshca_rollback_seconds": 30,
                                      "sshca_hosts": hosts_to_enroll}, tmp_path)
    assert run.rc != 0
    assert PASSPHRASE not in run.output
    hosts_summary = run.summary()

    # The impostor: failed before anything was signed, naming the host and both fingerprints.
    [message] = re.findall(r'"msg": "(host_enroll on victim: [^"]*)"', run.output)[:1]
    for fingerprint in fingerprints(host_keys(victim)) + fingerprints(host_keys(impostor)):
        assert fingerprint in message, message
    assert "Nothing was signed" in message
    assert message in hosts_summary["victim"]["failed"] and hosts_summary["victim"]["locked"] is False
    assert not list((work / "hosts").glob("victim/*-cert.pub"))
    assert impostor.exec("test", "-e", "/etc/ssh/sshca", check=False).returncode == 1
    assert victim.exec("test", "-e", "/etc/ssh/sshca", check=False).returncode == 1

    # entra-late (whose keys were taken on first use, as the summary says): the lockout's global
    # settings come first and its `Match all` beats the Match block; real sshd refuses every key.
    assert hosts_summary["entra-late"]["host_keys"] == "TRUSTED ON FIRST USE (accept_new_host_keys), not pinned"
    assert hosts_summary["entra-late"]["locked"] is True
    assert refused(late, attacker.private)
    assert refused(late, bootstrap)
    assert login(late, work / "admin" / "id_ed25519", known_hosts=work / "known_hosts").returncode == 0

    # entra-early: locked with every key refused, or failed and never said locked. (OpenSSH 8.7 to 9.x
    # ignore an AuthorizedPrincipalsCommand that follows an AuthorizedKeysCommand, so on these Debian 12
    # hosts enrollment itself stops: the sshd -T -C check sees it and says so.)
    if hosts_summary["entra-early"]["locked"]:
        assert refused(early, attacker.private) and refused(early, bootstrap)
    else:
        assert re.search(r"on entra-early: sshd -T -C does not show the settings", run.output)
        assert early.exec("test", "-e", LOCKOUT_DROPIN, check=False).returncode == 1

    # match-first: the check sees the earlier Match block, fails and rolls back.
    assert re.search(r"key_lockout on match-first: sshd -T -C does not show the settings of 10-sshca-lockout.conf: "
                     r"for azureuser authorizedkeysfile is \.ssh/authorized_keys, not none.*rolled back", run.output)
    assert hosts_summary["match-first"]["locked"] is False
    assert login(matchfirst, bootstrap).returncode == 0
    assert matchfirst.exec("test", "-e", LOCKOUT_DROPIN, check=False).returncode == 1
    assert matchfirst.exec("test", "-e", f"{STATE}/pending", check=False).returncode == 1


HANGING_SSH = """#!/bin/sh
# The lockout's fresh-login proofs (ControlPath=none) hang, as if the controller died right there.
for arg in "$@"; do
  if [ "$arg" = ControlPath=none ]; then
    for target in "$@"; do case "$target" in *@*) break ;; esac; done
    touch "$SSHCA_TEST_FLAGS/${target#*@}"
    exec sleep 600
  fi
done
exec /usr/bin/ssh "$@"
"""


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


def kill_controller(controller: subprocess.Popen, marker: str) -> None:
    """SIGKILL ansible-playbook and what it started: its process group, and its workers, which
    leave the group (they call setsid) but carry the marker in their environment."""
    os.killpg(controller.pid, signal.SIGKILL)
    controller.wait()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes().split(b"\0"):
                os.kill(int(environ.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone already, or not ours to read


def test_controller_killed_mid_lockout_rolls_back_with_or_without_reboot(azure, ansible_module, tmp_path):
    emu, _clients, subnet_id = azure
    work, bootstrap, bootstrap_public = work_with_bootstrap(tmp_path)
    vms = make_vms(ansible_module, subnet_id, bootstrap_public, "stay", "reboot")
    stay, reboot = (lab_host_at(emu, vms[name]["public_ip"]) for name in ("stay", "reboot"))
    extra_vars = {"sshca_work_dir": str(work), "sshca_rollback_seconds": WINDOW,
                  "sshca_hosts": [{"name": name, "address": vm["public_ip"], "private_ip": vm["private_ip"],
                                   "vm_id": vm["id"]} for name, vm in vms.items()]}

    # Enroll with the proofs hanging; kill the controller once both hosts are mid-lockout.
    wrapper, flags = tmp_path / "bin", tmp_path / "flags"
    wrapper.mkdir()
    flags.mkdir()
    (wrapper / "ssh").write_text(HANGING_SSH)
    (wrapper / "ssh").chmod(0o755)
    (tmp_path / "vars-killed.json").write_text(json.dumps(extra_vars))
    env = collection_env({"SSHCA_CA_PASSPHRASE": PASSPHRASE, "SSHCA_TEST_FLAGS": str(flags)})
    env["PATH"] = f"{wrapper}:{env['PATH']}"
    controller = subprocess.Popen([str(Path(sys.executable).parent / "ansible-playbook"),
                                   str(REPO / "playbooks" / "enroll.yml"), "-e", f"@{tmp_path / 'vars-killed.json'}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path,
                                  start_new_session=True)
    try:
        wait_for(lambda: all((flags / h.address).exists() for h in (stay, reboot)) or controller.poll() is not None,
                 600, "both hosts mid-lockout")
    finally:
        kill_controller(controller, f"SSHCA_TEST_FLAGS={flags}")
    armed = {h.name: int(h.exec("cat", f"{STATE}/pending").stdout) for h in (stay, reboot)}
    assert refused(stay, bootstrap) and refused(reboot, bootstrap), "the lockout was live when the controller died"

    # A reboot inside the window: the boot unit rolls back before sshd starts.
    subprocess.run(["podman", "restart", "--time", "10", reboot.container], check=True, capture_output=True)
    hosts.wait_for_ssh(reboot.address)
    assert login(reboot, bootstrap).returncode == 0
    assert time.time() < armed[reboot.name] + WINDOW, "the host came back too late to tell the boot unit from the timer"
    boot_log = reboot.exec("journalctl", "-b", "-t", "sshca-lockout", "--no-pager").stdout
    assert "rolled back: the lockout was not confirmed in time" in boot_log

    # No reboot: the timer rolls back when the window closes.
    wait_for(lambda: login(stay, bootstrap).returncode == 0, armed[stay.name] + WINDOW + 15 - time.time(),
             "the bootstrap key logs in again on the host that was not rebooted")
    for host in (stay, reboot):
        assert host.exec("test", "-e", LOCKOUT_DROPIN, check=False).returncode == 1
        assert host.exec("test", "-e", f"{STATE}/pending", check=False).returncode == 1
    # A confirmation that comes after the rollback is refused: the proofs were of a config that is gone.
    late = stay.exec(HELPER, "confirm", check=False)
    assert late.returncode == 3 and "the rollback ran before the lockout was confirmed" in late.stderr

    # A rerun converges to locked.
    rerun = run_playbook("enroll.yml", extra_vars, tmp_path)
    assert rerun.rc == 0, rerun.output[-4000:]
    assert all(entry["locked"] for entry in rerun.summary().values())
    assert refused(stay, bootstrap) and refused(reboot, bootstrap)
    # And a rollback that comes after the confirmation does nothing.
    stay.exec(HELPER, "rollback")
    assert refused(stay, bootstrap)

    # Break-glass: the trusted CAs replaced by a foreign one, the lockout confirmed (no rollback armed).
    foreign = make_keypair(tmp_path, "foreign_ca")
    stay.exec("sh", "-c", f"echo '{foreign.public_text.strip()}' > /etc/ssh/sshca/trusted_user_ca_keys.pub")
    assert refused(stay, work / "admin" / "id_ed25519")
    assert stay.exec("test", "-e", f"{STATE}/confirmed", check=False).returncode == 0
    assert "sshca-lockout-rollback" not in stay.exec("systemctl", "list-timers", "--all", "--no-legend").stdout
    glass = run_playbook("break_glass.yml", {"sshca_break_glass": [{"id": vms["stay"]["id"]}]}, tmp_path)
    assert glass.rc == 0, glass.output[-4000:]
    assert login(stay, bootstrap).returncode == 0
    assert stay.exec("test", "-e", LOCKOUT_DROPIN, check=False).returncode == 1
    assert refused(reboot, bootstrap), "break-glass touches only the VMs it is given"
