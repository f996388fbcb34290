"""The lab's Azure emulator, judged by the real Azure SDK clients the collection uses.

Only the endpoint, the credential's authority and the CA bundle differ from Azure; TLS is
verified against the emulator's CA, and every socket the SDKs open must stay on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import itertools
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute import models as cm
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network import models as nm
from azure.mgmt.resource.resources import ResourceManagementClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from labkit import emulator, hosts

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
LOCATION = "westeurope"
RG = "rg-lab"


# --- loopback guard: any attempt to reach another address fails the module ------------------

class LoopbackGuard:
    def __init__(self):
        self.violations: list[str] = []
        self._getaddrinfo, self._connect = socket.getaddrinfo, socket.socket.connect

    @staticmethod
    def _loopback(host) -> bool:
        if host in ("localhost",):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def __enter__(self):
        guard = self

        def getaddrinfo(host, *args, **kwargs):
            if not guard._loopback(host if isinstance(host, str) else (host or b"").decode()):
                guard.violations.append(f"name lookup {host}")
                raise OSError(f"lab: {host} is not loopback")
            return guard._getaddrinfo(host, *args, **kwargs)

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not guard._loopback(address[0]):
                guard.violations.append(f"connect {address}")
                raise OSError(f"lab: {address} is not loopback")
            return guard._connect(sock, address)

        socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
        return self

    def __exit__(self, *exc):
        socket.getaddrinfo, socket.socket.connect = self._getaddrinfo, self._connect


@pytest.fixture(scope="module")
def guard():
    with LoopbackGuard() as active:
        yield active
    assert active.violations == [], "traffic left loopback"


# --- one emulator per module -----------------------------------------------------------------

@pytest.fixture(scope="module")
def emu(tmp_path_factory, guard):
    state_dir = tmp_path_factory.mktemp("emulator")
    client = emulator.up(state_dir)
    saved = {k: os.environ.get(k) for k in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    os.environ.update({k: client.env()[k] for k in saved})
    try:
        yield client
    finally:
        emulator.down(state_dir)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Azure:
    def __init__(self, emu: emulator.Client):
        env = emu.env()
        self.env = env
        self.sub = env["AZURE_SUBSCRIPTION_ID"]
        self.credential = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"],
                                                 env["AZURE_CLIENT_SECRET"], authority=env["AZURE_AUTHORITY_HOST"],
                                                 disable_instance_discovery=True)
        endpoint = env["SSHCA_ARM_ENDPOINT"]
        self.resources = ResourceManagementClient(self.credential, self.sub, base_url=endpoint)
        self.network = NetworkManagementClient(self.credential, self.sub, base_url=endpoint)
        self.compute = ComputeManagementClient(self.credential, self.sub, base_url=endpoint)


@pytest.fixture(scope="module")
def azure(emu) -> Azure:
    return Azure(emu)


@pytest.fixture(scope="module")
def network(azure):
    azure.resources.resource_groups.create_or_update(RG, {"location": LOCATION})
    nsg = azure.network.network_security_groups.begin_create_or_update(RG, "nsg-ssh", nm.NetworkSecurityGroup(
        location=LOCATION, security_rules=[nm.SecurityRule(
            name="ssh", protocol="Tcp", access="Allow", direction="Inbound", priority=100, source_address_prefix="*",
            source_port_range="*", destination_address_prefix="*", destination_port_range="22")])).result()
    vnet = azure.network.virtual_networks.begin_create_or_update(RG, "vnet-lab", nm.VirtualNetwork(
        location=LOCATION, address_space=nm.AddressSpace(address_prefixes=["10.20.0.0/16"]),
        subnets=[nm.Subnet(name="vms", address_prefix="10.20.1.0/24",
                           network_security_group=nm.NetworkSecurityGroup(id=nsg.id))])).result()
    return {"nsg": nsg, "vnet": vnet, "subnet": vnet.subnets[0]}


def keygen(folder: Path, name: str, *args: str) -> Path:
    private = folder / name
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-C", name, "-f", str(private), *args], check=True)
    return private


UBUNTU_2404 = cm.ImageReference(publisher="Canonical", offer="ubuntu-24_04-lts", sku="server", version="latest")
UBUNTU_2204 = cm.ImageReference(publisher="Canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts-gen2",
                                version="latest")


def vm_model(name: str, nic_id: str, key_data: str, admin: str = "azureuser",
             image: cm.ImageReference = UBUNTU_2404) -> cm.VirtualMachine:
    return cm.VirtualMachine(
        location=LOCATION,
        hardware_profile=cm.HardwareProfile(vm_size="Standard_B1s"),
        storage_profile=cm.StorageProfile(
            image_reference=image,
            os_disk=cm.OSDisk(create_option="FromImage", delete_option="Delete")),
        os_profile=cm.OSProfile(computer_name=name, admin_username=admin, linux_configuration=cm.LinuxConfiguration(
            disable_password_authentication=True,
            ssh=cm.SshConfiguration(public_keys=[cm.SshPublicKey(path=f"/home/{admin}/.ssh/authorized_keys",
                                                                 key_data=key_data)]))),
        network_profile=cm.NetworkProfile(network_interfaces=[cm.NetworkInterfaceReference(id=nic_id)]),
    )


def make_nic(azure: Azure, network: dict, name: str, public_ip: bool = True) -> nm.NetworkInterface:
    pip = None
    if public_ip:
        pip = azure.network.public_ip_addresses.begin_create_or_update(RG, f"{name}-ip", nm.PublicIPAddress(
            location=LOCATION, sku=nm.PublicIPAddressSku(name="Standard"),
            public_ip_allocation_method="Static")).result()
    return azure.network.network_interfaces.begin_create_or_update(RG, f"{name}-nic", nm.NetworkInterface(
        location=LOCATION, ip_configurations=[nm.NetworkInterfaceIPConfiguration(
            name="ipconfig1", subnet=nm.Subnet(id=network["subnet"].id),
            public_ip_address=nm.PublicIPAddress(id=pip.id) if pip else None)])).result()


@pytest.fixture(scope="module")
def vms(azure, network, tmp_path_factory):
    """Two VMs: Ubuntu 22.04 given an RSA key in RFC 4716 form, 24.04 an OpenSSH ed25519 line."""
    folder = tmp_path_factory.mktemp("keys")
    rsa_key = keygen(folder, "boot_rsa", "-t", "rsa", "-b", "3072")
    rfc4716 = subprocess.run(["ssh-keygen", "-e", "-f", f"{rsa_key}.pub"], capture_output=True, text=True,
                             check=True).stdout
    ed_key = keygen(folder, "boot_ed25519", "-t", "ed25519")
    specs = {"vm-rfc": (rsa_key, rfc4716, UBUNTU_2204),
             "vm-openssh": (ed_key, Path(f"{ed_key}.pub").read_text(), UBUNTU_2404)}
    pollers = {}
    for name, (_key, key_data, image) in specs.items():
        nic = make_nic(azure, network, name)
        pollers[name] = azure.compute.virtual_machines.begin_create_or_update(RG, name, vm_model(
            name, nic.id, key_data, image=image))
    created = {name: poller.result() for name, poller in pollers.items()}
    return {name: {"vm": vm, "key": specs[name][0],
                   "ip": azure.network.public_ip_addresses.get(RG, f"{name}-ip").ip_address}
            for name, vm in created.items()}


def ssh(address: str, key: Path, *command: str, user: str = "azureuser") -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", *hosts.SSH_BASE_OPTIONS, "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-i", str(key), f"{user}@{address}", "--", *command],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)


# --- VMs are real hosts ----------------------------------------------------------------------

def test_vms_from_rfc4716_and_openssh_keys_let_their_bootstrap_keys_in(azure, vms):
    for name, vm in vms.items():
        assert vm["vm"].provisioning_state == "Succeeded"
        view = azure.compute.virtual_machines.instance_view(RG, name)
        assert "PowerState/running" in [s.code for s in view.statuses]
        login = ssh(vm["ip"], vm["key"], "hostname; id -un; sudo -n true && echo sudo-ok")
        assert login.returncode == 0, login.stderr
        assert login.stdout.split() == [name, "azureuser", "sudo-ok"]


def test_ubuntu_2404_vms_start_sshd_from_a_socket_and_2204_vms_from_a_service(azure, vms):
    """Debian stand-ins, not Ubuntu: trixie with ssh.socket for 24.04, bookworm with ssh.service for 22.04."""
    for name, (debian, sshd_unit) in {"vm-openssh": ("13", "ssh.socket"), "vm-rfc": ("12", "ssh.service")}.items():
        view = azure.compute.virtual_machines.instance_view(RG, name)
        assert (view.os_name, view.os_version) == ("debian", debian)
        out = ssh(vms[name]["ip"], vms[name]["key"], "cut -d. -f1 /etc/debian_version; "
                  "systemctl is-enabled ssh.socket ssh.service || true").stdout.split()
        assert out[0] == debian
        assert dict(zip(["ssh.socket", "ssh.service"], out[1:], strict=True))[sshd_unit] == "enabled", out


def test_public_ip_without_vm_only_reserves_an_address(azure, network, emu):
    pip = azure.network.public_ip_addresses.begin_create_or_update(RG, "spare-ip", nm.PublicIPAddress(
        location=LOCATION, sku=nm.PublicIPAddressSku(name="Standard"), public_ip_allocation_method="Static")).result()
    taken = {p.ip_address for p in azure.network.public_ip_addresses.list(RG) if p.name != "spare-ip"}
    assert ipaddress.ip_address(pip.ip_address).is_loopback and pip.ip_address not in taken
    assert pip.ip_address not in {h.address for h in emu.lab_hosts()}


def test_patch_tags_list_and_expand_instance_view(azure, vms):
    updated = azure.compute.virtual_machines.begin_update(
        RG, "vm-openssh", cm.VirtualMachineUpdate(tags={"sshca-enrolled": "true"})).result()
    assert updated.tags == {"sshca-enrolled": "true"}
    assert azure.compute.virtual_machines.get(RG, "vm-openssh").tags == {"sshca-enrolled": "true"}
    in_group = {vm.name for vm in azure.compute.virtual_machines.list(RG)}
    everywhere = {vm.name for vm in azure.compute.virtual_machines.list_all()}
    assert {"vm-rfc", "vm-openssh"} <= in_group and {"vm-rfc", "vm-openssh"} <= everywhere
    expanded = azure.compute.virtual_machines.get(RG, "vm-rfc", expand="instanceView")
    assert "PowerState/running" in [s.code for s in expanded.instance_view.statuses]


def test_patch_applies_identity_and_os_disk_delete_option_in_place(azure, vms):
    patched = azure.compute.virtual_machines.begin_update(RG, "vm-rfc", cm.VirtualMachineUpdate(
        identity=cm.VirtualMachineIdentity(type="SystemAssigned"),
        storage_profile=cm.StorageProfile(os_disk=cm.OSDisk(create_option="FromImage",
                                                            delete_option="Detach")))).result()
    assert patched.identity.type == "SystemAssigned" and patched.identity.principal_id
    assert patched.storage_profile.os_disk.delete_option == "Detach"
    again = azure.compute.virtual_machines.get(RG, "vm-rfc")
    assert again.identity.principal_id == patched.identity.principal_id


# --- Run Command -------------------------------------------------------------------------------

def run_shell(azure: Azure, vm: str, *lines: str, parameters=()):
    return azure.compute.virtual_machines.begin_run_command(RG, vm, cm.RunCommandInput(
        command_id="RunShellScript", script=list(lines),
        parameters=[cm.RunCommandInputParameter(name=f"arg{n}", value=v) for n, v in enumerate(parameters, 1)]))


def test_run_command_runs_the_script_as_root_in_the_vm_and_answers_as_azure_does(azure, vms, emu):
    host = next(h for h in emu.lab_hosts() if h.address == vms["vm-rfc"]["ip"])
    since = time.time()
    result = run_shell(azure, "vm-rfc", "cat /etc/ssh/ssh_host_ed25519_key.pub", 'id -un >&2; echo "$2|$1" >&2',
                       "exit 3", parameters=["a b", "c"]).result()
    host_key = host.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout
    assert host_key.startswith("ssh-ed25519 ")
    [status] = result.value
    expected = ("ProvisioningState/succeeded", "Info", "Provisioning succeeded")
    assert (status.code, status.level, status.display_status) == expected
    # RunCommandLinux reports "succeeded" whatever the script's exit status.
    assert status.message == f"Enable succeeded: \n[stdout]\n{host_key}\n[stderr]\nroot\nc|a b\n"
    log = emu.requests(since)
    post = next(e for e in log if e["method"] == "POST" and e["path"].endswith("/vm-rfc/runCommand"))
    assert post["status"] == 202 and post["retry_after"] == "1"
    assert post["run_command"]["commandId"] == "RunShellScript"
    assert post["run_command"]["script"][0] == "cat /etc/ssh/ssh_host_ed25519_key.pub"
    assert [e["status"] for e in log if e["op"] == "GET operations"][-1] == 200


def test_run_command_refuses_what_azure_refuses(azure, vms, network, emu):
    with pytest.raises(ResourceNotFoundError) as unknown:
        azure.compute.virtual_machines.begin_run_command(RG, "vm-rfc", cm.RunCommandInput(
            command_id="RunPowerShellScript", script=["Get-Date"]))
    assert unknown.value.error.code == "NotFound"
    azure.compute.virtual_machines.begin_deallocate(RG, "vm-rfc").result()
    try:
        view = azure.compute.virtual_machines.instance_view(RG, "vm-rfc")
        assert "PowerState/deallocated" in [s.code for s in view.statuses]
        assert ssh(vms["vm-rfc"]["ip"], vms["vm-rfc"]["key"], "true").returncode != 0  # the host is down
        with pytest.raises(HttpResponseError) as deallocated:
            run_shell(azure, "vm-rfc", "true")
        assert deallocated.value.status_code == 409 and deallocated.value.error.code == "OperationNotAllowed"
    finally:
        azure.compute.virtual_machines.begin_start(RG, "vm-rfc").result()
    assert run_shell(azure, "vm-rfc", "echo back").result().value[0].message.startswith(
        "Enable succeeded: \n[stdout]\nback\n")
    assert ssh(vms["vm-rfc"]["ip"], vms["vm-rfc"]["key"], "true").returncode == 0


def test_lro_polling_follows_retry_after(azure, network, emu):
    emu.set_faults(retry_after=1, lro_seconds={"default": 0, "publicIPAddresses": 2.5})
    try:
        since = time.time()
        azure.network.public_ip_addresses.begin_create_or_update(RG, "slow-ip", nm.PublicIPAddress(
            location=LOCATION, sku=nm.PublicIPAddressSku(name="Standard"),
            public_ip_allocation_method="Static")).result()
    finally:
        emu.set_faults(lro_seconds={"default": 0})
    log = emu.requests(since)
    put = next(e for e in log if e["method"] == "PUT" and e["path"].endswith("/slow-ip"))
    assert put["status"] == 201 and put["retry_after"] == "1"
    polls = [e for e in log if e["op"] == "GET operations"]
    assert len(polls) >= 3  # InProgress for 2.5 s, polled once at once, then every Retry-After
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(polls)]
    assert all(gap >= 0.9 for gap in gaps), gaps


def test_throttling_and_5xx_at_30_percent_are_retried_by_azure_core(azure, network, emu):
    # At most 3 faults in a row per call: azure-core retries a failed status 3 times, and 30 %
    # independent faults would otherwise sink about 1 call in 120 (0.3 ** 4).
    emu.set_faults(retry_after=1, faults={"rate": 0.3, "statuses": [429, 503], "paths": "^/subscriptions/",
                                          "max_per_call": 3})
    try:
        since = time.time()
        for _attempt in range(40):
            azure.network.virtual_networks.get(RG, "vnet-lab")
            seen = {e["fault"] for e in emu.requests(since)}
            if {"429", "503"} <= seen:
                break
        azure.network.network_security_groups.begin_create_or_update(RG, "nsg-faults", nm.NetworkSecurityGroup(
            location=LOCATION)).result()
    finally:
        emu.set_faults(faults={"rate": 0.0})
    log = emu.requests(since)
    faulted = [e for e in log if e["fault"]]
    assert {"429", "503"} <= {e["fault"] for e in faulted}
    for entry in faulted:  # each refused request came back (same client request id) and succeeded
        retries = [e for e in log if e["client_request_id"] == entry["client_request_id"] and e["t"] > entry["t"]]
        assert any(e["status"] < 400 for e in retries), entry


def test_fault_rules_can_target_one_method_with_a_chosen_status(azure, vms, emu):
    emu.set_faults(faults=[{"rate": 1.0, "statuses": [409], "methods": ["PATCH"], "code": "OperationNotAllowed",
                            "paths": "/virtualMachines/vm-rfc$"}])
    try:
        assert azure.compute.virtual_machines.get(RG, "vm-rfc").name == "vm-rfc"
        with pytest.raises(HttpResponseError) as refused:
            azure.compute.virtual_machines.begin_update(RG, "vm-rfc", cm.VirtualMachineUpdate(tags={"x": "y"}))
        assert refused.value.status_code == 409 and refused.value.error.code == "OperationNotAllowed"
    finally:
        emu.set_faults(faults={"rate": 0.0})


def test_without_lab_hosts_a_vm_is_data_only(azure, network, emu):
    emu.set_faults(lab_hosts=False)
    try:
        hosts_before = {h.name for h in emu.lab_hosts()}
        nic = make_nic(azure, network, "vm-data")
        key = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(32)).decode()
        vm = azure.compute.virtual_machines.begin_create_or_update(RG, "vm-data", vm_model("vm-data", nic.id,
                                                                                           key)).result()
        assert vm.provisioning_state == "Succeeded"
        assert "PowerState/running" in [s.code for s in azure.compute.virtual_machines.instance_view(
            RG, "vm-data").statuses]
        assert {h.name for h in emu.lab_hosts()} == hosts_before
        with pytest.raises(HttpResponseError) as no_agent:  # no host, so no VM agent to run a script
            run_shell(azure, "vm-data", "true").result()
        assert no_agent.value.error.code == "VMAgentStatusCommunicationError"
        azure.compute.virtual_machines.begin_delete(RG, "vm-data").result()
    finally:
        emu.set_faults(lab_hosts=True)


def test_standalone_empty_disk(azure, network):
    disk = azure.compute.disks.begin_create_or_update(RG, "data-1", cm.Disk(
        location=LOCATION, sku=cm.DiskSku(name="Standard_LRS"), disk_size_gb=8,
        creation_data=cm.CreationData(create_option="Empty"))).result()
    assert disk.disk_state == "Unattached" and disk.disk_size_gb == 8
    azure.compute.disks.begin_delete(RG, "data-1").result()
    with pytest.raises(ResourceNotFoundError):
        azure.compute.disks.get(RG, "data-1")


def test_a_write_burst_beyond_arms_bucket_is_throttled_and_the_sdk_waits(azure, network, emu):
    emu.set_throttling(arm=0.1)  # writes: a bucket of 20, refilled 1 a second
    seen = []
    try:
        since = time.time()
        for n in range(24):
            group = azure.resources.resource_groups.update(RG, {"tags": {"round": str(n)}}, raw_response_hook=(
                lambda response: seen.append(response.http_response.headers)))
            assert group.tags == {"round": str(n)}
    finally:
        emu.set_throttling(arm=1.0)
    patches = [e for e in emu.requests(since) if e["method"] == "PATCH"]
    throttled = [e for e in patches if e["status"] == 429]
    assert throttled and all(e["fault"] == "429-arm" and e["retry_after"] == "1" for e in throttled)
    assert len([e for e in patches if e["status"] == 200]) == 24  # every write went through in the end
    remaining = [int(h["x-ms-ratelimit-remaining-subscription-writes"]) for h in seen]
    assert remaining[0] == 19 and 0 in remaining
    assert int(seen[0]["x-ms-ratelimit-remaining-subscription-global-writes"]) == 20 * 15 - 1


def test_compute_put_vm_bucket_refuses_new_vms_with_computes_answer(azure, network, emu):
    emu.set_throttling(compute=0.002)  # Put VM: a bucket of 3, refilled 1 a minute
    try:
        for n in range(3):  # each creation counts, whether it then succeeds or not
            with pytest.raises(HttpResponseError) as refused:
                azure.compute.virtual_machines.begin_create_or_update(RG, f"vm-q{n}", vm_model(
                    f"vm-q{n}", "no-such-nic", "ssh-ed25519 AAAA"))
            assert refused.value.status_code != 429
        with pytest.raises(HttpResponseError) as throttled:
            azure.compute.virtual_machines.begin_create_or_update(RG, "vm-q3", vm_model(
                "vm-q3", "no-such-nic", "ssh-ed25519 AAAA"), retry_total=0)
    finally:
        emu.set_throttling(compute=1.0)
    response = throttled.value.response
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 50
    assert response.headers["x-ms-ratelimit-remaining-resource"] == "Microsoft.Compute/PutVM;0"
    assert throttled.value.error.code == "OperationNotAllowed"
    assert throttled.value.error.details[0].target == "PutVM"


def test_a_write_applied_then_answered_503_is_not_duplicated_by_the_sdks_retry(azure, network, emu):
    fault = {"rate": 1.0, "statuses": [503], "methods": ["PUT"], "applied": True,
             "paths": "/(virtualMachines/vm-once|publicIPAddresses/vm-once-ip)$", "max_per_call": 1}
    emu.set_faults(lab_hosts=False, faults=[fault])
    try:
        since = time.time()
        nic = make_nic(azure, network, "vm-once")
        key = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(32)).decode()
        vm = azure.compute.virtual_machines.begin_create_or_update(RG, "vm-once", vm_model(
            "vm-once", nic.id, key)).result()
    finally:
        emu.set_faults(lab_hosts=True, faults={"rate": 0.0})
    puts = [(e["path"].rsplit("/", 1)[1], e["status"], e["fault"]) for e in emu.requests(since) if e["method"] == "PUT"]
    assert ("vm-once", 503, "503-applied") in puts and ("vm-once-ip", 503, "503-applied") in puts
    assert vm.provisioning_state == "Succeeded"
    assert [v.name for v in azure.compute.virtual_machines.list(RG)].count("vm-once") == 1
    disks = [d for d in azure.compute.disks.list_by_resource_group(RG) if d.managed_by == vm.id]
    assert len(disks) == 1
    ips = [p for p in azure.network.public_ip_addresses.list(RG) if p.name.startswith("vm-once")]
    assert len(ips) == 1 and ips[0].ip_address
    azure.compute.virtual_machines.begin_delete(RG, "vm-once").result()


def test_cloud_metadata_leads_an_sdk_from_the_arm_url_to_authority_and_audience(azure, emu):
    for api_version in ("2015-01-01", "2022-09-01"):  # azure.azcollection's (msrestazure), azure-cli's
        response = requests.get(f"{emu.base_url}/metadata/endpoints", params={"api-version": api_version},
                                verify=str(emu.ca_bundle), timeout=10)
        assert response.status_code == 200
        metadata = response.json()
        arm = metadata.get("resourceManager", emu.base_url + "/")
        authority, audience = metadata["authentication"]["loginEndpoint"], metadata["authentication"]["audiences"][0]
        credential = ClientSecretCredential(azure.env["AZURE_TENANT_ID"], azure.env["AZURE_CLIENT_ID"],
                                            azure.env["AZURE_CLIENT_SECRET"], authority=authority,
                                            disable_instance_discovery=True)
        client = ResourceManagementClient(credential, azure.sub, base_url=arm,
                                          credential_scopes=[audience.rstrip("/") + "/.default"])
        assert client.resource_groups.get(RG).name == RG
        everything = json.dumps(metadata)
        assert all(url.startswith(emu.base_url) for url in re.findall(r"https?://[^\"]+", everything))


def test_guard_catches_msal_instance_discovery_which_the_lab_must_disable(azure):
    """Without disable_instance_discovery MSAL would ask a public host about the authority."""
    env = azure.env
    careless = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
                                      authority=env["AZURE_AUTHORITY_HOST"], retry_total=0)
    with LoopbackGuard() as inner, pytest.raises(ClientAuthenticationError):
        careless.get_token("https://management.azure.com/.default")
    assert inner.violations and all("127.0.0.1" not in v for v in inner.violations)


def test_arm_refuses_requests_without_a_valid_token(azure, emu):
    url = f"{emu.base_url}/subscriptions/{azure.sub}/resourcegroups?api-version=2025-04-01"
    response = requests.get(url, verify=str(emu.ca_bundle), timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert response.json()["error"]["code"] == "AuthenticationFailed"

    class ForgedCredential:
        def get_token(self, *scopes, **kwargs):
            return AccessToken("eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.bm90LWEtc2lnbmF0dXJl", int(time.time()) + 3600)

    forged = ResourceManagementClient(ForgedCredential(), azure.sub, base_url=emu.base_url)
    with pytest.raises(ClientAuthenticationError) as refused:
        forged.resource_groups.get(RG)
    assert refused.value.error.code == "InvalidAuthenticationToken"


def _bad_keys(folder: Path) -> dict[str, str]:
    short_rsa = keygen(folder, "short_rsa", "-t", "rsa", "-b", "1024")
    ecdsa = keygen(folder, "ecdsa", "-t", "ecdsa")
    good = keygen(folder, "good", "-t", "ed25519")
    line = Path(f"{good}.pub").read_text().split()
    rfc = subprocess.run(["ssh-keygen", "-e", "-f", f"{good}.pub"], capture_output=True, text=True,
                         check=True).stdout
    return {
        "rsa-1024": Path(f"{short_rsa}.pub").read_text(),
        "ecdsa": Path(f"{ecdsa}.pub").read_text(),
        "openssh-truncated": f"{line[0]} {line[1][:-12]}",
        "openssh-type-mismatch": f"ssh-rsa {line[1]}",
        "rfc4716-no-end": rfc.replace("---- END SSH2 PUBLIC KEY ----", ""),
        "rfc4716-bad-base64": rfc.replace(rfc.splitlines()[2], rfc.splitlines()[2][:-3] + "!!!"),
    }


def test_ssh_key_forms_azure_accepts(azure, network, emu, tmp_path):
    rsa_key = keygen(tmp_path, "rsa2048", "-t", "rsa", "-b", "2048")
    ed_key = keygen(tmp_path, "ed", "-t", "ed25519")
    ed_rfc = subprocess.run(["ssh-keygen", "-e", "-f", f"{ed_key}.pub"], capture_output=True, text=True,
                            check=True).stdout
    # RFC 4716 allows header lines continued with a backslash, and CRLF line ends.
    continued = ed_rfc.replace("Comment: ", 'Subject: lab\r\nComment: "a long \\\r\ncomment"\r\nX-Ignored: ')
    forms = {"openssh-rsa-2048": Path(f"{rsa_key}.pub").read_text(), "rfc4716-ed25519": ed_rfc,
             "rfc4716-continued-headers": continued}
    nic = make_nic(azure, network, "accepted", public_ip=False)
    emu.set_faults(lab_hosts=False)  # acceptance only: no containers
    try:
        for label, key_data in forms.items():
            vm = azure.compute.virtual_machines.begin_create_or_update(RG, "vm-accepted", vm_model(
                "vm-accepted", nic.id, key_data)).result()
            assert vm.provisioning_state == "Succeeded", label
            azure.compute.virtual_machines.begin_delete(RG, "vm-accepted").result()
    finally:
        emu.set_faults(lab_hosts=True)


def test_ssh_keys_azure_rejects_are_invalid_parameter(azure, network, tmp_path):
    nic = make_nic(azure, network, "refused", public_ip=False)
    for label, key_data in _bad_keys(tmp_path).items():
        with pytest.raises(HttpResponseError) as refused:
            azure.compute.virtual_machines.begin_create_or_update(RG, "vm-refused", vm_model("vm-refused", nic.id,
                                                                                             key_data))
        assert refused.value.error.code == "InvalidParameter", label
        assert refused.value.error.target == "linuxConfiguration.ssh.publicKeys.keyData", label
    with pytest.raises(ResourceNotFoundError):
        azure.compute.virtual_machines.get(RG, "vm-refused")


def test_arm_errors_carry_real_codes(azure, vms, network):
    with pytest.raises(ResourceNotFoundError) as missing:
        azure.compute.virtual_machines.get(RG, "no-such-vm")
    assert missing.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as no_group:
        azure.network.virtual_networks.get("no-such-rg", "vnet-lab")
    assert no_group.value.error.code == "ResourceGroupNotFound"
    with pytest.raises(HttpResponseError) as subnet_in_use:
        azure.network.subnets.begin_delete(RG, "vnet-lab", "vms").result()
    assert subnet_in_use.value.error.code == "InUseSubnetCannotBeDeleted"
    with pytest.raises(HttpResponseError) as nic_in_use:
        azure.network.network_interfaces.begin_delete(RG, "vm-rfc-nic").result()
    assert nic_in_use.value.error.code == "NicInUse"
    with pytest.raises(HttpResponseError) as bad_name:
        azure.network.public_ip_addresses.begin_create_or_update(RG, "bad name!", nm.PublicIPAddress(
            location=LOCATION, sku=nm.PublicIPAddressSku(name="Standard"), public_ip_allocation_method="Static"))
    assert bad_name.value.error.code == "InvalidResourceName"


def test_resource_group_delete_takes_its_resources_along(azure):
    assert not azure.resources.resource_groups.check_existence("rg-short-lived")
    azure.resources.resource_groups.create_or_update("rg-short-lived", {"location": LOCATION})
    assert azure.resources.resource_groups.check_existence("rg-short-lived")
    azure.network.virtual_networks.begin_create_or_update("rg-short-lived", "vnet", nm.VirtualNetwork(
        location=LOCATION, address_space=nm.AddressSpace(address_prefixes=["10.30.0.0/16"]))).result()
    azure.resources.resource_groups.begin_delete("rg-short-lived").result()
    assert not azure.resources.resource_groups.check_existence("rg-short-lived")
    assert "vnet" not in {v.name for v in azure.network.virtual_networks.list_all()}


def test_the_catalogue_lists_vm_sizes_and_the_version_latest_resolves_to(azure, network, emu):
    """What azure.azcollection reads before a create: the location's VM sizes (is the size
    offered?) and the image's versions, among them the one a VM made with "latest" reports."""
    sizes = {size.name: size for size in azure.compute.virtual_machine_sizes.list(LOCATION)}
    assert (sizes["Standard_B1s"].number_of_cores, sizes["Standard_B1s"].memory_in_mb) == (1, 1024)
    emu.set_faults(lab_hosts=False)
    try:
        nic = make_nic(azure, network, "vm-catalogue", public_ip=False)
        key = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(32)).decode()
        vm = azure.compute.virtual_machines.begin_create_or_update(RG, "vm-catalogue", vm_model(
            "vm-catalogue", nic.id, key)).result()
        azure.compute.virtual_machines.begin_delete(RG, "vm-catalogue").result()
    finally:
        emu.set_faults(lab_hosts=True)
    created = vm.storage_profile.image_reference
    versions = azure.compute.virtual_machine_images.list(LOCATION, created.publisher, created.offer, created.sku)
    assert created.exact_version in [v.name for v in versions]


def test_restart_keeps_resources_tokens_and_operations_in_flight(azure, network, vms, emu):
    port = emu.port
    nic = make_nic(azure, network, "vm-late")
    key = Path(f"{vms['vm-openssh']['key']}.pub").read_text()
    emu.set_faults(lro_seconds={"default": 0, "virtualMachines": 3})  # still InProgress when we stop
    try:
        poller = azure.compute.virtual_machines.begin_create_or_update(RG, "vm-late", vm_model("vm-late", nic.id, key))
        assert emulator.stop(emu.state_dir)
        emulator.up(emu.state_dir)
    finally:
        emu.set_faults(lro_seconds={"default": 0})
    assert emu.port == port
    assert poller.result().provisioning_state == "Succeeded"
    late_ip = azure.network.public_ip_addresses.get(RG, "vm-late-ip").ip_address
    assert ssh(late_ip, vms["vm-openssh"]["key"], "hostname").stdout.strip() == "vm-late"
    azure.compute.virtual_machines.begin_delete(RG, "vm-late").result()
    vm = azure.compute.virtual_machines.get(RG, "vm-rfc")  # the SDK's cached token is still good
    assert vm.provisioning_state == "Succeeded"
    assert {v.name for v in azure.compute.virtual_machines.list(RG)} >= {"vm-rfc", "vm-openssh"}
    assert azure.network.public_ip_addresses.get(RG, "vm-rfc-ip").ip_address == vms["vm-rfc"]["ip"]
    assert ssh(vms["vm-rfc"]["ip"], vms["vm-rfc"]["key"], "true").returncode == 0


def test_delete_vm_removes_its_host_and_follows_delete_options(azure, vms, emu):
    vm = vms["vm-openssh"]["vm"]
    host_before = {h.address for h in emu.lab_hosts()}
    assert vms["vm-openssh"]["ip"] in host_before
    since = time.time()
    azure.compute.virtual_machines.begin_delete(RG, "vm-openssh").result()
    assert vms["vm-openssh"]["ip"] not in {h.address for h in emu.lab_hosts()}
    delete = next(e for e in emu.requests(since) if e["method"] == "DELETE")
    assert delete["status"] == 202
    with pytest.raises(ResourceNotFoundError):
        azure.compute.virtual_machines.get(RG, "vm-openssh")
    with pytest.raises(ResourceNotFoundError):  # osDisk deleteOption=Delete
        azure.compute.disks.get(RG, vm.storage_profile.os_disk.name)
    nic = azure.network.network_interfaces.get(RG, "vm-openssh-nic")  # NIC default deleteOption=Detach
    assert nic.virtual_machine is None
    azure.network.network_interfaces.begin_delete(RG, "vm-openssh-nic").result()


# --- Key Vault ---------------------------------------------------------------------------------

def _public_key(jwk):
    if jwk.kty in ("RSA", "RSA-HSM"):
        return rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")).public_key()
    curve = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1}[jwk.crv]()
    return ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"),
                                         curve).public_key()


def test_key_vault_signs_digests_verifiable_with_the_returned_keys(azure, emu):
    keys = KeyClient(azure.env["SSHCA_KEYVAULT_URL"], azure.credential)
    digest = hashlib.sha256(b"ssh certificate to be signed").digest()
    rsa_key = keys.create_rsa_key("user-ca-rsa", size=3072)
    ec_key = keys.create_ec_key("host-ca-ec", curve="P-256")
    for key, alg in ((rsa_key, SignatureAlgorithm.rs256), (ec_key, SignatureAlgorithm.es256)):
        signed = CryptographyClient(key, azure.credential).sign(alg, digest)
        public = _public_key(keys.get_key(key.name).key)
        if alg == SignatureAlgorithm.rs256:
            public.verify(signed.signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        else:
            half = len(signed.signature) // 2  # Key Vault returns r||s, not DER
            der = utils.encode_dss_signature(int.from_bytes(signed.signature[:half], "big"),
                                             int.from_bytes(signed.signature[half:], "big"))
            public.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    signs = [e for e in emu.requests() if e["path"].endswith("/sign")]
    assert len(signs) == 2 and all(e["status"] == 200 for e in signs)
    # A token for ARM is no key for the vault: the challenge flow asked for a vault token.
    first = next(e for e in emu.requests() if e["path"].startswith("/keys/"))
    assert first["status"] == 401


# --- labctl ----------------------------------------------------------------------------------

def test_labctl_down_stops_the_emulator_and_leaves_no_container(azure, vms, emu):
    assert emu.lab_hosts(), "the module's VMs should still have hosts here"
    labctl = REPO / "tests" / "lab" / "labctl"
    down = subprocess.run([str(labctl), "down", "--state-dir", str(emu.state_dir)], capture_output=True, text=True,
                          check=False)
    assert down.returncode == 0, down.stderr
    left = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert not [name for name in left if emu.host_prefix in name]
    status = subprocess.run([str(labctl), "status", "--state-dir", str(emu.state_dir)], capture_output=True,
                            text=True, check=False)
    assert status.returncode == 3 and "stopped" in status.stdout
