"""The lab's Azure emulator (ARM, Entra ID token endpoint, Key Vault keys over HTTPS) and the
helpers tests, benchmarks and `labctl` use to run it and talk to its control API.

    emu = emulator.up(state_dir)        # background process, returns once it answers
    os.environ.update(emu.env())        # what an Azure SDK client needs
    emu.set_faults(retry_after=1, faults={"rate": 0.3, "statuses": [429, 503]})
    emu.requests()                      # the request log, oldest first
    emulator.down(state_dir)            # stop it and remove the lab hosts it made
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from .. import hosts
from .store import DEFAULT_STATE_DIR, load_config

LABKIT_PARENT = Path(__file__).resolve().parent.parent.parent
OWNER = "emulator"


class EmulatorError(RuntimeError):
    pass


def _alive(pid: int) -> bool:
    """True while the process runs; a zombie (our own exited child, not reaped yet) is gone."""
    try:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Client:
    """A running (or stopped) emulator, described by its state dir."""

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR):
        self.state_dir = Path(state_dir)
        self.config = load_config(self.state_dir)

    @property
    def port(self) -> int:
        return int((self.state_dir / "port").read_text())

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_bundle(self) -> Path:
        return self.state_dir / "ca-bundle.pem"

    @property
    def pid(self) -> int | None:
        try:
            pid = int((self.state_dir / "pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    @property
    def host_prefix(self) -> str:
        return f"az{self.config['instance']}-"

    def env(self) -> dict[str, str]:
        """Variables for Azure SDK clients, the azure.azcollection spellings, and the lab's own."""
        c, url = self.config, self.base_url
        return {
            "AZURE_SUBSCRIPTION_ID": c["subscription_id"],
            "AZURE_TENANT_ID": c["tenant_id"],
            "AZURE_TENANT": c["tenant_id"],
            "AZURE_CLIENT_ID": c["client_id"],
            "AZURE_CLIENT_SECRET": c["client_secret"],
            "AZURE_SECRET": c["client_secret"],
            "AZURE_AUTHORITY_HOST": url,
            "AZURE_RESOURCE_MANAGER_ENDPOINT": url,
            "SSHCA_ARM_ENDPOINT": url,
            "SSHCA_KEYVAULT_URL": url + "/",
            "SSHCA_EMULATOR_URL": url + "/_lab",
            "SSHCA_EMULATOR_DIR": str(self.state_dir),
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
            "SSL_CERT_FILE": str(self.ca_bundle),
        }

    # --- control API ------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float = 10) -> dict | None:
        context = ssl.create_default_context(cafile=str(self.state_dir / "ca.pem"))
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}/_lab/{path}", data=data, method=method,  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        # Loopback only, and never through a proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        with opener.open(request, timeout=timeout) as response:
            text = response.read()
        return json.loads(text) if text else None

    def healthy(self) -> bool:
        try:
            return bool(self._call("GET", "health", timeout=2))
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def faults(self) -> dict:
        return self._call("GET", "faults")

    def set_faults(self, **settings) -> dict:
        """Merge settings (see labkit.emulator.server.DEFAULT_SETTINGS) into the running emulator's."""
        return self._call("PATCH", "faults", settings)

    def set_throttling(self, **scales: float | None) -> dict:
        """Scale ARM's (`arm=`) or Compute's (`compute=`) token buckets; None: count, never refuse."""
        return self.set_faults(throttling={**self.faults().get("throttling", {}), **scales})

    def reset_faults(self) -> dict:
        return self._call("PUT", "faults", {})

    def requests(self, since: float = 0) -> list[dict]:
        return self._call("GET", f"requests?since={since}")["value"]

    def reset_log(self) -> None:
        self._call("POST", "reset-log")

    def state(self) -> dict:
        return self._call("GET", "state")

    def lab_hosts(self) -> list[hosts.Host]:
        return [h for h in hosts.list_hosts(OWNER) if h.name.startswith(self.host_prefix)]

    # --- real Azure SDK clients, set up the way a user points them at this emulator ---------

    def sdk_clients(self) -> SimpleNamespace:
        """`.resource`, `.network`, `.compute` management clients and their `.credential`."""
        from azure.identity import ClientSecretCredential
        from azure.mgmt.compute import ComputeManagementClient
        from azure.mgmt.network import NetworkManagementClient
        from azure.mgmt.resource.resources import ResourceManagementClient

        env = self.env()
        # azure-core's transport reads the CA bundle from the environment, as for any user.
        os.environ.update({name: env[name] for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")})
        credential = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"],
                                            env["AZURE_CLIENT_SECRET"], authority=env["AZURE_AUTHORITY_HOST"],
                                            disable_instance_discovery=True)
        common = {"base_url": self.base_url, "credential_scopes": [self.base_url + "/.default"],
                  "polling_interval": 1}
        subscription = env["AZURE_SUBSCRIPTION_ID"]
        return SimpleNamespace(credential=credential,
                               resource=ResourceManagementClient(credential, subscription, **common),
                               network=NetworkManagementClient(credential, subscription, **common),
                               compute=ComputeManagementClient(credential, subscription, **common))

    def make_network(self, resource_group: str, location: str, vnet: str = "vnet",
                     address_space: str = "10.30.0.0/16", subnet_prefix: str = "10.30.1.0/24") -> str:
        """A resource group and a VNet with subnet `hosts`, as terraform/modules/network makes them;
        returns the subnet id."""
        clients = self.sdk_clients()
        clients.resource.resource_groups.create_or_update(resource_group, {"location": location})
        network = clients.network.virtual_networks.begin_create_or_update(resource_group, vnet, {
            "location": location,
            "properties": {"addressSpace": {"addressPrefixes": [address_space]},
                           "subnets": [{"name": "hosts", "properties": {"addressPrefix": subnet_prefix}}]},
        }).result()
        return network.subnets[0].id


def up(state_dir: Path = DEFAULT_STATE_DIR, port: int | None = None, timeout: float = 30) -> Client:
    """Start the emulator in the background (if it is not running) and wait until it answers."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    client = Client(state_dir)
    if client.pid and client.healthy():
        return client
    (state_dir / "pid").unlink(missing_ok=True)
    argv = [sys.executable, "-m", "labkit.emulator", "--state-dir", str(state_dir)]
    if port:
        argv += ["--port", str(port)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(LABKIT_PARENT),
                                                                       os.environ.get("PYTHONPATH")]))}
    with open(state_dir / "server.log", "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                   start_new_session=True, cwd=state_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (state_dir / "server.log").read_text().splitlines()[-15:]
            raise EmulatorError("emulator exited at start:\n" + "\n".join(tail))
        if (state_dir / "pid").exists() and client.healthy():
            return client
        time.sleep(0.1)
    process.terminate()
    raise EmulatorError(f"emulator did not answer within {timeout:.0f} s; see {state_dir / 'server.log'}")


def stop(state_dir: Path = DEFAULT_STATE_DIR, timeout: float = 10) -> bool:
    """Stop the emulator process only (its lab hosts and state stay); True if it was running."""
    client = Client(state_dir)
    pid = client.pid
    if not pid:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    (Path(state_dir) / "pid").unlink(missing_ok=True)
    return True


def down(state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    """Stop the emulator, remove every lab host it made and forget its resources (the CA, the
    identities and fault settings stay); returns the hosts removed."""
    stop(state_dir)
    client = Client(state_dir)
    removed = []
    for host in client.lab_hosts():
        hosts.stop_host(host.name)
        removed.append(host.name)
    # Resources whose hosts are gone would lie: the next `up` starts with an empty subscription.
    (Path(state_dir) / "resources.json").unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def running(state_dir: Path, port: int | None = None) -> Iterator[Client]:
    """An emulator for the duration of a block (a test module, a benchmark); torn down after."""
    client = up(state_dir, port)
    try:
        yield client
    finally:
        down(state_dir)
