"""`make demo`: the day-to-day loop of sshca.azure against the local lab, each step the real command and
its real outcome.

1. one enroll.yml run creates and enrolls two VMs, tagged role=web and role=db;
2. user_cert.yml gives alice (grp:web) a 16 h certificate and her known_hosts and ssh_config: web lets
   her in, db refuses her, and the bootstrap key is refused on both;
3. alice's laptop is lost: revoke.yml revokes her certificate; bob's (also grp:web) still works;
4. renew.yml --force re-signs the host certificates: the serial ssh-keyscan -c shows changes, and bob's
   strict login notices nothing;
5. decommission.yml retires the db VM: gone from Azure (the emulator), known_hosts and status.yml;
6. status.yml's table.

The lab VMs are Debian containers standing in for Ubuntu (see tests/lab/README.md).
`run_demo(state_dir, out)` does it all and returns the Outcomes, so tests/integration/test_demo.py
asserts each one; `python tests/lab/demo.py` runs it in ~/.sshca-demo, removing the previous run first,
and leaves the emulator and the web VM running for you to try.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

LAB = Path(__file__).resolve().parent
REPO = LAB.parent.parent
sys.path[:0] = [str(REPO), str(LAB)]

from labkit import emulator, image  # noqa: E402
from tools.collection import collection_env, collections_root  # noqa: E402

DEFAULT_STATE = Path.home() / ".sshca-demo"
RESOURCE_GROUP = "rg-sshca-demo"
LOCATION = "westeurope"
WEB, DB = "demo-web", "demo-db"
ACCESS_RULES = [{"principal": "grp:web", "accounts": ["azureuser"], "host_tags": {"role": "web"}},
                {"principal": "grp:db", "accounts": ["azureuser"], "host_tags": {"role": "db"}}]
PASSPHRASE = "sshca-demo-only"  # noqa: S105 - the demo's throwaway CA; set SSHCA_CA_PASSPHRASE to choose it


@dataclass
class Login:
    """One real ssh login: its exit code and the line it printed (stdout, else the last stderr line)."""

    rc: int
    said: str

    @property
    def refused(self) -> bool:
        return self.rc == 255 and "Permission denied (publickey)" in self.said


@dataclass
class Outcomes:
    """What each step's real commands returned, for the reader and for tests/integration/test_demo.py."""

    playbooks: dict[str, int] = field(default_factory=dict)  # playbook run -> exit code
    enrolled: dict[str, str] = field(default_factory=dict)  # VM -> address
    alice_web: Login | None = None
    alice_db: Login | None = None
    bootstrap: dict[str, Login] = field(default_factory=dict)
    alice_web_revoked: Login | None = None
    bob_web_after_revoke: Login | None = None
    serial_before_renew: int | None = None
    serial_after_renew: int | None = None
    bob_web_after_renew: Login | None = None
    vms_after_decommission: list[str] = field(default_factory=list)
    known_hosts_after_decommission: str = ""
    status_hosts: list[str] = field(default_factory=list)
    status_table: list[str] = field(default_factory=list)


class Demo:
    def __init__(self, state_dir: Path, out: TextIO):
        self.state = Path(state_dir)
        self.work = self.state / "work"  # the operator's work folder (CAs, admin key, its known_hosts)
        self.people = self.state / "people"  # alice's and bob's own ~/.ssh stand-ins
        self.out = out
        self.outcomes = Outcomes()
        self.env: dict[str, str] = {}

    def say(self, text: str) -> None:
        print(f"\n==> {text}", file=self.out, flush=True)

    def show(self, text: str) -> None:
        print(f"    {text}", file=self.out, flush=True)

    # --- the real commands ------------------------------------------------------------------------

    def playbook(self, label: str, name: str, variables: dict, *args: str) -> str:
        """ansible-playbook [args] playbooks/<name> -e @<label>.json; prints the command and how it ended."""
        path = self.state / f"{label}.json"
        path.write_text(json.dumps(variables, indent=1))
        self.show(f"$ ansible-playbook {shlex.join(args)}{' ' if args else ''}playbooks/{name} -e @{path}")
        run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), *args,
                              str(REPO / "playbooks" / name), "-e", f"@{path}"],
                             capture_output=True, text=True, env=self.env, cwd=self.state, check=False)
        output = run.stdout + run.stderr
        (self.state / f"{label}.log").write_text(output)
        self.outcomes.playbooks[label] = run.returncode
        recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+).*failed=(\d+)", output, re.M)
        self.show(f"  exit {run.returncode}; " + ", ".join(f"{host} changed={c} failed={f}" for host, c, f in recap)
                  + ("" if run.returncode == 0 else f" (see {self.state / f'{label}.log'})"))
        if run.returncode != 0:
            for line in output.splitlines():
                if line.startswith("fatal:"):
                    self.show("  " + line[:300])
        return output

    def ssh(self, *args: str) -> Login:
        self.show("$ ssh " + shlex.join(args))
        run = subprocess.run(["ssh", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                             check=False)
        lines = run.stdout.strip().splitlines() or run.stderr.strip().splitlines() or [""]
        login = Login(run.returncode, lines[-1])
        self.show(f"  exit {login.rc}: {login.said}")
        return login

    def person(self, name: str) -> Path:
        return self.people / name

    def as_person(self, name: str, host: str, command: str = "echo logged in to $(hostname) as $(id -un)") -> Login:
        return self.ssh("-F", str(self.person(name) / "ssh_config"), host, command)

    def served_serial(self, host: str) -> int | None:
        """The serial of the Ed25519 host certificate sshd serves (ssh-keyscan -c | ssh-keygen -L)."""
        address = self.outcomes.enrolled[host]
        self.show(f"$ ssh-keyscan -c -t ed25519 {address} | ssh-keygen -L -f - | grep Serial")
        scan = subprocess.run(["ssh-keyscan", "-c", "-t", "ed25519", address], capture_output=True, text=True,
                              timeout=30, check=False).stdout
        shown = subprocess.run(["ssh-keygen", "-L", "-f", "-"], input=scan, capture_output=True, text=True,
                               check=False).stdout
        found = re.search(r"Serial: (\d+)", shown)
        self.show(f"  Serial: {found.group(1) if found else '(none)'}")
        return int(found.group(1)) if found else None

    # --- the steps ------------------------------------------------------------------------------

    def start_clean(self) -> emulator.Client:
        self.say("Step 0: a clean lab: the previous demo's emulator, VMs and files go; a new emulator starts.")
        self.show(f"host image: {image.ensure()}")
        emulator.down(self.state / "emulator")
        for leftover in (self.work, self.people):
            shutil.rmtree(leftover, ignore_errors=True)
        self.work.mkdir(parents=True, mode=0o700)
        self.people.mkdir(mode=0o700)
        emu = emulator.up(self.state / "emulator")
        self.env = collection_env(emu.env() | {
            "SSHCA_CA_PASSPHRASE": os.environ.get("SSHCA_CA_PASSPHRASE", PASSPHRASE)})
        os.environ.update({name: emu.env()[name] for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")})
        self.subnet = emu.make_network(RESOURCE_GROUP, LOCATION, vnet="vnet-demo", address_space="10.40.0.0/16",
                                       subnet_prefix="10.40.1.0/24")
        self.show(f"emulator at {emu.base_url}; resource group {RESOURCE_GROUP}, subnet vnet-demo/hosts")
        return emu

    def enroll(self, emu: emulator.Client) -> None:
        self.say(f"Step 1: one enroll run creates {WEB} (role=web) and {DB} (role=db) and enrolls both.")
        self.playbook("enroll", "enroll.yml", {
            "sshca_work_dir": str(self.work), "sshca_resource_group": RESOURCE_GROUP, "sshca_location": LOCATION,
            "sshca_subnet_id": self.subnet, "sshca_access_rules": ACCESS_RULES,
            "sshca_fleet": [{"name": WEB, "host_tags": {"role": "web"}}, {"name": DB, "host_tags": {"role": "db"}}]})
        for vm in emu.sdk_clients().compute.virtual_machines.list(RESOURCE_GROUP):
            if "sshca-enrolled" in (vm.tags or {}):
                self.outcomes.enrolled[vm.name] = self.address_of(emu, vm.name)
        self.show(f"enrolled (registry tags on the VMs): {self.outcomes.enrolled}")

    @staticmethod
    def address_of(emu: emulator.Client, vm: str) -> str:
        """The VM's public IP, as Azure has it: VM -> network interface -> public IP."""
        clients = emu.sdk_clients()
        nic_id = clients.compute.virtual_machines.get(RESOURCE_GROUP, vm).network_profile.network_interfaces[0].id
        nic = clients.network.network_interfaces.get(RESOURCE_GROUP, nic_id.rsplit("/", 1)[1])
        ip_id = nic.ip_configurations[0].public_ip_address.id
        return clients.network.public_ip_addresses.get(RESOURCE_GROUP, ip_id.rsplit("/", 1)[1]).ip_address

    def issue(self, name: str, principals: list[str]) -> None:
        """user_cert.yml as that person runs it: hosts read from Azure, the published host CA key."""
        folder = self.person(name)
        self.playbook(f"user_cert-{name}", "user_cert.yml", {
            "sshca_resource_group": RESOURCE_GROUP, "sshca_user_principals": principals, "sshca_user_key_id": name,
            "sshca_user_cert_validity": "16h", "sshca_ca_path": str(self.work / "ca"),
            "sshca_host_ca_public_key_path": str(self.work / "ca" / "host_ca.pub"),
            "sshca_user_key_path": str(folder / "id_ed25519"), "sshca_known_hosts_path": str(folder / "known_hosts"),
            "sshca_ssh_config_path": str(folder / "ssh_config")})

    def who_may_log_in_where(self) -> None:
        self.say("Step 2: user_cert.yml gives alice and bob (grp:web) 16 h certificates, known_hosts and ssh_config.")
        self.issue("alice", ["grp:web"])
        self.issue("bob", ["grp:web"])
        shown = subprocess.run(["ssh-keygen", "-L", "-f", str(self.person("alice") / "id_ed25519-cert.pub")],
                               capture_output=True, text=True, check=False).stdout
        self.show("alice's certificate: " + "; ".join(
            line.strip() for line in shown.splitlines() if re.match(r"\s+(Key ID|Serial|Valid):", line)))
        self.say("alice logs in to the web VM by name, the host checked against the host CA only: accepted.")
        self.outcomes.alice_web = self.as_person("alice", WEB)
        self.say("alice tries the db VM: her principal grp:web maps to no account there, so sshd refuses.")
        self.outcomes.alice_db = self.as_person("alice", DB)
        self.say("The bootstrap key the VMs were created with is refused on both (key logins are locked out).")
        for vm in (WEB, DB):
            self.outcomes.bootstrap[vm] = self.ssh(
                "-i", str(self.work / "bootstrap" / "id_rsa"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.person('alice') / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                f"azureuser@{self.outcomes.enrolled[vm]}", "true")

    def revoke(self) -> None:
        self.say("Step 3: alice's laptop is lost: revoke.yml revokes her certificate and pushes the KRL to the hosts.")
        shown = subprocess.run(["ssh-keygen", "-L", "-f", str(self.person("alice") / "id_ed25519-cert.pub")],
                               capture_output=True, text=True, check=True).stdout
        serial = int(re.search(r"Serial: (\d+)", shown).group(1))
        self.playbook("revoke", "revoke.yml", {"sshca_work_dir": str(self.work), "sshca_resource_group": RESOURCE_GROUP,
                                               "sshca_revoke": [{"serial": serial, "ca": "user",
                                                                 "reason": "laptop lost"}]})
        self.say("alice's login to the web VM is now refused; bob's still works.")
        self.outcomes.alice_web_revoked = self.as_person("alice", WEB)
        self.outcomes.bob_web_after_revoke = self.as_person("bob", WEB)

    def renew(self) -> None:
        self.say("Step 4: renew.yml with forced renewal re-signs the host certificates; clients notice nothing.")
        self.outcomes.serial_before_renew = self.served_serial(WEB)
        self.playbook("renew", "renew.yml", {"sshca_work_dir": str(self.work), "sshca_resource_group": RESOURCE_GROUP,
                                             "sshca_renew_force": True})
        self.outcomes.serial_after_renew = self.served_serial(WEB)
        self.outcomes.bob_web_after_renew = self.as_person("bob", WEB)

    def decommission(self, emu: emulator.Client) -> None:
        self.say(f"Step 5: decommission.yml retires {DB}: VM, disk, NIC and IP deleted, its client entries removed.")
        self.playbook("decommission", "decommission.yml", {
            "sshca_work_dir": str(self.work), "sshca_resource_group": RESOURCE_GROUP, "sshca_decommission": [DB]})
        self.outcomes.vms_after_decommission = sorted(
            vm.name for vm in emu.sdk_clients().compute.virtual_machines.list(RESOURCE_GROUP))
        self.outcomes.known_hosts_after_decommission = (self.work / "known_hosts").read_text()
        self.show(f"VMs in {RESOURCE_GROUP} now: {', '.join(self.outcomes.vms_after_decommission) or 'none'}")
        self.show("the operator's known_hosts names: " + ", ".join(
            line.split()[1].split(",")[0] for line in self.outcomes.known_hosts_after_decommission.splitlines()
            if line.startswith("@cert-authority")))

    def status(self) -> None:
        self.say("Step 6: status.yml: the fleet as the registry tags and the hosts themselves tell it.")
        report = self.state / "status.json"
        inventory = self.state / "fleet.enrolled_hosts.yml"  # the registry: the VMs' tags, read from Azure
        inventory.write_text(json.dumps({"plugin": "sshca.azure.enrolled_hosts", "resource_groups": [RESOURCE_GROUP]}))
        output = self.playbook("status", "status.yml", {"sshca_work_dir": str(self.work),
                                                        "sshca_hosts_group": "sshca_enrolled",
                                                        "sshca_status_json": str(report)}, "-i", str(inventory))
        shown = re.search(r'TASK \[Show the table\].*?"msg": (\[.*?\])\n}', output, re.S)
        self.outcomes.status_table = json.loads(shown.group(1)) if shown else []
        for line in self.outcomes.status_table:
            self.show(line)
        if report.exists():
            self.outcomes.status_hosts = [row["host"] for row in json.loads(report.read_text())["hosts"]]


def run_demo(state_dir: Path, out: TextIO = sys.stdout) -> Outcomes:
    """Every step against a fresh lab under state_dir; the emulator and the web VM are left running."""
    demo = Demo(state_dir, out)
    demo.state.mkdir(parents=True, exist_ok=True)
    emu = demo.start_clean()
    demo.enroll(emu)
    if sorted(demo.outcomes.enrolled) == sorted([WEB, DB]):
        demo.who_may_log_in_where()
        demo.revoke()
        demo.renew()
        demo.decommission(emu)
        demo.status()
    return demo.outcomes


def expected(outcomes: Outcomes) -> dict[str, bool]:
    """Each outcome the demo promises, true when the real commands showed it."""
    def ok(login: Login | None) -> bool:
        return login is not None and login.rc == 0

    def refused(login: Login | None) -> bool:
        return login is not None and login.refused

    return {
        "every playbook succeeded": bool(outcomes.playbooks) and set(outcomes.playbooks.values()) == {0},
        "both VMs enrolled in one run": sorted(outcomes.enrolled) == sorted([WEB, DB]),
        "alice logs in to web": ok(outcomes.alice_web) and outcomes.alice_web.said.endswith("as azureuser"),
        "alice refused on db": refused(outcomes.alice_db),
        "bootstrap key refused on both": sorted(outcomes.bootstrap) == sorted([WEB, DB]) and all(
            refused(login) for login in outcomes.bootstrap.values()),
        "revoked certificate refused": refused(outcomes.alice_web_revoked),
        "another user's certificate still works": ok(outcomes.bob_web_after_revoke),
        "renewal changed the served serial": None not in (outcomes.serial_before_renew, outcomes.serial_after_renew)
        and outcomes.serial_before_renew != outcomes.serial_after_renew,
        "strict login works after renewal": ok(outcomes.bob_web_after_renew),
        "db gone from Azure": outcomes.vms_after_decommission == [WEB],
        "db gone from known_hosts": f"@cert-authority {WEB}," in outcomes.known_hosts_after_decommission
        and f"{DB}," not in outcomes.known_hosts_after_decommission,
        "db gone from status": outcomes.status_hosts == [WEB],
        "status table printed": len(outcomes.status_table) == 2 and outcomes.status_table[1].startswith(WEB),
    }


def main() -> int:
    outcomes = run_demo(DEFAULT_STATE)
    results = expected(outcomes)
    print("\n==> What the demo showed:")
    for promise, held in results.items():
        print(f"    {'ok  ' if held else 'FAIL'} {promise}")
    emulator_dir = DEFAULT_STATE / "emulator"
    print("\n==> Left running: the lab's Azure emulator and the web VM (a Podman container). Try:")
    print(f"    ssh -F {DEFAULT_STATE / 'people' / 'bob' / 'ssh_config'} {WEB}")
    passphrase = "$SSHCA_CA_PASSPHRASE" if "SSHCA_CA_PASSPHRASE" in os.environ else PASSPHRASE  # never echo yours
    print(f"    SSHCA_CA_PASSPHRASE={passphrase} ANSIBLE_COLLECTIONS_PATH={collections_root()} \\")
    print(f"      ansible-playbook playbooks/status.yml -e sshca_work_dir={DEFAULT_STATE / 'work'}")
    print(f"    Remove it all with: tests/lab/labctl down --state-dir {emulator_dir}   (or `make demo-down`);")
    print("    the next `make demo` removes it first anyway.")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
