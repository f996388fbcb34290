"""Enrollment into one work folder by runs in parallel and one after the other, and the day-2 input
that must be refused with one line and nothing changed, against the lab and judged by real logins.

The flow itself (enroll, enroll later, renew, revoke, decommission, status) is the Molecule scenario
extensions/molecule/lifecycle; this file keeps what that scenario does not show. One test, one fleet:
the lab hosts are the expensive part.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_enroll_roles import RECAP, login, run_playbook, user_cert

from conftest import collection_env, make_keypair
from labkit import emulator, hosts

pytestmark = pytest.mark.lab

RG = "rg-life"
LOCATION = "westeurope"
HOST_KRL = "/etc/ssh/sshca/revoked_keys"
RULES = [{"principal": "grp:ops", "accounts": ["azureuser"], "host_tags": {}}]
FLEET = {"pa": "web", "pb": "web", "pc": "db", "pd": "db", "pe": "web"}


def timed(label: str, started: float) -> None:
    """Wall times for the closing note; printed (pytest -s shows them), never asserted."""
    print(f"[lifecycle timing] {label}: {time.monotonic() - started:.1f} s")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fresh_login(address: str, key: Path, known_hosts: Path) -> subprocess.CompletedProcess:
    """A fresh login (no agent, config or multiplexing), host key checked against the host CA only."""
    argv = ["ssh", *hosts.SSH_BASE_OPTIONS, "-o", "LogLevel=ERROR", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-i", str(key), f"azureuser@{address}", "--", "true"]
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)


def by_config(work: Path, name: str, *command: str) -> subprocess.CompletedProcess:
    """`ssh -F <work>/ssh_config NAME`: what a user types (the command defaults to hostname)."""
    return subprocess.run(["ssh", "-F", str(work / "ssh_config"), "-o", "BatchMode=yes", name, "--",
                           *(command or ("hostname",))], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=60, check=False)


def refusal(run) -> str:
    """The `msg` that failed the run, one line: the top-level msg (the last on the line) of the last
    failed task or loop item (a rescued failure comes before it)."""
    assert run.rc != 0, run.output[-3000:]
    found = re.findall(r'^(?:fatal|failed): .*"msg": "((?:[^"\\]|\\.)*)"', run.output, re.M)
    assert found, run.output[-3000:]
    assert "\\n" not in found[-1], found[-1]
    return found[-1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A private emulator (its VMs are lab hosts) and five VMs made with one bootstrap key."""
    root = tmp_path_factory.mktemp("lifecycle")
    saved = dict(os.environ)
    with emulator.running(root / "emulator") as emu:
        os.environ.update(emu.env())
        try:
            work, vms = make_vms(emu, root)
            yield emu, root, work, vms
        finally:
            os.environ.clear()
            os.environ.update(saved)


IMAGES = ("ubuntu2404", "ubuntu2204")


def make_vms(emu: emulator.Client, root: Path) -> tuple[Path, dict]:
    """The five VMs, made by azure_vm with one bootstrap key (enroll.yml's, placed in the work folder)."""
    subnet = emu.make_network(RG, LOCATION, address_space="10.40.0.0/16", subnet_prefix="10.40.1.0/24")
    work = root / "sshca"
    (work / "bootstrap").mkdir(parents=True)
    bootstrap = make_keypair(work / "bootstrap", "id_rsa", "rsa")
    play = root / "vms.yml"
    out = root / "vms.json"
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"sshca.azure.azure_vm": {"resource_group": RG, "location": LOCATION, "subnet_id": subnet,
                                  "ssh_public_key": bootstrap.public_text, "wait_for_ssh": True,
                                  # Ubuntu 24.04 and 22.04 alternate: the lab boots socket-activated
                                  # trixie and ssh.service bookworm hosts, so day 2 runs on both.
                                  "vms": [{"name": n, "tags": {"role": r}, "image": IMAGES[i % 2]}
                                          for i, (n, r) in enumerate(FLEET.items())]},
         "register": "made"},
        {"ansible.builtin.copy": {"content": "{{ made.vms | to_json }}", "dest": str(out), "mode": "0600"}}],
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}}]))
    started = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(play)], capture_output=True, text=True, env=collection_env(), timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    timed("5 VMs made (lab hosts booted)", started)
    return work, {vm["name"]: vm for vm in json.loads(out.read_text())}


def target(vm: dict) -> dict:
    return {"name": vm["name"], "address": vm["public_ip"], "private_ip": vm["private_ip"],
            "host_tags": {"role": FLEET[vm["name"]]}, "vm_id": vm["id"]}


@dataclass
class Fleet:
    """What every stage works on: the emulator, the work folder, the VMs and their lab hosts."""

    emu: emulator.Client
    root: Path
    work: Path
    vms: dict

    def __post_init__(self):
        self.clients = self.emu.sdk_clients()
        by_address = {h.address: h for h in self.emu.lab_hosts()}
        self.host = {name: by_address[vm["public_ip"]] for name, vm in self.vms.items()
                     if vm["public_ip"] in by_address}
        self.admin = self.work / "admin" / "id_ed25519"
        self.known_hosts = self.work / "known_hosts"
        self.base = {"sshca_work_dir": str(self.work), "sshca_access_rules": RULES, "sshca_rollback_seconds": 120,
                     "sshca_resource_group": RG}

    def host_krls(self) -> dict[str, str]:
        return {name: h.exec("sha256sum", HOST_KRL).stdout.split()[0] for name, h in self.host.items()}


def test_fleets_share_a_work_folder_and_bad_input_changes_nothing(lab):
    fleet = Fleet(*lab)
    enroll_in_parallel_then_later(fleet)
    hosts_report_their_certificate_expiry(fleet)
    refuse_revoking_the_admin(fleet)
    decommission_previewed_then_twice(fleet)
    refuse_bad_revocations(fleet)
    refuse_untagged_decommission(fleet)


def enroll_in_parallel_then_later(fleet: Fleet) -> None:
    """Four enroll runs in parallel into one empty work folder end with one CA; a fifth host enrolled
    later leaves the first four reachable by name."""
    root, work, vms, base = fleet.root, fleet.work, fleet.vms, fleet.base
    first = ["pa", "pb", "pc", "pd"]
    for name in first:
        (root / name).mkdir()  # each run its own folder for its vars file; one work folder for all
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda name: run_playbook("enroll.yml", dict(base, sshca_hosts=[target(vms[name])]),
                                                       root / name), first))
    timed("4 enroll runs in parallel", started)
    for run in runs:
        assert run.rc == 0, run.output[-4000:]
    host_ca = (work / "ca" / "host_ca.pub").read_text().split()[:2]
    lines = [line for line in fleet.known_hosts.read_text().splitlines() if line.startswith("@cert-authority")]
    assert len(lines) == 4 and {tuple(line.split()[2:4]) for line in lines} == {tuple(host_ca)}, "one CA"
    for name in first:
        assert by_config(work, name).stdout.strip() == name, name

    # Check mode for a host joining the enrolled fleet says what it would do and leaves it as it was.
    preview = run_playbook("enroll.yml", dict(base, sshca_hosts=[target(vms["pe"])]), root, check=True)
    assert preview.rc == 0, preview.output[-4000:]
    assert preview.changed("pe") > 0
    newcomer = fleet.host["pe"]
    assert newcomer.exec("test", "-e", "/etc/ssh/sshd_config.d/10-sshca-enroll.conf", check=False).returncode == 1
    assert not list((work / "hosts" / "pe").iterdir()), "no certificate signed in check mode"
    assert login(newcomer, work / "bootstrap" / "id_rsa").returncode == 0, "the bootstrap key still logs in"

    later = run_playbook("enroll.yml", dict(base, sshca_hosts=[target(vms["pe"])]), root)
    assert later.rc == 0, later.output[-4000:]
    for name in FLEET:  # the first fleet is still reachable by name, host keys checked against the CA
        reached = by_config(work, name)
        assert reached.returncode == 0 and reached.stdout.strip() == name, (name, reached.stderr)


EXPIRY_UNIT = "sshca-host-cert-check.service"
EXPIRY_STATUS = "/var/lib/sshca/host-cert-status.json"


def check_expiry(host: hosts.Host) -> tuple[subprocess.CompletedProcess, list[dict], dict]:
    """Start the host's expiry check as its timer would; its journal records (this run only) and status file."""
    started = host.exec("systemctl", "start", EXPIRY_UNIT, check=False)
    invocation = host.exec("systemctl", "show", "-p", "InvocationID", "--value", EXPIRY_UNIT).stdout.strip()
    records = []
    # The service's output reaches the journal after it exits: moments when idle, seconds on a busy machine.
    deadline = time.monotonic() + 60
    while not records and time.monotonic() < deadline:
        host.exec("journalctl", "--sync", check=False)
        shown = host.exec("journalctl", "-o", "json", f"_SYSTEMD_INVOCATION_ID={invocation}",
                          "SYSLOG_IDENTIFIER=sshca-host-cert-check").stdout
        records = [json.loads(line) for line in shown.splitlines() if line.strip()]
        if not records:
            time.sleep(0.5)
    return started, records, json.loads(host.exec("cat", EXPIRY_STATUS).stdout)


def hosts_report_their_certificate_expiry(fleet: Fleet) -> None:
    """Enrollment's timer reads the host certificates with the host's own ssh-keygen (OpenSSH 10.0 on
    trixie, 9.2 on bookworm): info while fresh, a warning with less than a third of the life left, err
    (a failed unit) once expired, each in the journal and in the status file."""
    for name in ("pa", "pb"):
        host = fleet.host[name]
        assert host.exec("systemctl", "is-enabled", "sshca-host-cert-check.timer").stdout.strip() == "enabled"
        started, records, status = check_expiry(host)
        kept = fleet.work / "hosts" / name / "ssh_host_ed25519_key-cert.pub"  # the controller's copy
        served = subprocess.run(["ssh-keygen", "-L", "-f", str(kept)], capture_output=True, text=True,
                                check=True).stdout
        assert started.returncode == 0, started.stderr
        assert status["state"] == "ok", status
        ed25519 = next(c for c in status["certificates"] if c["path"].endswith("ed25519_key-cert.pub"))
        assert f"Serial: {ed25519['serial']}\n" in served and ed25519["key_id"] == f"host:{name}"
        assert {r["PRIORITY"] for r in records} == {"6"}, records

    host, cert = fleet.host["pa"], "/etc/ssh/ssh_host_ed25519_key-cert.pub"
    throwaway = fleet.root / "throwaway-ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(throwaway)], check=True)
    public = fleet.root / "pa_host_key.pub"
    public.write_text(host.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout)
    host.exec("cp", "-p", cert, f"{cert}.keep")
    try:
        for window, serial, state, priority, rc in (("-50m:+10m", 41, "renewal-due", "4", 0),
                                                    ("-2h:-1h", 42, "expired", "3", 1)):
            subprocess.run(["ssh-keygen", "-q", "-s", str(throwaway), "-h", "-I", "host:pa", "-n", "pa",
                            "-z", str(serial), "-V", window, str(public)], check=True)
            line = (fleet.root / "pa_host_key-cert.pub").read_text().strip()
            host.exec("sh", "-c", f"printf '%s\\n' '{line}' > {cert}")
            started, records, status = check_expiry(host)
            assert started.returncode == rc, (state, started.stderr)
            assert status["state"] == state, status
            [mine] = [c for c in status["certificates"] if c["path"] == cert]
            assert mine["serial"] == serial and mine["state"] == state, mine
            assert mine["seconds_left"] <= 600 if state == "renewal-due" else mine["seconds_left"] == 0, mine
            [said] = [r for r in records if r["MESSAGE"].startswith(f"host certificate {cert} ")]
            assert said["PRIORITY"] == priority and f"serial {serial}, key id host:pa) {state}" in said["MESSAGE"]
    finally:
        host.exec("mv", "-f", f"{cert}.keep", cert)
    assert check_expiry(host)[2]["state"] == "ok", "the enrolled certificate back in place"

    # Turned off (bookworm, ssh.service): a rerun disables and stops the timer, then removes its files.
    off = run_playbook("enroll.yml", dict(fleet.base, sshca_hosts=[target(fleet.vms["pb"])],
                                          host_enroll_expiry_check=False), fleet.root / "pb")
    assert off.rc == 0, off.output[-3000:]
    pb = fleet.host["pb"]
    for query in ("is-enabled", "is-active"):
        assert pb.exec("systemctl", query, "sshca-host-cert-check.timer", check=False).returncode != 0, query
    for path in ("/etc/systemd/system/sshca-host-cert-check.timer", "/etc/systemd/system/" + EXPIRY_UNIT,
                 "/usr/local/libexec/sshca-host-cert-check.py"):
        assert pb.exec("test", "-e", path, check=False).returncode == 1, path


def refuse_bad_revocations(fleet: Fleet) -> None:
    """An unknown serial, an unreadable key file and a malformed KRL on the controller are each refused
    with one line before any host is touched: every host keeps its KRL, and the admin still logs in."""
    root, work, base = fleet.root, fleet.work, fleet.base
    krl = work / "revoked_keys"
    before = fleet.host_krls()
    controller_krl = krl.read_bytes()  # a user certificate and the retired host's are revoked

    unknown = run_playbook("revoke.yml", dict(base, sshca_revoke=[{"serial": 987654321, "ca": "user"}]), root)
    assert re.fullmatch(r"revoked\[0\]\.serial: 987654321 was not issued by CA SHA256:\S+ .*", refusal(unknown))
    missing = root / "leaked.pub"
    unreadable = run_playbook("revoke.yml", dict(base, sshca_revoke=[{"public_key_path": str(missing)}]), root)
    assert re.fullmatch(rf"revoked\[0\].*: cannot read {re.escape(str(missing))}: No such file or directory",
                        refusal(unreadable))
    assert krl.read_bytes() == controller_krl, "nothing written on the controller"

    # ATTACK: a KRL cut short on the controller (sshd would refuse every key with it) is never pushed.
    made = root / "made.krl"
    subprocess.run(["ssh-keygen", "-q", "-k", "-f", str(made)], check=True)
    krl.write_bytes(made.read_bytes()[:16])
    malformed = run_playbook("revoke.yml", dict(base, sshca_revoke=[]), root)
    assert re.fullmatch(rf"\S*{krl.name}: is not a valid KRL \(.+\)", refusal(malformed))
    assert krl.read_bytes() == made.read_bytes()[:16]
    assert fleet.host_krls() == before
    for name in fleet.host:
        assert fresh_login(fleet.vms[name]["public_ip"], fleet.admin, fleet.known_hosts).returncode == 0, name


def refuse_revoking_the_admin(fleet: Fleet) -> None:
    """ATTACK: a KRL revoking the automation's own admin certificate (by its key id, or its serial) would
    lock every day-2 run out of every host once pushed. It is refused on the controller with one line
    naming the item, before anything is written there or on any host, and the admin still logs in; an
    ordinary revoke (a user certificate) then goes through and real sshd refuses that certificate."""
    root, work, base, known_hosts = fleet.root, fleet.work, fleet.base, fleet.known_hosts
    admin_cert = work / "admin" / "id_ed25519-cert.pub"
    before = fleet.host_krls()
    refused = r"revoked\[0\]\.{}: would revoke keep_admitted\[0\] \(\S+/admin/id_ed25519-cert\.pub: key id " \
              r"sshca-enroll, serial {}\), which must stay admitted; nothing was written"

    by_key_id = run_playbook("revoke.yml", dict(base, sshca_revoke=[{"key_id": "sshca-enroll", "ca": "admin"}]), root)
    assert re.fullmatch(refused.format("key_id", r"\d+"), refusal(by_key_id))
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(admin_cert)], text=True, capture_output=True, check=True)
    serial = re.search(r"Serial: (\d+)", shown.stdout)[1]
    by_serial = run_playbook("revoke.yml", dict(base, sshca_revoke=[{"serial": int(serial), "ca": "admin"}]), root)
    assert re.fullmatch(refused.format("serial", serial), refusal(by_serial))
    assert sorted(work.glob("revoked_keys*")) == [], "nothing written on the controller"
    assert fleet.host_krls() == before, "no host touched"
    for name in fleet.host:
        assert fresh_login(fleet.vms[name]["public_ip"], fleet.admin, known_hosts).returncode == 0, name

    mallory = user_cert(work, "mallory", ["grp:ops"])
    address = fleet.vms["pa"]["public_ip"]
    assert fresh_login(address, mallory, known_hosts).returncode == 0
    ordinary = run_playbook("revoke.yml", dict(base, sshca_revoke=[{"certificate_path": f"{mallory}-cert.pub"}]), root)
    assert ordinary.rc == 0, ordinary.output[-4000:]
    after = fleet.host_krls()
    assert all(after[name] != before[name] for name in before), "the KRL pushed to every host"
    denied = fresh_login(address, mallory, known_hosts)
    assert denied.returncode == 255 and "Permission denied" in denied.stderr, denied.stderr
    assert fresh_login(address, fleet.admin, known_hosts).returncode == 0


def decommission_previewed_then_twice(fleet: Fleet) -> None:
    """Check mode lists what would go and writes nothing; a second run changes nothing (what goes, and
    that it is gone everywhere, is the Molecule lifecycle scenario's)."""
    root, base, emu = fleet.root, fleet.base, fleet.emu
    retire = dict(base, sshca_decommission=["pe"])
    since = time.time()
    preview = run_playbook("decommission.yml", retire, root, check=True)
    assert preview.rc == 0, preview.output[-4000:]
    for what in ("delete VM", "delete network interface", "delete public IP", "delete OS disk"):
        assert what in preview.output, what
    assert [r for r in emu.requests(since) if r.get("write")] == []
    assert by_config(fleet.work, "pe").stdout.strip() == "pe"

    gone = run_playbook("decommission.yml", retire, root)
    assert gone.rc == 0, gone.output[-4000:]
    assert "pe" not in {vm.name for vm in fleet.clients.compute.virtual_machines.list(RG)}
    since = time.time()
    twice = run_playbook("decommission.yml", retire, root)
    assert twice.rc == 0, twice.output[-4000:]
    changed = {name: int(count) for name, _ok, count, *_rest in RECAP.findall(twice.output)}
    assert set(changed.values()) == {0}, changed
    assert [r for r in emu.requests(since) if r.get("write")] == []
    fleet.host.pop("pe")


def refuse_untagged_decommission(fleet: Fleet) -> None:
    """A VM without the enrollment tags is refused with one line, and stays."""
    root, base, emu = fleet.root, fleet.base, fleet.emu
    emu.set_faults(lab_hosts=False)
    make_untagged_vm(root, "stray")
    since = time.time()
    refused = run_playbook("decommission.yml", dict(base, sshca_decommission=["stray"]), root)
    assert re.fullmatch(r"decommission: VM \S+/virtualMachines/stray carries no sshca-enrolled tag, so sshca\.azure "
                        r"did not enroll it; nothing was changed", refusal(refused))
    assert [r for r in emu.requests(since) if r.get("write")] == []
    assert fleet.clients.compute.virtual_machines.get(RG, "stray").name == "stray"


def make_untagged_vm(root: Path, name: str) -> None:
    """A VM with no sshca tags, made by azure_vm in the fleet's subnet."""
    key = make_keypair(root, name, "ed25519")
    play = root / f"{name}.yml"
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                 "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                                 "tasks": [{"sshca.azure.azure_vm": {
                                     "resource_group": RG, "location": LOCATION, "name": name, "vnet_name": "vnet",
                                     "subnet_name": "hosts", "ssh_public_key": key.public_text}}]}]))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(play)], capture_output=True, text=True, env=collection_env(), timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
