"""`make demo`: the whole sshca.azure flow against the local lab, in about a minute.

1. the lab's Azure emulator with a resource group and a subnet (what Terraform would make);
2. `ansible-playbook playbooks/enroll.yml`: bootstrap keypair, a VM, host certificate,
   principals, enrollment tags, commit-confirmed key lockout, proofs;
3. the bootstrap key refused, a certificate login accepted with the host checked only against
   the host CA (no trust-on-first-use).

The emulator and its VM keep running afterwards so you can try it yourself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

LAB = Path(__file__).resolve().parent
REPO = LAB.parent.parent
sys.path[:0] = [str(REPO), str(LAB)]

from labkit import emulator, hosts, image  # noqa: E402
from tools.collection import collection_env, collections_root  # noqa: E402

DEMO = Path.home() / ".sshca-demo"
WORK = DEMO / "work"
EMULATOR_STATE = DEMO / "emulator"
RESOURCE_GROUP = "rg-sshca-demo"
LOCATION = "westeurope"
VM = "demo-vm"


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def ansible_env(emu: emulator.Client) -> dict[str, str]:
    return collection_env(emu.env() | {
        # A CA for this demo only; set SSHCA_CA_PASSPHRASE yourself to choose it.
        "SSHCA_CA_PASSPHRASE": os.environ.get("SSHCA_CA_PASSPHRASE", "sshca-demo-only"),
    })


def ssh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", *hosts.SSH_BASE_OPTIONS, "-o", "LogLevel=ERROR", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60)


def main() -> int:
    say("Step 1: the lab's Azure emulator, with a resource group and a subnet.")
    print(f"    host image: {image.ensure()}")
    emulator.down(EMULATOR_STATE)  # a previous demo's VM and state go first
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True, mode=0o700)
    emu = emulator.up(EMULATOR_STATE)
    os.environ.update(emu.env())  # the SDK reads the emulator's CA bundle from here
    subnet_id = emu.make_network(RESOURCE_GROUP, LOCATION, vnet="vnet-demo", address_space="10.40.0.0/16",
                                 subnet_prefix="10.40.1.0/24")
    print(f"    emulator at {emu.base_url}; subnet {subnet_id.rsplit('/', 3)[-3]}/hosts in {RESOURCE_GROUP}")

    say("Step 2: ansible-playbook playbooks/enroll.yml - bootstrap key, VM, host certificate, lockout, proofs.")
    variables = WORK.parent / "enroll-vars.json"
    variables.write_text(json.dumps({
        "sshca_work_dir": str(WORK), "sshca_resource_group": RESOURCE_GROUP, "sshca_location": LOCATION,
        "sshca_subnet_id": subnet_id, "sshca_fleet": [{"name": VM, "host_tags": {"role": "demo"}}],
        "sshca_access_rules": [{"principal": "grp:demo", "accounts": ["azureuser"], "host_tags": {"role": "demo"}}],
    }))
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(REPO / "playbooks" / "enroll.yml"),
                          "-e", f"@{variables}"], capture_output=True, text=True, env=ansible_env(emu), cwd=DEMO)
    recap = run.stdout[run.stdout.rfind("TASK [Show the summary]"):]
    print("".join(f"    {line}\n" for line in recap.splitlines()[1:] if line.strip()), end="")
    if run.returncode != 0:
        print(run.stdout[-3000:] + run.stderr[-2000:])
        return 1
    summary = json.loads(recap[recap.index("{"):recap.index("\nPLAY RECAP")])["sshca_summary | default({})"]
    address = summary[VM]["address"]

    say(f"Step 3: the bootstrap key alone: ssh -i {WORK}/bootstrap/id_rsa azureuser@{address}")
    refused = ssh("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                  "-i", str(WORK / "bootstrap" / "id_rsa"), f"azureuser@{address}", "true")
    print(f"    exit {refused.returncode}: {refused.stderr.strip()}")

    say(f"Step 4: a certificate login, the host checked only against the host CA: ssh -F {WORK}/ssh_config {VM}")
    accepted = subprocess.run(["ssh", "-F", str(WORK / "ssh_config"), "-o", "BatchMode=yes", "-o", "ControlPath=none",
                               VM, "echo \"logged in to $(hostname) as $(id -un)\""],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    print(f"    {accepted.stdout.strip() or accepted.stderr.strip()}")
    print(f"    known_hosts holds only: {(WORK / 'known_hosts').read_text().splitlines()[1][:70]}...")
    if refused.returncode != 255 or accepted.returncode != 0:
        return 1

    say("Done. The emulator and the VM keep running; try:")
    print(f"    ssh -F {WORK}/ssh_config {VM}")
    print("    # with SSHCA_CA_PASSPHRASE set to the demo's (tests/lab/demo.py):")
    print(f"    ANSIBLE_COLLECTIONS_PATH={collections_root()} \\")
    print(f"      ansible-playbook playbooks/user_cert.yml -e sshca_work_dir={WORK} "
          "-e '{\"sshca_user_principals\": [\"grp:demo\"]}'   # a 16 h certificate for you")
    print(f"    tests/lab/labctl down --state-dir {EMULATOR_STATE}   # removes the emulator and its VM")
    return 0


if __name__ == "__main__":
    sys.exit(main())
