"""Microsoft.Compute: virtual machines and managed disks.

A virtual machine is a real lab host: its creation boots one in the background (the operation
stays InProgress until sshd answers), its deletion removes it, deallocate and start stop and
start its container, and Run Command runs a script in it as root (through `podman exec`, as the
VM agent would), answering with the output in the shape Azure's RunCommandLinux extension
reports. Azure's Ubuntu images map to the lab's host kinds (`lab_host_kind`).
"""

from __future__ import annotations

import copy
import hashlib
import re
import subprocess
import uuid

from .. import hosts
from . import sshkeys
from .common import DISK, OWNER, VM, ArmError, Reply, Request, Resources, Target, merge, now_iso, ref
from .network import Network
from .operations import Operations

# Azure refuses these admin user names (documented list for Linux VMs).
RESERVED_ADMIN_NAMES = {
    "administrator", "admin", "user", "user1", "test", "user2", "test1", "user3", "admin1", "1", "123", "a",
    "actuser", "adm", "admin2", "aspnet", "backup", "console", "david", "guest", "john", "owner", "root", "server",
    "sql", "support", "support_388945a0", "sys", "test2", "test3", "user4", "user5",
}
ADMIN_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,63}$", re.IGNORECASE)
COMPUTER_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$")
# What a PUT or PATCH may change on an existing VM.
UPDATABLE = ("hardwareProfile", "diagnosticsProfile", "additionalCapabilities", "securityProfile", "userData")

# Run Command ids Azure offers on Linux VMs (RunShellScript takes the script; the others are fixed).
LINUX_RUN_COMMANDS = {"RunShellScript": None, "ifconfig": ["ifconfig"]}
RUN_COMMAND_OUTPUT_BYTES = 4096  # Azure reports the last 4,096 bytes of stdout and of stderr
RUN_COMMAND_TIMEOUT = 5400  # Azure stops a Run Command script after 90 minutes
NOT_RUNNING = ("OperationNotAllowed", "The operation requires the VM to be running (or set to run).")

# The version "latest" resolves to, and the only one the image catalogue lists.
LATEST_IMAGE_VERSION = "22.04.202501010"
# The VM sizes a location lists (cores, memory MB, data disks, temporary disk MB), as Azure documents them.
VM_SIZES = {
    "Standard_B1s": (1, 1024, 2, 4096), "Standard_B1ms": (1, 2048, 2, 4096), "Standard_B2s": (2, 4096, 4, 8192),
    "Standard_B2ms": (2, 8192, 4, 16384), "Standard_D2s_v3": (2, 8192, 4, 16384),
    "Standard_D2s_v5": (2, 8192, 4, 0), "Standard_D4s_v5": (4, 16384, 8, 0),
}

DEFAULT_HOST_KIND = {"suite": "bookworm", "ssh_activation": "service"}
DEBIAN_VERSIONS = {"bookworm": "12", "trixie": "13"}
POWER_STATES = {"starting": "VM starting", "running": "VM running", "stopping": "VM stopping",
                "stopped": "VM stopped", "deallocating": "VM deallocating", "deallocated": "VM deallocated"}


def lab_host_kind(image: dict) -> dict:
    """The lab host kind standing in for an Azure image, as the keyword arguments hosts.start_host
    takes beyond its default (bookworm with ssh.service, for Ubuntu 22.04 and everything else).
    Ubuntu 24.04 starts sshd from ssh.socket: Debian trixie set up that way stands in for it.
    Neither is Ubuntu."""
    publisher, offer, sku = ((image.get(key) or "").lower() for key in ("publisher", "offer", "sku"))
    if publisher == "canonical":
        if offer == "ubuntu-24_04-lts" or offer.startswith("0001-com-ubuntu-server-noble"):
            return {"suite": "trixie", "ssh_activation": "socket"}
        if offer.startswith("0001-com-ubuntu-server-jammy") and sku.startswith("22_04-lts"):
            return {}  # bookworm with ssh.service: OpenSSH 9.2 against jammy's 8.9
    return {}


def _run_command_message(stdout: bytes, stderr: bytes) -> str:
    """The message RunCommandLinux reports: succeeded whatever the script's exit status."""
    def tail(data: bytes) -> str:
        return data[-RUN_COMMAND_OUTPUT_BYTES:].decode(errors="replace")

    return f"Enable succeeded: \n[stdout]\n{tail(stdout)}\n[stderr]\n{tail(stderr)}"


def _agent_silent(vm_name: str) -> ArmError:
    """What Azure reports when a VM's agent does not answer (here: the VM has no lab host)."""
    return ArmError(409, "VMAgentStatusCommunicationError",
                    f"VM '{vm_name}' has not reported status for VM agent or extensions. Verify that the OS is up "
                    "and healthy, the VM has a running VM agent, and that it can establish outbound connections "
                    "to Azure storage.")


def _lab_host(job: dict) -> hosts.Host:
    host = next((h for h in hosts.list_hosts(OWNER) if h.name == job["host"]), None) if job["host"] else None
    if host is None:
        raise _agent_silent(job["vm"])
    return host


def _same(a, b) -> bool:
    return (a or None) == (b or None)


def _ssh_keys(os_profile: dict) -> list[tuple]:
    keys = ((os_profile.get("linuxConfiguration") or {}).get("ssh") or {}).get("publicKeys")
    return None if keys is None else [(k.get("path"), (k.get("keyData") or "").strip()) for k in keys]


class Compute:
    def __init__(self, res: Resources, ops: Operations, network: Network,
                 start_host=hosts.start_host, stop_host=hosts.stop_host):
        self.res, self.ops, self.network = res, ops, network
        self._start_host, self._stop_host = start_host, stop_host
        ops.jobs.update(start_host=self._job_start_host, stop_hosts=self._job_stop_hosts,
                        run_command=self._job_run_command, deallocate=self._job_power, start=self._job_power)
        ops.on_removed[VM.full_type] = self._detach
        for action in ("put", "start", "deallocate"):
            ops.on_finished[(VM.full_type, action)] = self._power_after
        res.expanders[VM.full_type] = self._expand

    def host_name(self, vm_id: str) -> str:
        name = re.sub(r"[^a-z0-9-]", "-", vm_id.rsplit("/", 1)[1].lower()).strip("-")[:30].strip("-") or "vm"
        return f"az{self.res.instance}-{name}-{hashlib.sha256(vm_id.lower().encode()).hexdigest()[:6]}"

    def lab_prefix(self) -> str:
        return f"az{self.res.instance}-"

    # --- lab-host jobs and what they leave behind ------------------------------------------------

    def _job_start_host(self, op: dict, job: dict) -> None:
        host = self._start_host(job["name"], job["keys"], address=job["address"], admin_user=job["admin_user"],
                                hostname=job["hostname"], owner=OWNER, **job.get("host_kind", {}))
        with self.res.store.lock:
            record = self.res.get(op["resource"])
            if record:
                record["lab"]["address"] = host.address

    def _job_stop_hosts(self, op: dict, job: dict) -> None:
        for name in job["names"]:
            self._stop_host(name)

    @staticmethod
    def _job_run_command(op: dict, job: dict) -> dict:
        """A Run Command script, run as root in the VM's host; the RunCommandResult for it."""
        host = _lab_host(job)
        try:
            proc = subprocess.run(["podman", "exec", host.container, "sh", "-c", job["script"], "sh", *job["args"]],
                                  capture_output=True, stdin=subprocess.DEVNULL, timeout=RUN_COMMAND_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired as err:
            proc = subprocess.CompletedProcess(err.cmd, -1, err.stdout or b"", err.stderr or b"")
        if proc.returncode == 125 and proc.stderr.startswith(b"Error: "):  # podman's own failure
            raise _agent_silent(job["vm"])
        return {"value": [{"code": "ProvisioningState/succeeded", "level": "Info",
                           "displayStatus": "Provisioning succeeded",
                           "message": _run_command_message(proc.stdout, proc.stderr)}]}

    @staticmethod
    def _job_power(op: dict, job: dict) -> None:
        """Deallocate stops the host's container (its disk kept); start boots it again."""
        host = _lab_host(job)
        if job["kind"] == "deallocate":
            subprocess.run(["podman", "stop", "--time", "5", host.container], capture_output=True, check=True)
        else:
            subprocess.run(["podman", "start", host.container], capture_output=True, check=True)
            hosts.wait_for_ssh(host.address)

    @staticmethod
    def _power_after(op: dict, record: dict, ok: bool) -> None:
        lab = record["lab"]
        if not ok:
            if op["action"] != "deallocate":  # a host that failed to boot is stopped
                lab["power"] = "stopped"
        elif op["action"] == "deallocate":
            lab["power"] = "deallocated"
        elif op["action"] == "start" or lab.get("power") == "starting":  # created, or started again
            lab["power"] = "running"

    def _detach(self, vm: dict) -> None:
        disk = self.res.get(vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"])
        if disk:
            disk["body"].pop("managedBy", None)
            disk["body"]["properties"]["diskState"] = "Unattached"
        for nic_ref in vm["properties"]["networkProfile"]["networkInterfaces"]:
            nic = self.res.get(nic_ref["id"])
            if nic:
                nic["body"]["properties"].pop("virtualMachine", None)

    def deleting(self, records: list[dict]) -> dict | None:
        """A resource group's deletion: its VMs turn Deleting; the job that stops their hosts."""
        vms = [r for r in records if r["body"]["type"] == VM.full_type]
        for vm in vms:
            vm["body"]["properties"]["provisioningState"] = "Deleting"
        names = [vm["lab"]["host"] for vm in vms if vm["lab"].get("host")]
        return {"kind": "stop_hosts", "names": names} if names else None

    # --- disks -------------------------------------------------------------------------------

    def put_disk(self, t: Target) -> Reply:
        """Standalone disks: `Empty` data disks only (OS disks come with their VM)."""
        props = t.body.get("properties") or {}
        size = props.get("diskSizeGB")
        if t.record:
            old = t.record["body"]
            if size is not None and size < old["properties"]["diskSizeGB"]:
                raise ArmError(400, "BadRequest", f"Disk resizing is allowed only to larger sizes. Current size is "
                                                  f"{old['properties']['diskSizeGB']} GB.", "diskSizeGB")
            new = copy.deepcopy(old)
            new["properties"]["diskSizeGB"] = size or old["properties"]["diskSizeGB"]
            if "tags" in t.body:
                new["tags"] = t.body["tags"] or {}
        else:
            create = (props.get("creationData") or {}).get("createOption")
            if create != "Empty":
                raise ArmError(400, "InvalidParameter", f"The lab creates standalone disks with createOption "
                                                        f"Empty only (got {create!r}).", "creationData.createOption")
            if not isinstance(size, int) or size < 1:
                raise ArmError(400, "InvalidParameter", "Required parameter 'diskSizeGB' is missing (null).",
                               "diskSizeGB")
            sku = (t.body.get("sku") or {}).get("name", "Standard_LRS")
            new = self.res.base(DISK, t)
            new["sku"] = {"name": sku, "tier": sku.split("_")[0]}
            new["properties"] = {"creationData": {"createOption": "Empty"}, "diskSizeGB": size,
                                 "diskState": "Unattached", "timeCreated": now_iso(), "uniqueId": str(uuid.uuid4())}
        self.res.put_record(new, (t.record or {}).get("lab", {}))
        new["properties"]["provisioningState"] = "Updating"
        op = self.ops.start("Microsoft.Compute", new["location"], t.api, new["id"], "put")
        return Reply(202, None, self.ops.headers(op))  # Compute answers disk PUTs 202, body-less

    def delete_disk(self, record: dict, api: str) -> Reply:
        holder = record["body"].get("managedBy")
        if holder:
            raise ArmError(409, "OperationNotAllowed", f"Disk {record['body']['name']} is attached to VM {holder}.")
        return self.ops.accept_delete(record, api)

    # --- virtual machines: checks --------------------------------------------------------------

    @staticmethod
    def _check_os_profile(os_profile: dict) -> list[str]:
        """Validate osProfile as Azure does; return the authorized_keys lines for the lab host."""
        user = os_profile.get("adminUsername")
        if not user:
            raise ArmError(400, "InvalidParameter", "Required parameter 'adminUsername' is missing (null).",
                           "adminUsername")
        if user.lower() in RESERVED_ADMIN_NAMES or not ADMIN_USER_RE.match(user) or len(user) > 64:
            raise ArmError(400, "InvalidParameter", "The Admin Username specified is not allowed.", "adminUsername")
        computer = os_profile.get("computerName") or ""
        if not COMPUTER_NAME_RE.match(computer) or computer.isdigit():
            raise ArmError(400, "InvalidParameter", f"Linux host name cannot exceed 64 characters in length or "
                                                    f"contain the following characters: ` ~ ! @ # $ % ^ & * ( ) = + "
                                                    f"_ [ ] {{ }} \\ | ; : ' \" , < > / ?. (got {computer!r})",
                           "computerName")
        keys = ((os_profile.get("linuxConfiguration") or {}).get("ssh") or {}).get("publicKeys") or []
        if os_profile.get("adminPassword"):
            raise ArmError(400, "InvalidParameter", "The lab's hosts take SSH keys only: adminPassword is not "
                                                    "supported by the emulator.", "adminPassword")
        if not keys:
            raise ArmError(400, "InvalidParameter", "Required parameter 'adminPassword' is missing (null).",
                           "adminPassword")
        lines = []
        for key in keys:
            expected = f"/home/{user}/.ssh/authorized_keys"
            if key.get("path") != expected:
                raise ArmError(400, "InvalidParameter",
                               f"Destination path for SSH public keys is currently limited to its default value "
                               f"{expected} due to a known issue in Linux provisioning agent.",
                               "linuxConfiguration.ssh.publicKeys.path")
            try:
                lines.append(sshkeys.to_openssh(key.get("keyData") or ""))
            except sshkeys.KeyRejected:
                raise ArmError(400, "InvalidParameter", "The value of parameter linuxConfiguration.ssh.publicKeys."
                                                        "keyData is invalid.",
                               "linuxConfiguration.ssh.publicKeys.keyData") from None
        return lines

    def _vm_nics(self, vm_id: str, network_profile: dict) -> list[dict]:
        if network_profile.get("networkInterfaceConfigurations"):
            raise ArmError(400, "InvalidParameter", "The lab emulator does not create NICs from "
                                                    "networkInterfaceConfigurations: create the NIC and reference it "
                                                    "in networkProfile.networkInterfaces.",
                           "networkProfile.networkInterfaceConfigurations")
        refs = network_profile.get("networkInterfaces") or []
        if not refs:
            raise ArmError(400, "InvalidParameter", "Required parameter 'networkProfile' is missing (null).",
                           "networkProfile")
        nics = []
        for nic_ref in refs:
            nic = self.res.get(nic_ref.get("id"))
            if not nic or nic["body"]["type"] != "Microsoft.Network/networkInterfaces":
                raise ArmError(404, "NotFound", f"Resource {nic_ref.get('id')} not found.", "networkInterfaces")
            holder = ref(nic["body"]["properties"].get("virtualMachine"))
            if holder and holder.lower() != vm_id.lower():
                raise ArmError(400, "NicInUse", f"Network Interface {nic['body']['id']} is used by existing resource "
                                                f"{holder}.", "networkProfile.networkInterfaces")
            nics.append(nic)
        return nics

    @staticmethod
    def _check_immutable(old: dict, new_profile: dict) -> None:
        old_profile = old["properties"]["osProfile"]
        for key in ("adminUsername", "computerName"):
            if key in new_profile and not _same(new_profile[key], old_profile.get(key)):
                raise ArmError(409, "PropertyChangeNotAllowed", f"Changing property '{key}' is not allowed.", key)
        new_keys = _ssh_keys(new_profile)
        if new_keys is not None and new_keys != (_ssh_keys(old_profile) or []):
            raise ArmError(409, "PropertyChangeNotAllowed",
                           "Changing property 'linuxConfiguration.ssh.publicKeys' is not allowed.",
                           "linuxConfiguration.ssh.publicKeys")

    def _identity(self, spec: dict | None, old: dict | None) -> dict | None:
        """A VM's managed identity as Azure returns it (ids made up once, kept across updates)."""
        kind = (spec or {}).get("type") or "None"
        if kind == "None":
            return None
        out = {"type": kind}
        if "SystemAssigned" in kind:
            out["principalId"] = (old or {}).get("principalId") or str(uuid.uuid4())
            out["tenantId"] = self.res.tenant
        if "UserAssigned" in kind:
            out["userAssignedIdentities"] = {
                rid: (old or {}).get("userAssignedIdentities", {}).get(rid) or
                {"principalId": str(uuid.uuid4()), "clientId": str(uuid.uuid4())}
                for rid in (spec.get("userAssignedIdentities") or {})}
        return out

    def _set_identity(self, vm: dict, spec: dict | None) -> None:
        identity = self._identity(spec, vm.get("identity"))
        if identity:
            vm["identity"] = identity
        else:
            vm.pop("identity", None)

    @staticmethod
    def _os_disk_delete_option(vm: dict, props: dict, strict: bool) -> None:
        option = ((props.get("storageProfile") or {}).get("osDisk") or {}).get("deleteOption")
        if strict and option and option not in ("Delete", "Detach"):
            raise ArmError(400, "InvalidParameter", f"The value {option} of parameter 'osDisk.deleteOption' is "
                                                    "not allowed.", "osDisk.deleteOption")
        if option in ("Delete", "Detach"):
            vm["properties"]["storageProfile"]["osDisk"]["deleteOption"] = option

    # --- virtual machines: create, update, delete -------------------------------------------------

    def put_policy(self, req: Request) -> str:
        """Compute's throttling policy for a VM PUT: Put VM creates, Update VM changes."""
        exists = self.res.get(self.res.rid(req.params["rg"], VM, req.params["name"]))
        return "UpdateVM" if exists else "PutVM"

    def put_vm(self, t: Target) -> Reply:
        return self._update_vm(t) if t.record else self._create_vm(t)

    def _update_vm(self, t: Target) -> Reply:
        old = t.record["body"]
        props = copy.deepcopy(t.body.get("properties") or {})
        self._check_immutable(old, props.get("osProfile") or {})
        self._vm_nics(old["id"], props.get("networkProfile") or old["properties"]["networkProfile"])
        new = self.res.base(VM, t)
        new["properties"] = merge(copy.deepcopy(old["properties"]),
                                  {k: v for k, v in props.items() if k in (*UPDATABLE, "priority")})
        for kept in ("zones", "plan", "identity"):
            if kept in old:
                new[kept] = old[kept]
        if "identity" in t.body:
            self._set_identity(new, t.body["identity"])
        self._os_disk_delete_option(new, props, strict=False)
        return self.ops.accept_put(new, t.record, t.api)

    def _create_vm(self, t: Target) -> Reply:
        props = copy.deepcopy(t.body.get("properties") or {})
        if not (props.get("hardwareProfile") or {}).get("vmSize"):
            raise ArmError(400, "InvalidParameter", "Required parameter 'hardwareProfile.vmSize' is missing (null).",
                           "hardwareProfile.vmSize")
        os_profile = props.get("osProfile")
        if not os_profile:
            raise ArmError(400, "InvalidParameter", "Required parameter 'osProfile' is missing (null).", "osProfile")
        os_profile.setdefault("computerName", t.name)
        keys = self._check_os_profile(os_profile)
        nics = self._vm_nics(t.id, props.get("networkProfile") or {})
        image = (props.get("storageProfile") or {}).get("imageReference")
        if not image:
            raise ArmError(400, "InvalidParameter", "Required parameter 'imageReference' is missing (null).",
                           "imageReference")
        new = self.res.base(VM, t)
        if t.body.get("zones"):
            new["zones"] = t.body["zones"]
        self._set_identity(new, t.body.get("identity"))
        os_profile.pop("adminPassword", None)
        linux = os_profile.setdefault("linuxConfiguration", {})
        linux.setdefault("disablePasswordAuthentication", True)
        linux.setdefault("provisionVMAgent", True)
        linux.setdefault("patchSettings", {"patchMode": "ImageDefault", "assessmentMode": "ImageDefault"})
        os_profile.setdefault("secrets", [])
        os_profile.setdefault("allowExtensionOperations", True)
        os_profile.setdefault("requireGuestProvisionSignal", True)
        image_out = dict(image)
        image_out.setdefault("exactVersion", image.get("version") if image.get("version") != "latest"
                             else LATEST_IMAGE_VERSION)
        new["properties"] = {
            **{k: v for k, v in props.items() if k not in ("osProfile", "storageProfile", "networkProfile")},
            "vmId": str(uuid.uuid4()),
            "storageProfile": {"imageReference": image_out, "osDisk": self._os_disk(t, props, new, image_out),
                               "dataDisks": [], "diskControllerType": "SCSI"},
            "osProfile": os_profile,
            "networkProfile": {"networkInterfaces": [
                {"id": nic["body"]["id"], **{k: v for k, v in nic_ref.items() if k == "properties" and v}}
                for nic, nic_ref in zip(nics, props["networkProfile"]["networkInterfaces"], strict=True)]},
            "timeCreated": now_iso(),
        }
        for nic in nics:
            nic["body"]["properties"]["virtualMachine"] = {"id": t.id}
            nic["body"]["properties"]["macAddress"] = "00-0D-3A-" + "-".join(
                f"{b:02X}" for b in hashlib.sha256(nic["body"]["id"].lower().encode()).digest()[:3])
        address = self.network.public_address(nics[0])
        host, kind = self.host_name(t.id), lab_host_kind(image)
        job = None
        if self.res.settings().get("lab_hosts", True):
            job = {"kind": "start_host", "name": host, "keys": keys, "address": address,
                   "admin_user": os_profile["adminUsername"], "hostname": os_profile["computerName"].lower(),
                   "host_kind": kind}
        lab = {"host": host if job else None, "address": address, "power": "starting",
               "suite": kind.get("suite", DEFAULT_HOST_KIND["suite"])}
        return self.ops.accept_put(new, None, t.api, job, lab=lab, creating_state="Creating")

    def _os_disk(self, t: Target, props: dict, vm: dict, image: dict) -> dict:
        """The VM's OS disk as the VM shows it; the disk resource is created alongside."""
        os_disk = dict((props.get("storageProfile") or {}).get("osDisk") or {})
        name = os_disk.get("name") or f"{t.name}_OsDisk_1_{uuid.uuid4().hex}"
        disk_id = self.res.rid(t.rg, DISK, name)
        if self.res.get(disk_id):
            raise ArmError(409, "Conflict", f"Disk {name} already exists in resource group {t.rg.upper()}. "
                                            "Only CreateOption.Attach is supported.", "osDisk.name")
        managed = dict(os_disk.get("managedDisk") or {})
        managed.setdefault("storageAccountType", "Premium_LRS")
        managed["id"] = disk_id
        size = os_disk.get("diskSizeGB", 30)
        location = vm["location"]
        self.res.put_record({
            "id": disk_id, "name": name, "type": DISK.full_type, "location": location, "managedBy": t.id,
            "sku": {"name": managed["storageAccountType"], "tier": managed["storageAccountType"].split("_")[0]},
            "properties": {"osType": "Linux", "hyperVGeneration": "V2", "creationData": {
                "createOption": "FromImage", "imageReference": {
                    "id": f"/Subscriptions/{self.res.sub}/Providers/Microsoft.Compute/Locations/{location}/Publishers/"
                          f"{image.get('publisher')}/ArtifactTypes/VMImage/Offers/{image.get('offer')}/Skus/"
                          f"{image.get('sku')}/Versions/{image['exactVersion']}"}},
                "diskSizeGB": size, "diskState": "Attached", "provisioningState": "Succeeded",
                "timeCreated": now_iso(), "uniqueId": str(uuid.uuid4())}})
        return {"osType": "Linux", "name": name, "createOption": os_disk.get("createOption", "FromImage"),
                "caching": os_disk.get("caching", "ReadWrite"), "managedDisk": managed,
                "deleteOption": os_disk.get("deleteOption", "Detach"), "diskSizeGB": size}

    def _vm(self, req: Request) -> dict:
        record = self.res.get(self.res.rid(req.params["rg"], VM, req.params["name"]))
        if not record:
            raise self.res.not_found(VM, req.params["rg"], req.params["name"])
        return record

    def patch_vm(self, req: Request) -> Reply:
        record = self._vm(req)
        old, body = record["body"], req.json
        if old["properties"].get("provisioningState") in ("Creating", "Deleting"):
            raise ArmError(409, "OperationNotAllowed", f"Operation 'update' is not allowed on VM '{old['name']}' "
                                                       "since the VM is being created or deleted.")
        props = body.get("properties") or {}
        if props.get("osProfile"):
            self._check_immutable(old, props["osProfile"])
        if "tags" in body:
            if body["tags"]:
                old["tags"] = body["tags"]
            else:
                old.pop("tags", None)
        merge(old["properties"], {k: v for k, v in props.items() if k in UPDATABLE})
        if "identity" in body:
            self._set_identity(old, body["identity"])
        self._os_disk_delete_option(old, props, strict=True)
        old["properties"]["provisioningState"] = "Updating"
        op = self.ops.start("Microsoft.Compute", old["location"], req.api, old["id"], "put")
        return Reply(200, self.res.out(record), self.ops.headers(op))

    def delete_vm(self, record: dict, api: str) -> Reply:
        body = record["body"]
        removes = []
        os_disk = body["properties"]["storageProfile"]["osDisk"]
        if os_disk.get("deleteOption") == "Delete":
            removes.append(os_disk["managedDisk"]["id"].lower())
        for nic_ref in body["properties"]["networkProfile"]["networkInterfaces"]:
            if (nic_ref.get("properties") or {}).get("deleteOption") == "Delete":
                removes.append(nic_ref["id"].lower())
        host = record["lab"].get("host")
        record["lab"]["power"] = "stopping"
        return self.ops.accept_delete(record, api, {"kind": "stop_hosts", "names": [host]} if host else None,
                                      also=removes)

    # --- virtual machines: instance view, actions -----------------------------------------------

    def instance_view(self, record: dict) -> dict:
        body, lab = record["body"], record["lab"]
        state = body["properties"].get("provisioningState", "Succeeded")
        power = lab.get("power", "running")
        statuses = [{"code": f"ProvisioningState/{state.lower()}", "level": "Info" if state != "Failed" else "Error",
                     "displayStatus": f"Provisioning {state.lower()}"}]
        if state == "Succeeded":
            statuses[0]["time"] = body["properties"].get("timeCreated")
        statuses.append({"code": f"PowerState/{power}", "level": "Info", "displayStatus": POWER_STATES[power]})
        disk = body["properties"]["storageProfile"]["osDisk"]
        return {"computerName": body["properties"]["osProfile"]["computerName"], "osName": "debian",
                "osVersion": DEBIAN_VERSIONS[lab.get("suite", DEFAULT_HOST_KIND["suite"])],
                "hyperVGeneration": "V2",
                "vmAgent": {"vmAgentVersion": "2.9.1.1", "statuses": [
                    {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready",
                     "message": "Guest Agent is running"}]},
                "disks": [{"name": disk["name"], "statuses": statuses[:1]}],
                "statuses": statuses}

    def _expand(self, record: dict, body: dict, expand: str) -> None:
        if "instanceview" in expand.lower():
            body["properties"]["instanceView"] = self.instance_view(record)

    def get_instance_view(self, req: Request) -> Reply:
        return Reply(200, self.instance_view(self._vm(req)))

    # --- the catalogue a client may read before creating (azure.azcollection does) -------------

    @staticmethod
    def vm_sizes(req: Request) -> Reply:
        return Reply(200, {"value": [
            {"name": name, "numberOfCores": cores, "osDiskSizeInMB": 1047552, "resourceDiskSizeInMB": temp_mb,
             "memoryInMB": memory_mb, "maxDataDiskCount": disks}
            for name, (cores, memory_mb, disks, temp_mb) in VM_SIZES.items()]})

    @staticmethod
    def image_versions(req: Request) -> Reply:
        """Every publisher, offer and SKU has one version here: any image creates a VM (see lab_host_kind)."""
        p = req.params
        image = (f"/Subscriptions/{p['sub']}/Providers/Microsoft.Compute/Locations/{p['location']}/Publishers/"
                 f"{p['publisher']}/ArtifactTypes/VMImage/Offers/{p['offer']}/Skus/{p['sku']}/Versions/")
        return Reply(200, [{"name": LATEST_IMAGE_VERSION, "location": p["location"],
                            "id": image + LATEST_IMAGE_VERSION}])

    def run_command(self, req: Request) -> Reply:
        """POST .../runCommand: accepted at once, run in the background, polled like any operation."""
        record = self._vm(req)
        vm, lab = record["body"], record["lab"]
        command_id = req.json.get("commandId")
        if not command_id:
            raise ArmError(400, "InvalidParameter", "Required parameter 'commandId' is missing (null).", "commandId")
        if command_id not in LINUX_RUN_COMMANDS:
            raise ArmError(404, "NotFound", "The entity was not found in this Azure location.")
        if lab.get("power") != "running":
            raise ArmError(409, *NOT_RUNNING)
        script = LINUX_RUN_COMMANDS[command_id] or [str(line) for line in req.json.get("script") or []]
        # Parameters reach a Linux script as its positional arguments, in order.
        args = [str(p.get("value", "")) for p in req.json.get("parameters") or []]
        job = {"kind": "run_command", "host": lab.get("host"), "vm": vm["name"], "script": "\n".join(script),
               "args": args}
        op = self.ops.start("Microsoft.Compute", vm["location"], req.api, vm["id"], "runCommand", job)
        return Reply(202, None, self.ops.headers(op), log={"run_command": {
            "commandId": command_id, "script": script, "parameters": req.json.get("parameters") or []}})

    def deallocate(self, req: Request) -> Reply:
        return self._power(req, "deallocate")

    def start(self, req: Request) -> Reply:
        return self._power(req, "start")

    def _power(self, req: Request, action: str) -> Reply:
        """The lab host's container stops (disk kept) or boots again."""
        record = self._vm(req)
        vm, lab = record["body"], record["lab"]
        if vm["properties"].get("provisioningState") in ("Creating", "Deleting"):
            raise ArmError(409, "OperationNotAllowed", f"Operation '{action}' is not allowed on VM '{vm['name']}' "
                                                       "since the VM is being created or deleted.")
        lab["power"] = "deallocating" if action == "deallocate" else "starting"
        job = {"kind": action, "host": lab["host"], "vm": vm["name"]} if lab.get("host") else None
        op = self.ops.start("Microsoft.Compute", vm["location"], req.api, vm["id"], action, job)
        return Reply(202, None, self.ops.headers(op))
