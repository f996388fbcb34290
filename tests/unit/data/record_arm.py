"""Record what ARM returns for VMs azure_vm made, for the planning unit tests.

    .venv/bin/python tests/unit/data/record_arm.py      (needs the lab: root and podman)

Starts a lab emulator of its own, creates two VMs with azure_vm's own code (different in every
option azure_vm compares), and writes the raw JSON of the GETs azure_vm_info and azure_vm issue
(VM with its instance view, NIC, public IP), with the options used, to arm_recorded.json. Run it
again only when the requests azure_vm sends change; the tests check the recording against the
layout of Azure's published REST examples, not against this module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))

from labkit import emulator  # noqa: E402
from labkit.collection import make_importable  # noqa: E402

make_importable()
from ansible_collections.sshca.azure.plugins.module_utils import _azure, _azure_vm, _azure_vm_desired  # noqa: E402

RG, LOCATION = "rg-recorded", "westeurope"


def public_key(folder: Path, name: str, key_type: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", name, "-f", str(folder / name)], check=True)
    return (folder / (name + ".pub")).read_text().strip()


def vms(folder: Path, subnet_id: str, nsg_id: str) -> dict[str, dict]:
    """The options of each VM, as a playbook would give them (None: left out)."""
    return {
        "web-1": {"ssh_public_key": public_key(folder, "web-1", "ed25519"), "subnet_id": subnet_id,
                  "image": "ubuntu2204", "dns_label": "web-1-recorded", "zone": "1",
                  "tags": {"role": "web", "a=b": "c=d"}},
        "db-1": {"ssh_public_key": public_key(folder, "db-1", "rsa"), "subnet_id": subnet_id, "nsg_id": nsg_id,
                 "public_ip": False, "zone": "2", "identity": "system", "admin_username": "ops",
                 "size": "Standard_D2s_v5", "os_disk": {"size_gb": 64, "storage_account_type": "StandardSSD_LRS",
                                                        "delete_option": "Detach"}},
    }


def params(emu, options: dict) -> dict:
    env = emu.env()
    base = dict.fromkeys(_azure_vm_desired.TOP_LEVEL_SPEC)
    base.update({k: s.get("default") for k, s in _azure_vm_desired.TOP_LEVEL_SPEC.items() if "default" in s})
    base.update(resource_group=RG, location=LOCATION, state="present", name=None, id=None, concurrency=2,
                timeout=600, auth_source="credential", subscription_id=env["AZURE_SUBSCRIPTION_ID"],
                tenant=env["AZURE_TENANT_ID"], client_id=env["AZURE_CLIENT_ID"], secret=env["AZURE_CLIENT_SECRET"],
                cloud_environment="AzureCloud", arm_endpoint=emu.base_url, authority_host=emu.base_url)
    base["vms"] = [dict(name=name, **opts) for name, opts in options.items()]
    return base


def raw(call, *args, **kwargs) -> dict:
    """The JSON body ARM answered to the SDK's own GET (its own api-version)."""
    seen = {}
    call(*args, raw_response_hook=lambda response: seen.setdefault("body", response.http_response.json()), **kwargs)
    return seen["body"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, emulator.running(Path(tmp) / "emulator") as emu:
        subnet_id = emu.make_network(RG, LOCATION, address_space="10.40.0.0/16", subnet_prefix="10.40.1.0/24")
        nsg = emu.sdk_clients().network.network_security_groups.begin_create_or_update(
            RG, "nsg-recorded", {"location": LOCATION}).result()
        options = vms(Path(tmp), subnet_id, nsg.id)
        run_params = params(emu, options)
        with _azure.AzureSession(run_params) as session:
            results, failed = _azure_vm.run(session, run_params, check_mode=False)
            assert not failed, [r["msg"] for r in results]
            recorded = {"_about": __doc__.strip().splitlines()[0] + " See record_arm.py.",
                        "subscription_id": session.subscription_id, "resource_group": RG, "location": LOCATION,
                        "subnet_id": subnet_id}
            for name, opts in options.items():
                vm = raw(session.compute.virtual_machines.get, RG, name, expand="instanceView")
                nic_id = vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
                nic = raw(session.network.network_interfaces.get, RG, nic_id.rsplit("/", 1)[1])
                pip_ref = nic["properties"]["ipConfigurations"][0]["properties"].get("publicIPAddress")
                pip = raw(session.network.public_ip_addresses.get, RG, pip_ref["id"].rsplit("/", 1)[1]) \
                    if pip_ref else None
                recorded[name] = {"options": opts, "vm": vm, "nic": nic, "pip": pip}
    (HERE / "arm_recorded.json").write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
