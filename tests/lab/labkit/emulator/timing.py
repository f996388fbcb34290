"""Time one VM creation through the emulator with the real SDK, against a bare lab host boot.

    cd tests/lab && ../../.venv/bin/python -m labkit.emulator.timing [--vms 2]

Prints, per VM: PUT answered, poller done (Succeeded: sshd answers), first SSH login; then the
median against a bare `hosts.start_host` measured in the same run (the emulator's share is the
difference). The body of a `bench/` script: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from .. import hosts
from . import down, up


def main() -> int:
    options = argparse.ArgumentParser()
    options.add_argument("--vms", type=int, default=2)
    args = options.parse_args()

    from azure.identity import ClientSecretCredential
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.compute import models as cm
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.network import models as nm
    from azure.mgmt.resource.resources import ResourceManagementClient

    work = Path(tempfile.mkdtemp(prefix="emulator-timing-"))
    emu = up(work / "state")
    env = emu.env()
    os.environ.update({k: env[k] for k in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")})
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = Path(f"{key}.pub").read_text()
    credential = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
                                        authority=env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)
    sub, url = env["AZURE_SUBSCRIPTION_ID"], env["SSHCA_ARM_ENDPOINT"]
    resources = ResourceManagementClient(credential, sub, base_url=url)
    network = NetworkManagementClient(credential, sub, base_url=url)
    compute = ComputeManagementClient(credential, sub, base_url=url)
    try:
        resources.resource_groups.create_or_update("rg", {"location": "westeurope"})
        subnet = network.virtual_networks.begin_create_or_update("rg", "vnet", nm.VirtualNetwork(
            location="westeurope", address_space=nm.AddressSpace(address_prefixes=["10.0.0.0/16"]),
            subnets=[nm.Subnet(name="vms", address_prefix="10.0.1.0/24")])).result().subnets[0]
        figures = []
        for index in range(args.vms):
            name = f"t{index}"
            pip = network.public_ip_addresses.begin_create_or_update("rg", f"{name}-ip", nm.PublicIPAddress(
                location="westeurope", sku=nm.PublicIPAddressSku(name="Standard"),
                public_ip_allocation_method="Static")).result()
            nic = network.network_interfaces.begin_create_or_update("rg", f"{name}-nic", nm.NetworkInterface(
                location="westeurope", ip_configurations=[nm.NetworkInterfaceIPConfiguration(
                    name="ipconfig1", subnet=nm.Subnet(id=subnet.id),
                    public_ip_address=nm.PublicIPAddress(id=pip.id))])).result()
            vm = cm.VirtualMachine(
                location="westeurope", hardware_profile=cm.HardwareProfile(vm_size="Standard_B1s"),
                storage_profile=cm.StorageProfile(image_reference=cm.ImageReference(
                    publisher="Canonical", offer="ubuntu-24_04-lts", sku="server", version="latest")),
                os_profile=cm.OSProfile(computer_name=name, admin_username="azureuser",
                                        linux_configuration=cm.LinuxConfiguration(ssh=cm.SshConfiguration(
                                            public_keys=[cm.SshPublicKey(
                                                path="/home/azureuser/.ssh/authorized_keys", key_data=public)]))),
                network_profile=cm.NetworkProfile(network_interfaces=[cm.NetworkInterfaceReference(id=nic.id)]))
            start = time.monotonic()
            poller = compute.virtual_machines.begin_create_or_update("rg", name, vm)
            put = time.monotonic() - start
            poller.result()
            done = time.monotonic() - start
            host = next(h for h in emu.lab_hosts() if h.address == pip.ip_address)
            login = host.ssh(key, "true")
            assert login.returncode == 0, login.stderr
            first_login = time.monotonic() - start
            figures.append(done)
            print(f"vm {name}: PUT answered {put:.2f} s, Succeeded {done:.2f} s, first SSH login {first_login:.2f} s")
        start = time.monotonic()
        hosts.start_host(f"{emu.host_prefix}bare", [public], owner="emulator")
        bare = time.monotonic() - start
        median = statistics.median(figures)
        print(f"bare lab host boot (start_host until sshd answers): {bare:.2f} s")
        print(f"median VM create through the emulator: {median:.2f} s = {median / bare:.2f} x a bare host boot "
              f"(LRO polls every Retry-After = {emu.faults()['retry_after']} s)")
    finally:
        down(work / "state")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
