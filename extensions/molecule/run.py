"""Run a Molecule scenario against the lab: a private Azure emulator with a resource group and a
subnet, the environment Azure SDK clients need, then `molecule test -s SCENARIO`.

  .venv/bin/python extensions/molecule/run.py fleet [extra molecule args]

The emulator and every lab host it made are removed afterwards, pass or fail. Offline: no
Galaxy (dependency disabled in config.yml, the scenarios' base), only loopback traffic.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "lab")]

from labkit import emulator  # noqa: E402
from tools.collection import link_collection  # noqa: E402

RESOURCE_GROUP = "rg-molecule"
LOCATION = "westeurope"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    scenario, extra = argv[0], argv[1:]
    venv_bin = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix=f"molecule-{scenario}-") as scratch:
        scratch_dir = Path(scratch)
        # A private collections folder: Molecule runs side by side with pytest, and must not share
        # (or disturb) the checkout's own link, collections_root() (seen: every host unreachable).
        collections = link_collection(scratch_dir / "collections")
        with emulator.running(scratch_dir / "emulator") as emu:
            env = dict(os.environ) | emu.env() | {
                "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
                "ANSIBLE_COLLECTIONS_PATH": str(collections),
                "ANSIBLE_NOCOLOR": "1",
                "SSHCA_MOLECULE_RESOURCE_GROUP": RESOURCE_GROUP,
                "SSHCA_MOLECULE_LOCATION": LOCATION,
                "SSHCA_MOLECULE_SUBNET_ID": emu.make_network(RESOURCE_GROUP, LOCATION, vnet="vnet-molecule"),
                "SSHCA_MOLECULE_WORK_DIR": str(scratch_dir / "work"),
                # A throwaway CA for this run only.
                "SSHCA_CA_PASSPHRASE": os.environ.get("SSHCA_CA_PASSPHRASE", "molecule-throwaway-ca"),
            }
            return subprocess.run([str(venv_bin / "molecule"), "test", "-s", scenario, *extra],
                                  cwd=REPO, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
