"""`make demo`: show a newcomer what sshca.azure does, against the local lab.

Today it covers the first two steps of the flow: a fresh bootstrap key, and a "VM" (a lab
host) that accepts it. Later steps (emulated Azure, enrollment, lockout) join as they land.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labkit import hosts, image

DEMO_HOST = "demo-vm"
WORK = Path.home() / ".sshca-demo"


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> int:
    WORK.mkdir(mode=0o700, exist_ok=True)
    key = WORK / "bootstrap_ed25519"
    say("Step 1: make a fresh bootstrap keypair (the key a new VM is created with).")
    for old in (key, key.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sshca-demo-bootstrap", "-f", str(key)],
                   check=True)
    rfc4716 = subprocess.run(["ssh-keygen", "-e", "-m", "RFC4716", "-f", f"{key}.pub"], capture_output=True,
                             text=True, check=True).stdout
    print(f"    private key: {key} (0600, never leaves this machine)")
    print("    public key in RFC 4716 form, as Azure's 'use existing public key' field takes it:")
    print("".join(f"      {line}\n" for line in rfc4716.splitlines()), end="")

    say("Step 2: start a lab host - a Debian container with systemd and OpenSSH that stands in for")
    print("    an Azure VM. Its sshd answers only on its own loopback address, its 'public IP'.")
    print(f"    host image: {image.ensure()}")
    host = hosts.start_host(DEMO_HOST, [Path(f"{key}.pub").read_text()], owner="demo", hostname="demo-vm")
    print(f"    {host.name} is up at {host.address}, admin user {host.admin_user}")

    say(f"Step 3: log in with the bootstrap key: ssh -i {key} {host.admin_user}@{host.address}")
    with tempfile.NamedTemporaryFile("w+") as known_hosts:
        # First contact is trust-on-first-use today; host certificates remove this step later.
        scan = subprocess.run(["ssh-keyscan", host.address], capture_output=True, text=True, check=True)
        known_hosts.write(scan.stdout)
        known_hosts.flush()
        login = host.ssh(key, "echo \"logged in to $(hostname) as $(id -un)\"", known_hosts=known_hosts.name)
    if login.returncode != 0:
        print(f"    login FAILED: {login.stderr.strip()}")
        return 1
    print(f"    {login.stdout.strip()}")

    say("Done. The host keeps running so you can try it yourself:")
    print(f"    ssh -o StrictHostKeyChecking=no -i {key} {host.admin_user}@{host.address}")
    print("    make lab-down   # removes every lab host")
    print("\nNext steps of the flow (emulated Azure, host certificates, key lockout) arrive with later")
    print("issues; see README.md.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
