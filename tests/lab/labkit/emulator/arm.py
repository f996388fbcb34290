"""Azure Resource Manager: resource groups, Microsoft.Network and Microsoft.Compute resources.

Writes are long-running operations the way ARM runs them: the PUT/PATCH answers at once with a
provisioningState in progress and an absolute `Azure-AsyncOperation` URL (plus `Location`),
DELETE answers 202 with both; the operation status resource says InProgress until the work is
done and its configured latency has passed, then Succeeded (or Failed with an ARM error).

A virtual machine is a real lab host: its creation boots one in the background (the operation
stays InProgress until sshd answers), its deletion removes it, deallocate and start stop and start
its container, and Run Command runs a script in it as root (through `podman exec`, as the VM
agent would), answering with the output in the shape Azure's RunCommandLinux extension reports.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import ipaddress
import json
import math
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import hosts
from . import sshkeys
from .store import Store

OWNER = "emulator"


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, target: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        return {"error": error}


@dataclass
class Reply:
    status: int
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    log: dict = field(default_factory=dict)  # extra fields for the request log


@dataclass(frozen=True)
class Kind:
    namespace: str
    type: str
    name_re: re.Pattern
    lro_key: str  # key in the latency settings

    @property
    def full_type(self) -> str:
        return f"{self.namespace}/{self.type}"


_NET_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
KINDS = {
    ("microsoft.network", "virtualnetworks"): Kind("Microsoft.Network", "virtualNetworks", _NET_NAME,
                                                   "virtualNetworks"),
    ("microsoft.network", "networksecuritygroups"): Kind("Microsoft.Network", "networkSecurityGroups", _NET_NAME,
                                                         "networkSecurityGroups"),
    ("microsoft.network", "publicipaddresses"): Kind("Microsoft.Network", "publicIPAddresses", _NET_NAME,
                                                     "publicIPAddresses"),
    ("microsoft.network", "networkinterfaces"): Kind("Microsoft.Network", "networkInterfaces", _NET_NAME,
                                                     "networkInterfaces"),
    ("microsoft.compute", "virtualmachines"): Kind(
        "Microsoft.Compute", "virtualMachines", re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?$"),
        "virtualMachines"),
    ("microsoft.compute", "disks"): Kind("Microsoft.Compute", "disks", re.compile(r"^[A-Za-z0-9_.-]{1,80}$"), "disks"),
}
SUBNET_KIND = Kind("Microsoft.Network", "virtualNetworks/subnets", _NET_NAME, "subnets")
RG_NAME = re.compile(r"^[-\w._()]{1,90}$")

# Azure refuses these admin user names (documented list for Linux VMs).
RESERVED_ADMIN_NAMES = {
    "administrator", "admin", "user", "user1", "test", "user2", "test1", "user3", "admin1", "1", "123", "a",
    "actuser", "adm", "admin2", "aspnet", "backup", "console", "david", "guest", "john", "owner", "root", "server",
    "sql", "support", "support_388945a0", "sys", "test2", "test3", "user4", "user5",
}
ADMIN_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,63}$", re.IGNORECASE)

# Run Command ids Azure offers on Linux VMs (RunShellScript takes the script; the others are fixed).
LINUX_RUN_COMMANDS = {"RunShellScript": None, "ifconfig": ["ifconfig"]}
RUN_COMMAND_OUTPUT_BYTES = 4096  # Azure reports the last 4,096 bytes of stdout and of stderr
RUN_COMMAND_TIMEOUT = 5400  # Azure stops a Run Command script after 90 minutes
NOT_RUNNING = ("OperationNotAllowed", "The operation requires the VM to be running (or set to run).")

DEFAULT_NSG_RULES = [
    ("AllowVnetInBound", "Allow", "Inbound", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", "Allow", "Inbound", 65001, "AzureLoadBalancer", "*"),
    ("DenyAllInBound", "Deny", "Inbound", 65500, "*", "*"),
    ("AllowVnetOutBound", "Allow", "Outbound", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowInternetOutBound", "Allow", "Outbound", 65001, "*", "Internet"),
    ("DenyAllOutBound", "Deny", "Outbound", 65500, "*", "*"),
]


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1e6):06d}+00:00"


def _etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def _merge(target: dict, patch: dict) -> dict:
    """JSON merge for PATCH bodies: objects merge, everything else replaces."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _ref(obj: dict | None) -> str | None:
    return (obj or {}).get("id")


DEFAULT_HOST_KIND = {"suite": "bookworm", "ssh_activation": "service"}
DEBIAN_VERSIONS = {"bookworm": "12", "trixie": "13"}


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


def _port22_open(address: str) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((address, 22)) == 0


@contextlib.contextmanager
def _registry() -> Iterator[dict]:
    """Public IP addresses reserved by every emulator on this machine (several run at once:
    test modules, benchmarks, `labctl up`), under a file lock. An entry lapses once its
    emulator's resources.json no longer holds that public IP (deleted, or `labctl down`),
    after a grace minute that covers a reservation whose request has not been saved yet."""
    path = hosts.LAB_DIR / "emulator-public-ips.json"
    hosts.LAB_DIR.mkdir(parents=True, exist_ok=True)
    with open(hosts.LAB_DIR / "emulator-public-ips.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        registry = json.loads(path.read_text()) if path.exists() else {}
        live, cache = {}, {}
        for address, entry in registry.items():
            if entry["state"] not in cache:
                try:
                    cache[entry["state"]] = json.loads(
                        (Path(entry["state"]) / "resources.json").read_text()).get("resources", {})
                except (OSError, ValueError):
                    cache[entry["state"]] = {}
            if entry["id"] in cache[entry["state"]] or time.time() - entry["since"] < 60:
                live[address] = entry
        yield live
        path.write_text(json.dumps(live, indent=1))


class Arm:
    def __init__(self, store: Store, config: dict, base_url: str, settings: Callable[[], dict],
                 start_host=hosts.start_host, stop_host=hosts.stop_host):
        self.store = store
        self.sub = config["subscription_id"]
        self.tenant = config["tenant_id"]
        self.instance = config["instance"]
        self.base_url = base_url
        self.settings = settings
        self._start_host, self._stop_host = start_host, stop_host

    # --- plumbing -----------------------------------------------------------------------

    def rid(self, rg: str, kind: Kind, name: str) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{rg}/providers/{kind.full_type}/{name}"

    def get(self, resource_id: str | None) -> dict | None:
        return self.store.resources.get((resource_id or "").lower())

    def put_record(self, body: dict, lab: dict | None = None) -> dict:
        record = {"body": body, "lab": lab or {}}
        self.store.resources[body["id"].lower()] = record
        return record

    def records(self, full_type: str, rg: str | None = None) -> list[dict]:
        out = []
        for record in self.store.resources.values():
            body = record["body"]
            if body["type"].lower() != full_type.lower():
                continue
            if rg is not None and body["id"].split("/")[4].lower() != rg.lower():
                continue
            out.append(record)
        return out

    def host_name(self, vm_id: str) -> str:
        name = re.sub(r"[^a-z0-9-]", "-", vm_id.rsplit("/", 1)[1].lower()).strip("-")[:30].strip("-") or "vm"
        return f"az{self.instance}-{name}-{hashlib.sha256(vm_id.lower().encode()).hexdigest()[:6]}"

    def lab_prefix(self) -> str:
        return f"az{self.instance}-"

    def _retry_after(self) -> str:
        # Whole seconds, at least 1: the SDKs parse an LRO's Retry-After as an integer, and 0
        # would make azure-core fall back to its 30 s default interval.
        return str(max(1, math.ceil(float(self.settings().get("retry_after", 1)))))

    def _lro_seconds(self, key: str) -> float:
        lro = self.settings().get("lro_seconds", {})
        return float(lro.get(key, lro.get("default", 0)))

    def _start_operation(self, namespace: str, location: str, api_version: str, resource_id: str, action: str,
                         job: dict | None = None, removes: list[str] | None = None) -> dict:
        op_id = str(uuid.uuid4())
        op = {"id": op_id, "namespace": namespace, "location": location, "resource": resource_id.lower(),
              "action": action, "start": time.time(), "startTime": _now_iso(),
              "not_before": time.time() + self._lro_seconds(
                  resource_id.split("/providers/")[-1].split("/")[1] if "/providers/" in resource_id
                  else "resourceGroups"),
              "work": "pending" if job else "none", "job": job, "status": "InProgress", "removes": removes or [],
              "api_version": api_version}
        self.store.operations[op_id] = op
        if job:
            self._launch(op)
        return op

    def _launch(self, op: dict) -> None:
        """Run an operation's lab-host job (kept in the operation, so a restart can run it again)."""
        job = op["job"]

        def run() -> None:
            output = None
            try:
                if job["kind"] == "start_host":
                    host = self._start_host(job["name"], job["keys"], address=job["address"],
                                            admin_user=job["admin_user"], hostname=job["hostname"], owner=OWNER,
                                            **job.get("host_kind", {}))
                    with self.store.lock:
                        record = self.get(op["resource"])
                        if record:
                            record["lab"]["address"] = host.address
                elif job["kind"] == "stop_hosts":
                    for name in job["names"]:
                        self._stop_host(name)
                elif job["kind"] == "run_command":
                    output = self._run_in_host(job)
                else:  # deallocate / start: the container stops or boots again, its disk kept
                    self._power_host(job)
                outcome, error = "done", None
            except ArmError as err:  # what Azure itself reports for this failure
                outcome, error = "failed", {"code": err.code, "message": err.message}
            except Exception as err:  # reported through the operation, like a provisioning failure
                outcome = "failed"
                error = {"code": "OSProvisioningInternalError" if op["action"] == "put" else "InternalOperationError",
                         "message": f"Lab host operation failed: {str(err).splitlines()[0]}"}
            with self.store.lock:
                op["work"], op["error"] = outcome, error
                if output is not None:
                    op["output"] = output
                self.advance()
                self.store.save()

        threading.Thread(target=run, name=f"op-{op['id'][:8]}", daemon=True).start()

    @staticmethod
    def _run_in_host(job: dict) -> dict:
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
    def _power_host(job: dict) -> None:
        host = _lab_host(job)
        if job["kind"] == "deallocate":
            subprocess.run(["podman", "stop", "--time", "5", host.container], capture_output=True, check=True)
        else:
            subprocess.run(["podman", "start", host.container], capture_output=True, check=True)
            hosts.wait_for_ssh(host.address)

    def _op_urls(self, op: dict) -> tuple[str, str]:
        if op["namespace"] == "Microsoft.Resources":
            url = (f"{self.base_url}/subscriptions/{self.sub}/operationresults/{op['id']}"
                   f"?api-version={op['api_version']}")
            return url, url
        root = f"{self.base_url}/subscriptions/{self.sub}/providers/{op['namespace']}/locations/{op['location']}"
        status = f"{root}/operations/{op['id']}?api-version={op['api_version']}"
        if op["action"] == "runCommand":  # Compute's Location for Run Command: the operation, monitored
            return status, f"{root}/operations/{op['id']}?monitor=true&api-version={op['api_version']}"
        return status, f"{root}/operationResults/{op['id']}?api-version={op['api_version']}"

    def _lro_headers(self, op: dict, location: bool = True) -> dict[str, str]:
        async_url, location_url = self._op_urls(op)
        headers = {"Azure-AsyncOperation": async_url, "Retry-After": self._retry_after()}
        if location:
            headers["Location"] = location_url
        return headers

    def advance(self) -> None:
        """Finish operations whose work is done and whose latency has passed."""
        now = time.time()
        for op in self.store.operations.values():
            if op["status"] != "InProgress":
                continue
            if op["work"] == "failed":
                op["status"], op["endTime"] = "Failed", _now_iso()
                record = self.get(op["resource"])
                if record and op["action"] in ("put", "start"):
                    if op["action"] == "put":
                        record["body"]["properties"]["provisioningState"] = "Failed"
                    record["lab"]["power"] = "stopped"
                continue
            if op["work"] == "pending" or now < op["not_before"]:
                continue
            op["status"], op["endTime"] = "Succeeded", _now_iso()
            if op["action"] == "delete":
                for resource_id in op["removes"]:
                    self._finish_removal(resource_id)
            elif op["action"] in ("deallocate", "start"):
                record = self.get(op["resource"])
                if record:
                    record["lab"]["power"] = "deallocated" if op["action"] == "deallocate" else "running"
            elif op["action"] == "put":
                record = self.get(op["resource"])
                # An update that ends while the creation still runs must not claim Succeeded early.
                still_busy = any(other is not op and other["status"] == "InProgress"
                                 and other["resource"] == op["resource"] for other in self.store.operations.values())
                if record and not still_busy:
                    record["body"]["properties"]["provisioningState"] = "Succeeded"
                    if record["body"]["type"] == "Microsoft.Compute/virtualMachines" and \
                            record["lab"].get("power") == "starting":
                        record["lab"]["power"] = "running"
        # Keep finished operations for an hour, as pollers may come back late.
        for op_id in [k for k, v in self.store.operations.items() if v["status"] != "InProgress"
                      and now - v["start"] > 3600]:
            del self.store.operations[op_id]

    def _finish_removal(self, resource_id: str) -> None:
        record = self.store.resources.pop(resource_id.lower(), None)
        if not record:
            return
        body = record["body"]
        if body["type"] == "Microsoft.Compute/virtualMachines":
            self._detach_vm(body)
        elif body["type"] == "Microsoft.Network/networkInterfaces":
            self._link_nic(body, attach=False)

    def compute_policy(self, method: str, path: str) -> str | None:
        """Which of Compute's throttling policies a request falls under (VMs and their operations)."""
        low = [p.lower() for p in path.split("/") if p]
        if len(low) == 8 and low[2:5] == ["providers", "microsoft.compute", "locations"] and low[6] == "operations":
            return "GetOperation"
        if low[2:3] == ["providers"] and low[3:5] == ["microsoft.compute", "virtualmachines"] and len(low) == 5:
            return "HighCostGetVM"
        if len(low) < 7 or low[4:7] != ["providers", "microsoft.compute", "virtualmachines"]:
            return None
        if len(low) == 7:
            return "HighCostGetVM"
        action = low[8] if len(low) > 8 else ""
        if method in ("GET", "HEAD"):
            return "LowCostGetVM"
        if method == "DELETE" or action == "deallocate":
            return "DeleteVM"
        if method == "PUT" and not self.get(f"/subscriptions/{low[1]}/resourceGroups/{low[3]}/providers/"
                                            f"Microsoft.Compute/virtualMachines/{low[7]}"):
            return "PutVM"
        return "UpdateVM"

    # --- dispatch -----------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: dict | None) -> Reply:
        self.advance()
        parts = [p for p in path.split("/") if p]
        low = [p.lower() for p in parts]
        api = query.get("api-version", "")
        if len(parts) < 2 or low[0] != "subscriptions":
            raise ArmError(404, "InvalidRequestUri", f"The request URI '{path}' is not valid.")
        if parts[1].lower() != self.sub.lower():
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{parts[1]}' could not be found.")
        if len(parts) == 2 and method == "GET":
            return Reply(200, {"id": f"/subscriptions/{self.sub}", "subscriptionId": self.sub,
                               "displayName": "sshca lab", "state": "Enabled",
                               "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                                        "quotaId": "PayAsYouGo_2014-09-01",
                                                        "spendingLimit": "Off"}})
        if len(low) == 4 and low[2] == "operationresults":
            return self._operation_result(parts[3], rg_style=True)
        if len(low) >= 4 and low[2] == "providers":
            if len(low) == 8 and low[4] == "locations" and low[6] in ("operations", "operationresults"):
                return self._operation(parts[7], status=low[6] == "operations" and query.get("monitor") != "true")
            kind = KINDS.get((low[3], low[4])) if len(low) == 5 else None
            if kind and method == "GET":
                return self._list(kind, None, query)
            raise ArmError(404, "InvalidResourceType", f"The resource type '{'/'.join(parts[3:])}' could not be "
                                                       f"found for api version '{api}'.")
        if len(low) >= 3 and low[2] == "resourcegroups":
            if len(low) == 3:
                if method != "GET":
                    raise ArmError(405, "MethodNotAllowed", f"{method} is not supported here.")
                return Reply(200, {"value": [r["body"] for r in self.records("Microsoft.Resources/resourceGroups")]})
            rg = parts[3]
            if len(low) == 4:
                return self._resource_group(method, rg, body, api)
            rg_record = self.get(f"/subscriptions/{self.sub}/resourceGroups/{rg}")
            if not rg_record:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            rg = rg_record["body"]["name"]
            if len(low) >= 7 and low[4] == "providers":
                kind = KINDS.get((low[5], low[6]))
                if kind is None:
                    raise ArmError(404, "InvalidResourceType",
                                   f"The resource type '{parts[6]}' could not be found in the namespace "
                                   f"'{parts[5]}' for api version '{api}'.")
                if len(low) == 7:
                    if method != "GET":
                        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported here.")
                    return self._list(kind, rg, query)
                name = parts[7]
                if len(low) == 8:
                    return self._resource(method, kind, rg, name, body, query, api)
                if kind.type == "virtualNetworks" and low[8] == "subnets":
                    return self._subnets(method, rg, name, parts[9] if len(parts) > 9 else None, body, api)
                if kind.type == "virtualMachines" and len(low) == 9:
                    return self._vm_sub(method, rg, name, low[8], body, api)
        raise ArmError(404, "InvalidRequestUri", f"The request URI '{path}' is not valid.")

    # --- operations -----------------------------------------------------------------------

    def _find_op(self, op_id: str) -> dict:
        op = self.store.operations.get(op_id)
        if not op:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' could not be found.")
        return op

    def _operation(self, op_id: str, status: bool) -> Reply:
        op = self._find_op(op_id)
        if not status:
            return self._operation_result(op_id, rg_style=False)
        body = {"name": op_id, "status": op["status"], "startTime": op["startTime"]}
        headers = {}
        if op["status"] == "InProgress":
            headers["Retry-After"] = self._retry_after()
        else:
            body["endTime"] = op.get("endTime")
        if op["status"] == "Failed":
            body["error"] = op["error"]
        if op["status"] == "Succeeded" and "output" in op:
            body["properties"] = {"output": op["output"]}
        return Reply(200, body, headers)

    def _operation_result(self, op_id: str, rg_style: bool) -> Reply:
        op = self._find_op(op_id)
        if op["status"] == "InProgress":
            return Reply(202, None, {"Location": self._op_urls(op)[1], "Retry-After": self._retry_after()})
        if op["status"] == "Failed":
            raise ArmError(500 if rg_style else 400, op["error"]["code"], op["error"]["message"])
        if op["action"] == "delete":
            return Reply(200 if rg_style else 204)
        if op["action"] == "runCommand":
            return Reply(200, op["output"])
        if op["action"] in ("deallocate", "start"):
            return Reply(200)
        record = self.get(op["resource"])
        return Reply(200, self._out(record) if record else None)

    # --- resource groups --------------------------------------------------------------------

    def _resource_group(self, method: str, rg: str, body: dict | None, api: str) -> Reply:
        rg_id = f"/subscriptions/{self.sub}/resourceGroups/{rg}"
        record = self.get(rg_id)
        if method in ("GET", "HEAD"):
            if not record:
                if method == "HEAD":
                    return Reply(404)
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            return Reply(204) if method == "HEAD" else Reply(200, record["body"])
        if method == "PUT":
            if not RG_NAME.match(rg) or rg.endswith("."):
                raise ArmError(400, "InvalidResourceGroup", f"The provided resource group name '{rg}' has these "
                                                            "invalid characters: the name must be 1-90 letters, "
                                                            "digits, '_', '-', '.', '(' or ')', not ending in '.'.")
            location = (body or {}).get("location")
            if not location:
                raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
            if record and record["body"]["location"].lower() != location.lower():
                raise ArmError(409, "InvalidResourceGroupLocation",
                               f"Invalid resource group location '{location}'. The Resource group already exists "
                               f"in location '{record['body']['location']}'.")
            new = {"id": record["body"]["id"] if record else rg_id, "name": record["body"]["name"] if record else rg,
                   "type": "Microsoft.Resources/resourceGroups", "location": location,
                   "properties": {"provisioningState": "Succeeded"}}
            if body.get("tags"):
                new["tags"] = body["tags"]
            if body.get("managedBy"):
                new["managedBy"] = body["managedBy"]
            self.put_record(new)
            return Reply(200 if record else 201, new)
        if not record:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        if method == "PATCH":
            if "tags" in (body or {}):
                record["body"]["tags"] = body["tags"] or {}
            return Reply(200, record["body"])
        if method == "DELETE":
            record["body"]["properties"]["provisioningState"] = "Deleting"
            members = [rid for rid, r in self.store.resources.items()
                       if rid.startswith(rg_id.lower() + "/providers/")]
            vms = [self.store.resources[rid] for rid in members
                   if self.store.resources[rid]["body"]["type"] == "Microsoft.Compute/virtualMachines"]
            for vm in vms:
                vm["body"]["properties"]["provisioningState"] = "Deleting"
            host_names = [vm["lab"].get("host") for vm in vms if vm["lab"].get("host")]
            op = self._start_operation("Microsoft.Resources", "global", api, rg_id, "delete",
                                       {"kind": "stop_hosts", "names": host_names} if host_names else None,
                                       removes=[*members, rg_id.lower()])
            return Reply(202, None, {"Location": self._op_urls(op)[1], "Retry-After": self._retry_after()})
        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on resource groups.")

    # --- generic resources ------------------------------------------------------------------

    def _out(self, record: dict, expand: str = "") -> dict:
        body = copy.deepcopy(record["body"])
        if body["type"] == "Microsoft.Compute/virtualMachines" and "instanceview" in expand.lower():
            body["properties"]["instanceView"] = self._instance_view(record)
        return body

    def _list(self, kind: Kind, rg: str | None, query: dict[str, str]) -> Reply:
        expand = query.get("$expand", "")
        return Reply(200, {"value": [self._out(r, expand) for r in self.records(kind.full_type, rg)]})

    def _not_found(self, kind: Kind, rg: str, name: str) -> ArmError:
        return ArmError(404, "ResourceNotFound", f"The Resource '{kind.full_type}/{name}' under resource group "
                                                 f"'{rg}' was not found. For more details please go to "
                                                 "https://aka.ms/ARMResourceNotFoundFix")

    def _resource(self, method: str, kind: Kind, rg: str, name: str, body: dict | None,
                  query: dict[str, str], api: str) -> Reply:
        resource_id = self.rid(rg, kind, name)
        record = self.get(resource_id)
        if method == "GET":
            if not record:
                raise self._not_found(kind, rg, name)
            return Reply(200, self._out(record, query.get("$expand", "")))
        if method == "PUT":
            if not kind.name_re.match(name):
                raise ArmError(400, "InvalidResourceName", f"Resource name {name} is invalid. The name can be up to "
                                                           f"80 characters long. It must begin with a word character,"
                                                           " and it must end with a word character or with '_'. The "
                                                           "name may contain word characters or '.', '-', '_'.")
            body = body or {}
            location = body.get("location")
            if not location:
                raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
            if record and record["body"]["location"].replace(" ", "").lower() != location.replace(" ", "").lower():
                raise ArmError(409, "InvalidResourceLocation",
                               f"The resource '{name}' already exists in location '{record['body']['location']}' "
                               f"in resource group '{rg}'. A resource with the same name cannot be created in "
                               f"location '{location}'. Please select a new resource name.")
            if record and record["body"]["properties"].get("provisioningState") == "Deleting":
                raise ArmError(409, "Conflict", f"The resource '{name}' is being deleted.")
            put = getattr(self, f"_put_{kind.type}")
            return put(rg, name, resource_id, record, body, api, location)
        if method == "PATCH":
            if not record:
                raise self._not_found(kind, rg, name)
            if kind.type == "virtualMachines":
                return self._patch_vm(record, body or {}, api)
            if "tags" in (body or {}):
                record["body"]["tags"] = body["tags"] or {}
            if kind.namespace == "Microsoft.Network":
                record["body"]["etag"] = _etag()
            return Reply(200, self._out(record))
        if method == "DELETE":
            if not record:
                return Reply(204)
            return getattr(self, f"_delete_{kind.type}")(record, api)
        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on {kind.full_type}.")

    def _base(self, resource_id: str, kind: Kind, name: str, location: str, body: dict, record: dict | None) -> dict:
        new = {"id": record["body"]["id"] if record else resource_id, "name": name, "type": kind.full_type,
               "location": location.replace(" ", "").lower()}
        if body.get("tags"):
            new["tags"] = body["tags"]
        if kind.namespace == "Microsoft.Network":
            new["etag"] = _etag()
        return new

    def _accepted_put(self, new: dict, record: dict | None, api: str, job=None, lab: dict | None = None,
                      creating_state: str = "Updating") -> Reply:
        new["properties"]["provisioningState"] = "Updating" if record else creating_state
        self.put_record(new, lab if lab is not None else (record or {}).get("lab", {}))
        op = self._start_operation(new["type"].split("/")[0], new["location"], api, new["id"], "put", job)
        return Reply(200 if record else 201, self._out(self.get(new["id"])), self._lro_headers(op))

    def _accepted_delete(self, record: dict, api: str, job=None, also: list[str] | None = None) -> Reply:
        body = record["body"]
        body["properties"]["provisioningState"] = "Deleting"
        op = self._start_operation(body["type"].split("/")[0], body["location"], api, body["id"], "delete", job,
                                   removes=[body["id"].lower(), *(also or [])])
        return Reply(202, None, self._lro_headers(op))

    def _require(self, reference: str | None, kind: Kind, owner_id: str, what: str) -> dict:
        record = self.get(reference) if reference else None
        if not record or record["body"]["type"].lower() != kind.full_type.lower():
            raise ArmError(400, "InvalidResourceReference",
                           f"Resource {reference} referenced by resource {owner_id} was not found. Please make sure "
                           f"that the referenced resource exists, and that both resources are in the same region.",
                           what)
        return record

    # --- Microsoft.Network ----------------------------------------------------------------

    @staticmethod
    def _prefix(text: str, what: str) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(text, strict=True)
        except (ValueError, TypeError):
            raise ArmError(400, "InvalidAddressPrefixFormat", f"Address prefix {text} of {what} is not valid.",
                           what) from None

    def _subnet_body(self, vnet_id: str, subnet: dict, old: dict | None, space: list) -> dict:
        name = subnet.get("name") or ""
        if not _NET_NAME.match(name):
            raise ArmError(400, "InvalidResourceName", f"Resource name {name} is invalid.", "subnets.name")
        props = subnet.get("properties") or {}
        prefix = self._prefix(props.get("addressPrefix"), f"subnet {name}")
        if not any(prefix.subnet_of(net) for net in space):
            raise ArmError(400, "NetcfgSubnetRangeOutsideVnet",
                           f"Subnet '{name}' is not valid because its IP address range is outside the IP address "
                           "range of virtual network.", "subnets.addressPrefix")
        out_props = {"addressPrefix": str(prefix), "provisioningState": "Succeeded",
                     "privateEndpointNetworkPolicies": props.get("privateEndpointNetworkPolicies", "Disabled"),
                     "privateLinkServiceNetworkPolicies": props.get("privateLinkServiceNetworkPolicies", "Enabled")}
        nsg_id = _ref(props.get("networkSecurityGroup"))
        if nsg_id:
            self._require(nsg_id, KINDS[("microsoft.network", "networksecuritygroups")], vnet_id,
                          "subnets.networkSecurityGroup")
            out_props["networkSecurityGroup"] = {"id": self.get(nsg_id)["body"]["id"]}
        if old and old["properties"].get("ipConfigurations"):
            out_props["ipConfigurations"] = old["properties"]["ipConfigurations"]
        return {"id": f"{vnet_id}/subnets/{name}", "name": name, "etag": _etag(), "properties": out_props,
                "type": "Microsoft.Network/virtualNetworks/subnets"}

    @staticmethod
    def _check_subnets_disjoint(subnets: list[dict]) -> None:
        nets = [(s["name"], ipaddress.IPv4Network(s["properties"]["addressPrefix"])) for s in subnets]
        for i, (name_a, a) in enumerate(nets):
            for name_b, b in nets[i + 1:]:
                if a.overlaps(b):
                    raise ArmError(400, "NetcfgSubnetRangesOverlap",
                                   f"Subnet '{name_a}' is not valid because its IP address range overlaps with that "
                                   f"of an existing subnet '{name_b}' in virtual network.")

    def _put_virtualNetworks(self, rg, name, resource_id, record, body, api, location) -> Reply:
        kind = KINDS[("microsoft.network", "virtualnetworks")]
        props = body.get("properties") or {}
        prefixes = (props.get("addressSpace") or {}).get("addressPrefixes") or []
        if not prefixes:
            raise ArmError(400, "InvalidRequestFormat", "Cannot parse the request: addressSpace.addressPrefixes is "
                                                        "required.", "properties.addressSpace")
        space = [self._prefix(p, "addressSpace") for p in prefixes]
        new = self._base(resource_id, kind, name, location, body, record)
        old_subnets = {s["name"].lower(): s for s in (record["body"]["properties"]["subnets"] if record else [])}
        subnets = [self._subnet_body(new["id"], s, old_subnets.get((s.get("name") or "").lower()), space)
                   for s in props.get("subnets") or []]
        self._check_subnets_disjoint(subnets)
        kept = {s["name"].lower() for s in subnets}
        for lname, old in old_subnets.items():
            if lname not in kept and old["properties"].get("ipConfigurations"):
                raise ArmError(400, "InUseSubnetCannotBeDeleted",
                               f"Subnet {old['name']} is in use by {old['properties']['ipConfigurations'][0]['id']} "
                               "and cannot be deleted. In order to delete the subnet, delete all the resources "
                               "within the subnet. See aka.ms/deletesubnet.")
        new["properties"] = {"addressSpace": {"addressPrefixes": [str(n) for n in space]}, "subnets": subnets,
                             "resourceGuid": (record or {}).get("body", {}).get("properties", {}).get(
                                 "resourceGuid", str(uuid.uuid4())),
                             "virtualNetworkPeerings": [], "enableDdosProtection": False}
        return self._accepted_put(new, record, api)

    def _subnets(self, method: str, rg: str, vnet_name: str, name: str | None, body: dict | None, api: str) -> Reply:
        kind = KINDS[("microsoft.network", "virtualnetworks")]
        vnet = self.get(self.rid(rg, kind, vnet_name))
        if not vnet:
            raise self._not_found(kind, rg, vnet_name)
        subnets = vnet["body"]["properties"]["subnets"]
        if name is None:
            if method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"{method} is not supported here.")
            return Reply(200, {"value": copy.deepcopy(subnets)})
        index = next((i for i, s in enumerate(subnets) if s["name"].lower() == name.lower()), None)
        if method == "GET":
            if index is None:
                raise self._not_found(SUBNET_KIND, rg, f"{vnet_name}/{name}")
            return Reply(200, copy.deepcopy(subnets[index]))
        if method == "PUT":
            space = [ipaddress.IPv4Network(p) for p in vnet["body"]["properties"]["addressSpace"]["addressPrefixes"]]
            new = self._subnet_body(vnet["body"]["id"], {**(body or {}), "name": name},
                                    subnets[index] if index is not None else None, space)
            new["properties"]["provisioningState"] = "Updating"
            trial = [s for i, s in enumerate(subnets) if i != index] + [new]
            self._check_subnets_disjoint(trial)
            if index is None:
                subnets.append(new)
            else:
                subnets[index] = new
            op = self._start_operation("Microsoft.Network", vnet["body"]["location"], api, vnet["body"]["id"], "put")
            op["subnet"] = name
            # Subnets finish with their network; the network record carries the state.
            new["properties"]["provisioningState"] = "Succeeded"
            return Reply(201 if index is None else 200, copy.deepcopy(new), self._lro_headers(op))
        if method == "DELETE":
            if index is None:
                return Reply(204)
            if subnets[index]["properties"].get("ipConfigurations"):
                raise ArmError(400, "InUseSubnetCannotBeDeleted",
                               f"Subnet {name} is in use by "
                               f"{subnets[index]['properties']['ipConfigurations'][0]['id']} and cannot be deleted. "
                               "In order to delete the subnet, delete all the resources within the subnet. "
                               "See aka.ms/deletesubnet.")
            del subnets[index]
            op = self._start_operation("Microsoft.Network", vnet["body"]["location"], api, vnet["body"]["id"], "put")
            return Reply(202, None, self._lro_headers(op))
        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on subnets.")

    def _delete_virtualNetworks(self, record, api) -> Reply:
        for subnet in record["body"]["properties"]["subnets"]:
            if subnet["properties"].get("ipConfigurations"):
                raise ArmError(400, "InUseSubnetCannotBeDeleted",
                               f"Subnet {subnet['name']} is in use by "
                               f"{subnet['properties']['ipConfigurations'][0]['id']} and cannot be deleted. In order "
                               "to delete the subnet, delete all the resources within the subnet. "
                               "See aka.ms/deletesubnet.")
        return self._accepted_delete(record, api)

    def _put_networkSecurityGroups(self, rg, name, resource_id, record, body, api, location) -> Reply:
        kind = KINDS[("microsoft.network", "networksecuritygroups")]
        new = self._base(resource_id, kind, name, location, body, record)
        rules = []
        for rule in (body.get("properties") or {}).get("securityRules") or []:
            rule_props = dict(rule.get("properties") or {})
            for required in ("protocol", "access", "direction", "priority"):
                if rule_props.get(required) in (None, ""):
                    raise ArmError(400, "SecurityRuleParameterContainsUnsupportedValue" if required != "priority"
                                   else "SecurityRuleInvalidPriority",
                                   f"Security rule {rule.get('name')} has no valid value for {required}.",
                                   f"securityRules.{required}")
            rule_props["provisioningState"] = "Succeeded"
            rules.append({"id": f"{new['id']}/securityRules/{rule.get('name')}", "name": rule.get("name"),
                          "etag": new["etag"], "type": "Microsoft.Network/networkSecurityGroups/securityRules",
                          "properties": rule_props})
        defaults = [{"id": f"{new['id']}/defaultSecurityRules/{n}", "name": n, "etag": new["etag"],
                     "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
                     "properties": {"description": n, "protocol": "*", "sourcePortRange": "*",
                                    "destinationPortRange": "*", "sourceAddressPrefix": src,
                                    "destinationAddressPrefix": dst, "access": access, "priority": prio,
                                    "direction": direction, "provisioningState": "Succeeded"}}
                    for n, access, direction, prio, src, dst in DEFAULT_NSG_RULES]
        old = (record or {}).get("body", {}).get("properties", {})
        new["properties"] = {"securityRules": rules, "defaultSecurityRules": defaults,
                             "resourceGuid": old.get("resourceGuid", str(uuid.uuid4()))}
        for link in ("networkInterfaces", "subnets"):
            if old.get(link):
                new["properties"][link] = old[link]
        return self._accepted_put(new, record, api)

    def _delete_networkSecurityGroups(self, record, api) -> Reply:
        users = [nic["body"]["id"] for nic in self.records("Microsoft.Network/networkInterfaces")
                 if (_ref(nic["body"]["properties"].get("networkSecurityGroup")) or "").lower()
                 == record["body"]["id"].lower()]
        users += [s["id"] for vnet in self.records("Microsoft.Network/virtualNetworks")
                  for s in vnet["body"]["properties"]["subnets"]
                  if (_ref(s["properties"].get("networkSecurityGroup")) or "").lower() == record["body"]["id"].lower()]
        if users:
            raise ArmError(400, "InUseNetworkSecurityGroupCannotBeDeleted",
                           f"Network security group {record['body']['id']} cannot be deleted because it is in use "
                           f"by the following resources: {users}. In order to delete the Network security group, "
                           "remove the association with the resource(s).")
        return self._accepted_delete(record, api)

    def _reserve_address(self, resource_id: str) -> str:
        """A loopback address for a public IP: not held by a public IP of any emulator on this
        machine, by a lab host, or by anything listening on port 22."""
        with _registry() as registry:
            taken = {r["body"]["properties"].get("ipAddress") for r in self.records(
                "Microsoft.Network/publicIPAddresses") if r["body"]["id"].lower() != resource_id.lower()}
            taken |= set(registry) | {h.address for h in hosts.list_hosts()}
            # From the top of the pool down: hosts started without an address fill it from the bottom.
            for address in reversed(hosts.ADDRESS_POOL):
                if address not in taken and not _port22_open(address):
                    registry[address] = {"state": str(self.store.path.parent), "id": resource_id.lower(),
                                         "since": time.time()}
                    return address
        raise ArmError(409, "PublicIPCountLimitReached", "No free address is left in the lab's loopback pool.")

    def _put_publicIPAddresses(self, rg, name, resource_id, record, body, api, location) -> Reply:
        kind = KINDS[("microsoft.network", "publicipaddresses")]
        props = body.get("properties") or {}
        sku = body.get("sku") or {"name": "Standard", "tier": "Regional"}
        sku.setdefault("tier", "Regional")
        method = props.get("publicIPAllocationMethod") or ("Static" if sku["name"] == "Standard" else "Dynamic")
        if sku["name"] == "Standard" and method != "Static":
            raise ArmError(400, "StandardSkuPublicIPAddressesCannotHaveDynamicAllocation",
                           "Standard sku publicIp can only be allocated with Static allocation method.",
                           "publicIPAllocationMethod")
        if sku["name"] not in ("Standard", "Basic"):
            raise ArmError(400, "InvalidParameter", f"Public IP SKU {sku['name']} is not supported.", "sku.name")
        old = (record or {}).get("body", {}).get("properties", {})
        new = self._base(resource_id, kind, name, location, body, record)
        new["sku"] = sku
        if body.get("zones"):
            new["zones"] = body["zones"]
        new["properties"] = {"publicIPAddressVersion": props.get("publicIPAddressVersion", "IPv4"),
                             "publicIPAllocationMethod": method,
                             "idleTimeoutInMinutes": props.get("idleTimeoutInMinutes", 4),
                             "ipTags": props.get("ipTags", []),
                             "resourceGuid": old.get("resourceGuid", str(uuid.uuid4()))}
        if props.get("dnsSettings"):
            new["properties"]["dnsSettings"] = props["dnsSettings"]
        if old.get("ipConfiguration"):
            new["properties"]["ipConfiguration"] = old["ipConfiguration"]
        address = old.get("ipAddress") or (self._reserve_address(new["id"]) if method == "Static" else None)
        if address:
            new["properties"]["ipAddress"] = address
        return self._accepted_put(new, record, api)

    def _delete_publicIPAddresses(self, record, api) -> Reply:
        config = record["body"]["properties"].get("ipConfiguration")
        if config:
            raise ArmError(400, "PublicIPAddressCannotBeDeleted",
                           f"Public IP address {record['body']['id']} can not be deleted since it is still allocated "
                           f"to resource {config['id']}. In order to delete the public IP, disassociate/detach the "
                           "Public IP address from the resource.")
        return self._accepted_delete(record, api)

    def _put_networkInterfaces(self, rg, name, resource_id, record, body, api, location) -> Reply:
        kind = KINDS[("microsoft.network", "networkinterfaces")]
        props = body.get("properties") or {}
        configs = props.get("ipConfigurations") or []
        if not configs:
            raise ArmError(400, "NetworkInterfaceMustHaveAtLeastOneIpConfiguration",
                           f"Network interface {resource_id} must have at least one IP configuration.",
                           "ipConfigurations")
        new = self._base(resource_id, kind, name, location, body, record)
        old = (record or {}).get("body", {}).get("properties", {})
        old_configs = {c["name"].lower(): c for c in old.get("ipConfigurations", [])}
        out_configs = []
        for index, config in enumerate(configs):
            cname = config.get("name") or "ipconfig1"
            cprops = config.get("properties") or {}
            config_id = f"{new['id']}/ipConfigurations/{cname}"
            subnet_id = _ref(cprops.get("subnet"))
            vnet_id = subnet_id.split("/subnets/")[0] if subnet_id and "/subnets/" in subnet_id else None
            vnet = self.get(vnet_id)
            subnet = next((s for s in (vnet["body"]["properties"]["subnets"] if vnet else [])
                           if s["id"].lower() == (subnet_id or "").lower()), None)
            if not subnet:
                raise ArmError(400, "InvalidResourceReference",
                               f"Resource {subnet_id} referenced by resource {resource_id} was not found. Please make "
                               "sure that the referenced resource exists, and that both resources are in the same "
                               "region.", "ipConfigurations.subnet")
            out = {"provisioningState": "Succeeded", "privateIPAddressVersion": "IPv4",
                   "privateIPAllocationMethod": cprops.get("privateIPAllocationMethod", "Dynamic"),
                   "subnet": {"id": subnet["id"]}, "primary": cprops.get("primary", index == 0)}
            previous = old_configs.get(cname.lower(), {}).get("properties", {})
            out["privateIPAddress"] = self._private_ip(subnet, config_id, cprops, previous)
            pip_id = _ref(cprops.get("publicIPAddress"))
            if pip_id:
                pip = self._require(pip_id, KINDS[("microsoft.network", "publicipaddresses")], resource_id,
                                    "ipConfigurations.publicIPAddress")
                holder = _ref(pip["body"]["properties"].get("ipConfiguration"))
                if holder and holder.lower() != config_id.lower():
                    raise ArmError(400, "PublicIPAddressInUse",
                                   f"Resource {pip['body']['id']} is already in use by {holder}.",
                                   "ipConfigurations.publicIPAddress")
                out["publicIPAddress"] = {"id": pip["body"]["id"]}
            out_configs.append({"id": config_id, "name": cname, "etag": new["etag"],
                                "type": "Microsoft.Network/networkInterfaces/ipConfigurations", "properties": out})
        new["properties"] = {"ipConfigurations": out_configs, "enableAcceleratedNetworking":
                             props.get("enableAcceleratedNetworking", False),
                             "enableIPForwarding": props.get("enableIPForwarding", False),
                             "dnsSettings": props.get("dnsSettings") or {"dnsServers": [], "appliedDnsServers": []},
                             "resourceGuid": old.get("resourceGuid", str(uuid.uuid4())),
                             "nicType": "Standard", "hostedWorkloads": [], "tapConfigurations": []}
        nsg_id = _ref(props.get("networkSecurityGroup"))
        if nsg_id:
            nsg = self._require(nsg_id, KINDS[("microsoft.network", "networksecuritygroups")], resource_id,
                                "networkSecurityGroup")
            new["properties"]["networkSecurityGroup"] = {"id": nsg["body"]["id"]}
        for kept in ("virtualMachine", "macAddress"):
            if old.get(kept):
                new["properties"][kept] = old[kept]
        if record:
            self._link_nic(record["body"], attach=False)
        self._link_nic(new, attach=True)
        return self._accepted_put(new, record, api)

    def _private_ip(self, subnet: dict, config_id: str, cprops: dict, previous: dict) -> str:
        net = ipaddress.IPv4Network(subnet["properties"]["addressPrefix"])
        used = set()
        for nic in self.records("Microsoft.Network/networkInterfaces"):
            for config in nic["body"]["properties"]["ipConfigurations"]:
                if config["id"].lower() != config_id.lower() and \
                        config["properties"]["subnet"]["id"].lower() == subnet["id"].lower():
                    used.add(config["properties"]["privateIPAddress"])
        usable = list(net.hosts())[3:]  # Azure keeps .1-.3 (and .0 and the broadcast address)
        if cprops.get("privateIPAllocationMethod") == "Static":
            wanted = cprops.get("privateIPAddress")
            try:
                address = ipaddress.IPv4Address(wanted)
            except (ValueError, TypeError):
                raise ArmError(400, "InvalidParameter", f"Private IP address {wanted} is not valid.",
                               "ipConfigurations.privateIPAddress") from None
            if address not in net:
                raise ArmError(400, "PrivateIPAddressNotInSubnet",
                               f"IP configuration {config_id} references the private IP address {wanted} which is "
                               f"not in the address space of subnet {subnet['id']}.")
            if address not in usable:
                raise ArmError(400, "PrivateIPAddressInReservedRange",
                               f"Private static IP address {wanted} falls within reserved IP range of subnet prefix "
                               f"{net}.")
            if str(address) in used:
                raise ArmError(400, "PrivateIPAddressIsAllocated",
                               f"IP configuration {config_id} is using the private IP address {wanted} which is "
                               "already allocated to resource.")
            return str(address)
        if previous.get("privateIPAddress") and previous["privateIPAddress"] not in used \
                and ipaddress.IPv4Address(previous["privateIPAddress"]) in net:
            return previous["privateIPAddress"]
        free = next((str(a) for a in usable if str(a) not in used), None)
        if free is None:
            raise ArmError(400, "SubnetIsFull", f"Subnet {subnet['name']} with address prefix {net} does not have "
                                                "enough capacity for 1 IP addresses.")
        return free

    def _link_nic(self, nic: dict, attach: bool) -> None:
        """Keep back-references (subnet.ipConfigurations, publicIP.ipConfiguration, NSG.networkInterfaces)."""
        for config in nic["properties"]["ipConfigurations"]:
            subnet_id = config["properties"]["subnet"]["id"]
            vnet = self.get(subnet_id.split("/subnets/")[0])
            for subnet in (vnet["body"]["properties"]["subnets"] if vnet else []):
                if subnet["id"].lower() == subnet_id.lower():
                    refs = [r for r in subnet["properties"].get("ipConfigurations", [])
                            if r["id"].lower() != config["id"].lower()]
                    if attach:
                        refs.append({"id": config["id"]})
                    subnet["properties"]["ipConfigurations"] = refs
                    if not refs:
                        subnet["properties"].pop("ipConfigurations")
            pip = self.get(_ref(config["properties"].get("publicIPAddress")))
            if pip:
                if attach:
                    pip["body"]["properties"]["ipConfiguration"] = {"id": config["id"]}
                else:
                    pip["body"]["properties"].pop("ipConfiguration", None)
        nsg = self.get(_ref(nic["properties"].get("networkSecurityGroup")))
        if nsg:
            refs = [r for r in nsg["body"]["properties"].get("networkInterfaces", [])
                    if r["id"].lower() != nic["id"].lower()]
            if attach:
                refs.append({"id": nic["id"]})
            nsg["body"]["properties"]["networkInterfaces"] = refs

    def _delete_networkInterfaces(self, record, api) -> Reply:
        vm = record["body"]["properties"].get("virtualMachine")
        if vm:
            raise ArmError(400, "NicInUse", f"Network Interface {record['body']['id']} is used by existing resource "
                                            f"{vm['id']}. In order to delete the network interface, it must be "
                                            "dissociated from the resource. To learn more, see aka.ms/deletenic.")
        return self._accepted_delete(record, api)

    # --- Microsoft.Compute ----------------------------------------------------------------

    def _put_disks(self, rg, name, resource_id, record, body, api, location) -> Reply:
        """Standalone disks: `Empty` data disks only (OS disks come with their VM)."""
        kind = KINDS[("microsoft.compute", "disks")]
        props = body.get("properties") or {}
        size = props.get("diskSizeGB")
        if record:
            old = record["body"]
            if size is not None and size < old["properties"]["diskSizeGB"]:
                raise ArmError(400, "BadRequest", f"Disk resizing is allowed only to larger sizes. Current size is "
                                                  f"{old['properties']['diskSizeGB']} GB.", "diskSizeGB")
            new = copy.deepcopy(old)
            new["properties"]["diskSizeGB"] = size or old["properties"]["diskSizeGB"]
            if "tags" in body:
                new["tags"] = body["tags"] or {}
        else:
            create = (props.get("creationData") or {}).get("createOption")
            if create != "Empty":
                raise ArmError(400, "InvalidParameter", f"The lab creates standalone disks with createOption "
                                                        f"Empty only (got {create!r}).", "creationData.createOption")
            if not isinstance(size, int) or size < 1:
                raise ArmError(400, "InvalidParameter", "Required parameter 'diskSizeGB' is missing (null).",
                               "diskSizeGB")
            sku = (body.get("sku") or {}).get("name", "Standard_LRS")
            new = self._base(resource_id, kind, name, location, body, record)
            new["sku"] = {"name": sku, "tier": sku.split("_")[0]}
            new["properties"] = {"creationData": {"createOption": "Empty"}, "diskSizeGB": size,
                                 "diskState": "Unattached", "timeCreated": _now_iso(), "uniqueId": str(uuid.uuid4())}
        self.put_record(new, (record or {}).get("lab", {}))
        new["properties"]["provisioningState"] = "Updating"
        op = self._start_operation("Microsoft.Compute", new["location"], api, new["id"], "put")
        return Reply(202, None, self._lro_headers(op))  # Compute answers disk PUTs 202, body-less

    def _delete_disks(self, record, api) -> Reply:
        holder = record["body"].get("managedBy")
        if holder:
            raise ArmError(409, "OperationNotAllowed", f"Disk {record['body']['name']} is attached to VM {holder}.")
        return self._accepted_delete(record, api)

    def _check_os_profile(self, os_profile: dict) -> list[str]:
        """Validate osProfile as Azure does; return the authorized_keys lines for the lab host."""
        user = os_profile.get("adminUsername")
        if not user:
            raise ArmError(400, "InvalidParameter", "Required parameter 'adminUsername' is missing (null).",
                           "adminUsername")
        if user.lower() in RESERVED_ADMIN_NAMES or not ADMIN_USER_RE.match(user) or len(user) > 64:
            raise ArmError(400, "InvalidParameter", "The Admin Username specified is not allowed.", "adminUsername")
        computer = os_profile.get("computerName") or ""
        if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$", computer) or computer.isdigit():
            raise ArmError(400, "InvalidParameter", f"Linux host name cannot exceed 64 characters in length or "
                                                    f"contain the following characters: ` ~ ! @ # $ % ^ & * ( ) = + "
                                                    f"_ [ ] {{ }} \\ | ; : ' \" , < > / ?. (got {computer!r})",
                           "computerName")
        linux = os_profile.get("linuxConfiguration") or {}
        keys = (linux.get("ssh") or {}).get("publicKeys") or []
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
        for ref in refs:
            nic = self.get(ref.get("id"))
            if not nic or nic["body"]["type"] != "Microsoft.Network/networkInterfaces":
                raise ArmError(404, "NotFound", f"Resource {ref.get('id')} not found.", "networkInterfaces")
            holder = _ref(nic["body"]["properties"].get("virtualMachine"))
            if holder and holder.lower() != vm_id.lower():
                raise ArmError(400, "NicInUse", f"Network Interface {nic['body']['id']} is used by existing resource "
                                                f"{holder}.", "networkProfile.networkInterfaces")
            nics.append(nic)
        return nics

    @staticmethod
    def _same(a, b) -> bool:
        return (a or None) == (b or None)

    def _check_immutable(self, old: dict, new_profile: dict) -> None:
        old_profile = old["properties"]["osProfile"]
        for key, target in (("adminUsername", "adminUsername"), ("computerName", "computerName")):
            if key in new_profile and not self._same(new_profile[key], old_profile.get(key)):
                raise ArmError(409, "PropertyChangeNotAllowed", f"Changing property '{target}' is not allowed.",
                               target)
        new_keys = ((new_profile.get("linuxConfiguration") or {}).get("ssh") or {}).get("publicKeys")
        old_keys = ((old_profile.get("linuxConfiguration") or {}).get("ssh") or {}).get("publicKeys")
        if new_keys is not None and [(k.get("path"), (k.get("keyData") or "").strip()) for k in new_keys] != \
                [(k.get("path"), (k.get("keyData") or "").strip()) for k in old_keys or []]:
            raise ArmError(409, "PropertyChangeNotAllowed",
                           "Changing property 'linuxConfiguration.ssh.publicKeys' is not allowed.",
                           "linuxConfiguration.ssh.publicKeys")

    def _put_virtualMachines(self, rg, name, resource_id, record, body, api, location) -> Reply:
        kind = KINDS[("microsoft.compute", "virtualmachines")]
        props = copy.deepcopy(body.get("properties") or {})
        if record:
            old = record["body"]
            self._check_immutable(old, props.get("osProfile") or {})
            self._vm_nics(old["id"], props.get("networkProfile") or old["properties"]["networkProfile"])
            new = self._base(resource_id, kind, name, location, body, record)
            new["properties"] = _merge(copy.deepcopy(old["properties"]), {
                k: v for k, v in props.items() if k in ("hardwareProfile", "diagnosticsProfile", "priority",
                                                        "additionalCapabilities", "securityProfile", "userData")})
            for kept in ("zones", "plan", "identity"):
                if kept in old:
                    new[kept] = old[kept]
            if "identity" in body:
                self._set_identity(new, body["identity"])
            delete_option = ((props.get("storageProfile") or {}).get("osDisk") or {}).get("deleteOption")
            if delete_option in ("Delete", "Detach"):
                new["properties"]["storageProfile"]["osDisk"]["deleteOption"] = delete_option
            return self._accepted_put(new, record, api)

        if not (props.get("hardwareProfile") or {}).get("vmSize"):
            raise ArmError(400, "InvalidParameter", "Required parameter 'hardwareProfile.vmSize' is missing (null).",
                           "hardwareProfile.vmSize")
        os_profile = props.get("osProfile")
        if not os_profile:
            raise ArmError(400, "InvalidParameter", "Required parameter 'osProfile' is missing (null).", "osProfile")
        os_profile.setdefault("computerName", name)
        keys = self._check_os_profile(os_profile)
        nics = self._vm_nics(resource_id, props.get("networkProfile") or {})
        storage = props.get("storageProfile") or {}
        image = storage.get("imageReference")
        if not image:
            raise ArmError(400, "InvalidParameter", "Required parameter 'imageReference' is missing (null).",
                           "imageReference")
        os_disk = dict(storage.get("osDisk") or {})
        disk_name = os_disk.get("name") or f"{name}_OsDisk_1_{uuid.uuid4().hex}"
        disk_id = f"/subscriptions/{self.sub}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{disk_name}"
        if self.get(disk_id):
            raise ArmError(409, "Conflict", f"Disk {disk_name} already exists in resource group {rg.upper()}. "
                                            "Only CreateOption.Attach is supported.", "osDisk.name")
        managed = dict(os_disk.get("managedDisk") or {})
        managed.setdefault("storageAccountType", "Premium_LRS")
        managed["id"] = disk_id
        new_os_disk = {"osType": "Linux", "name": disk_name, "createOption": os_disk.get("createOption", "FromImage"),
                       "caching": os_disk.get("caching", "ReadWrite"), "managedDisk": managed,
                       "deleteOption": os_disk.get("deleteOption", "Detach"),
                       "diskSizeGB": os_disk.get("diskSizeGB", 30)}
        vm_id = str(uuid.uuid4())
        new = self._base(resource_id, kind, name, location, body, record)
        if body.get("zones"):
            new["zones"] = body["zones"]
        self._set_identity(new, body.get("identity"))
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
                             else "22.04.202501010")
        new["properties"] = {
            **{k: v for k, v in props.items() if k not in ("osProfile", "storageProfile", "networkProfile")},
            "vmId": vm_id,
            "storageProfile": {"imageReference": image_out, "osDisk": new_os_disk, "dataDisks": [],
                               "diskControllerType": "SCSI"},
            "osProfile": os_profile,
            "networkProfile": {"networkInterfaces": [
                {"id": nic["body"]["id"], **({"properties": ref["properties"]} if ref.get("properties") else {})}
                for nic, ref in zip(nics, props["networkProfile"]["networkInterfaces"], strict=True)]},
            "timeCreated": _now_iso(),
        }
        for nic in nics:
            nic["body"]["properties"]["virtualMachine"] = {"id": resource_id}
            nic["body"]["properties"]["macAddress"] = "00-0D-3A-" + "-".join(
                f"{b:02X}" for b in hashlib.sha256(nic["body"]["id"].lower().encode()).digest()[:3])
        self.put_record({"id": disk_id, "name": disk_name, "type": "Microsoft.Compute/disks",
                         "location": new["location"], "managedBy": resource_id,
                         "sku": {"name": managed["storageAccountType"], "tier": managed["storageAccountType"]
                                 .split("_")[0]},
                         "properties": {"osType": "Linux", "hyperVGeneration": "V2",
                                        "creationData": {"createOption": "FromImage", "imageReference": {
                                            "id": f"/Subscriptions/{self.sub}/Providers/Microsoft.Compute/Locations/"
                                                  f"{new['location']}/Publishers/{image.get('publisher')}/ArtifactTypes/"
                                                  f"VMImage/Offers/{image.get('offer')}/Skus/{image.get('sku')}/"
                                                  f"Versions/{image_out['exactVersion']}"}},
                                        "diskSizeGB": new_os_disk["diskSizeGB"], "diskState": "Attached",
                                        "provisioningState": "Succeeded", "timeCreated": _now_iso(),
                                        "uniqueId": str(uuid.uuid4())}})
        address = self._vm_public_ip(nics[0])
        host = self.host_name(resource_id)
        job = None
        if self.settings().get("lab_hosts", True):
            job = {"kind": "start_host", "name": host, "keys": keys, "address": address,
                   "admin_user": os_profile["adminUsername"], "hostname": os_profile["computerName"].lower(),
                   "host_kind": lab_host_kind(image)}
        lab = {"host": host if job else None, "address": address, "power": "starting",
               "suite": lab_host_kind(image).get("suite", DEFAULT_HOST_KIND["suite"])}
        return self._accepted_put(new, None, api, job, lab=lab, creating_state="Creating")

    def _vm_public_ip(self, nic: dict) -> str | None:
        configs = nic["body"]["properties"]["ipConfigurations"]
        primary = next((c for c in configs if c["properties"].get("primary")), configs[0])
        pip = self.get(_ref(primary["properties"].get("publicIPAddress")))
        if not pip:
            return None
        if not pip["body"]["properties"].get("ipAddress"):  # Dynamic: assigned when the VM starts
            pip["body"]["properties"]["ipAddress"] = self._reserve_address(pip["body"]["id"])
        return pip["body"]["properties"]["ipAddress"]

    def _identity(self, spec: dict | None, old: dict | None) -> dict | None:
        """A VM's managed identity as Azure returns it (ids made up once, kept across updates)."""
        kind = (spec or {}).get("type") or "None"
        if kind == "None":
            return None
        out = {"type": kind}
        if "SystemAssigned" in kind:
            out["principalId"] = (old or {}).get("principalId") or str(uuid.uuid4())
            out["tenantId"] = self.tenant
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

    def _patch_vm(self, record: dict, body: dict, api: str) -> Reply:
        old = record["body"]
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
        allowed = {k: v for k, v in props.items() if k in ("hardwareProfile", "diagnosticsProfile",
                                                          "additionalCapabilities", "securityProfile", "userData")}
        _merge(old["properties"], allowed)
        if "identity" in body:
            self._set_identity(old, body["identity"])
        delete_option = (((props.get("storageProfile") or {}).get("osDisk") or {}).get("deleteOption"))
        if delete_option:
            if delete_option not in ("Delete", "Detach"):
                raise ArmError(400, "InvalidParameter", f"The value {delete_option} of parameter "
                                                        "'osDisk.deleteOption' is not allowed.",
                               "osDisk.deleteOption")
            old["properties"]["storageProfile"]["osDisk"]["deleteOption"] = delete_option
        old["properties"]["provisioningState"] = "Updating"
        op = self._start_operation("Microsoft.Compute", old["location"], api, old["id"], "put")
        return Reply(200, self._out(record), self._lro_headers(op))

    def _delete_virtualMachines(self, record, api) -> Reply:
        body = record["body"]
        removes = []
        os_disk = body["properties"]["storageProfile"]["osDisk"]
        if os_disk.get("deleteOption") == "Delete":
            removes.append(os_disk["managedDisk"]["id"].lower())
        for ref in body["properties"]["networkProfile"]["networkInterfaces"]:
            if (ref.get("properties") or {}).get("deleteOption") == "Delete":
                removes.append(ref["id"].lower())
        host = record["lab"].get("host")
        record["lab"]["power"] = "stopping"
        return self._accepted_delete(record, api, {"kind": "stop_hosts", "names": [host]} if host else None,
                                     also=removes)

    def _detach_vm(self, vm: dict) -> None:
        disk = self.get(vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"])
        if disk:
            disk["body"].pop("managedBy", None)
            disk["body"]["properties"]["diskState"] = "Unattached"
        for ref in vm["properties"]["networkProfile"]["networkInterfaces"]:
            nic = self.get(ref["id"])
            if nic:
                nic["body"]["properties"].pop("virtualMachine", None)

    def _instance_view(self, record: dict) -> dict:
        body, lab = record["body"], record["lab"]
        state = body["properties"].get("provisioningState", "Succeeded")
        power = {"starting": ("PowerState/starting", "VM starting"), "running": ("PowerState/running", "VM running"),
                 "stopping": ("PowerState/stopping", "VM stopping"), "stopped": ("PowerState/stopped", "VM stopped"),
                 "deallocating": ("PowerState/deallocating", "VM deallocating"),
                 "deallocated": ("PowerState/deallocated", "VM deallocated")}[lab.get("power", "running")]
        statuses = [{"code": f"ProvisioningState/{state.lower()}", "level": "Info" if state != "Failed" else "Error",
                     "displayStatus": f"Provisioning {state.lower()}"}]
        if state == "Succeeded":
            statuses[0]["time"] = body["properties"].get("timeCreated")
        statuses.append({"code": power[0], "level": "Info", "displayStatus": power[1]})
        disk = body["properties"]["storageProfile"]["osDisk"]
        return {"computerName": body["properties"]["osProfile"]["computerName"], "osName": "debian",
                "osVersion": DEBIAN_VERSIONS[lab.get("suite", DEFAULT_HOST_KIND["suite"])], "hyperVGeneration": "V2",
                "vmAgent": {"vmAgentVersion": "2.9.1.1", "statuses": [
                    {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready",
                     "message": "Guest Agent is running"}]},
                "disks": [{"name": disk["name"], "statuses": statuses[:1]}],
                "statuses": statuses}

    def _vm_sub(self, method: str, rg: str, name: str, action: str, body: dict | None, api: str) -> Reply:
        kind = KINDS[("microsoft.compute", "virtualmachines")]
        record = self.get(self.rid(rg, kind, name))
        if not record:
            raise self._not_found(kind, rg, name)
        if action == "instanceview" and method == "GET":
            return Reply(200, self._instance_view(record))
        if action == "runcommand" and method == "POST":
            return self._run_command(record, body or {}, api)
        if action in ("deallocate", "start") and method == "POST":
            return self._power(record, action, api)
        raise ArmError(404, "InvalidRequestUri", f"Action '{action}' on virtual machines is not emulated.")

    def _run_command(self, record: dict, body: dict, api: str) -> Reply:
        """POST .../runCommand: accepted at once, run in the background, polled like any operation."""
        vm, lab = record["body"], record["lab"]
        command_id = body.get("commandId")
        if not command_id:
            raise ArmError(400, "InvalidParameter", "Required parameter 'commandId' is missing (null).", "commandId")
        if command_id not in LINUX_RUN_COMMANDS:
            raise ArmError(404, "NotFound", "The entity was not found in this Azure location.")
        if lab.get("power") != "running":
            raise ArmError(409, *NOT_RUNNING)
        script = LINUX_RUN_COMMANDS[command_id] or [str(line) for line in body.get("script") or []]
        # Parameters reach a Linux script as its positional arguments, in order.
        args = [str(p.get("value", "")) for p in body.get("parameters") or []]
        job = {"kind": "run_command", "host": lab.get("host"), "vm": vm["name"], "script": "\n".join(script),
               "args": args}
        op = self._start_operation("Microsoft.Compute", vm["location"], api, vm["id"], "runCommand", job)
        return Reply(202, None, self._lro_headers(op), log={"run_command": {
            "commandId": command_id, "script": script, "parameters": body.get("parameters") or []}})

    def _power(self, record: dict, action: str, api: str) -> Reply:
        """POST .../deallocate or .../start: the lab host's container stops (disk kept) or boots again."""
        vm, lab = record["body"], record["lab"]
        if vm["properties"].get("provisioningState") in ("Creating", "Deleting"):
            raise ArmError(409, "OperationNotAllowed", f"Operation '{action}' is not allowed on VM '{vm['name']}' "
                                                       "since the VM is being created or deleted.")
        lab["power"] = "deallocating" if action == "deallocate" else "starting"
        job = {"kind": action, "host": lab["host"], "vm": vm["name"]} if lab.get("host") else None
        op = self._start_operation("Microsoft.Compute", vm["location"], api, vm["id"], action, job)
        return Reply(202, None, self._lro_headers(op))

    # --- start-up after a restart -----------------------------------------------------------

    def resume(self) -> None:
        """Lab-host jobs that died with the previous process run again (start_host replaces a
        half-started container of the same name; stop_host of a gone one is a no-op)."""
        for op in self.store.operations.values():
            if op["status"] == "InProgress" and op["work"] == "pending" and op.get("job"):
                self._launch(op)
