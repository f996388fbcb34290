"""Lab test hosts: Podman containers of Debian with systemd and OpenSSH on the host network.

Each host binds sshd to its own loopback address 127.0.0.N, the way a VM answers on its public
IP. Containers carry their settings in labels, so listing and cleaning up needs no state file.
Three kinds stand in for Azure's Ubuntu VMs (tests/lab/README.md says how they differ from it):
bookworm/service, trixie/service, and trixie/socket (ssh.socket starts sshd, as on Ubuntu 24.04).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import image, podman

LAB_DIR = Path(os.environ.get("SSHCA_LAB_DIR", "/var/lib/sshca-lab"))
CONTAINER_PREFIX = "sshca-lab-"
LABEL = "io.sshca.lab"
ADDRESS_POOL = [f"127.0.0.{n}" for n in range(10, 251)]
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SSH_ACTIVATIONS = ("service", "socket")
# Suites whose sshd takes its listening socket from systemd (LISTEN_FDS); bookworm's 9.2 does not.
SOCKET_AWARE_SUITES = ("trixie",)

# Options for a one-off login that must not be helped by any agent, config or master socket.
SSH_BASE_OPTIONS = (
    "-F", "/dev/null",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityAgent=none",
    "-o", "ControlMaster=no",
    "-o", "ControlPath=none",
    "-o", "ConnectTimeout=10",
)


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    admin_user: str
    hostname: str
    owner: str
    container: str
    suite: str = image.DEFAULT_SUITE
    ssh_activation: str = "service"

    @property
    def kind(self) -> str:
        """The host kind, e.g. `trixie/socket`."""
        return f"{self.suite}/{self.ssh_activation}"

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command inside the host as root, bypassing SSH."""
        proc = subprocess.run(["podman", "exec", self.container, *argv], capture_output=True, text=True,
                              check=False)
        if check and proc.returncode != 0:
            raise LabError(f"{self.name}: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def ssh_argv(self, identity: str | os.PathLike | None, *command: str, user: str | None = None,
                 options: Sequence[str] = (), known_hosts: str | None = None) -> list[str]:
        """An ssh command line for this host; without known_hosts, host keys are not checked."""
        host_check = (
            ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
            if known_hosts
            else ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        )
        ident = ["-i", str(identity)] if identity else []
        return ["ssh", *SSH_BASE_OPTIONS, *host_check, *ident, *options,
                f"{user or self.admin_user}@{self.address}", "--", *command]

    def ssh(self, identity, *command: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.ssh_argv(identity, *command, **kwargs), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60, check=False)


def _container(name: str) -> str:
    return CONTAINER_PREFIX + name


def _lab_containers() -> list[dict]:
    return podman.run_json("ps", "-a", "--filter", f"label={LABEL}=1", "--format", "json")


def _host_from(entry: dict) -> Host:
    labels = entry.get("Labels") or {}
    return Host(
        name=labels[f"{LABEL}.name"],
        address=labels[f"{LABEL}.address"],
        admin_user=labels[f"{LABEL}.admin-user"],
        hostname=labels[f"{LABEL}.hostname"],
        owner=labels.get(f"{LABEL}.owner", ""),
        container=entry["Names"][0],
        suite=labels.get(f"{LABEL}.suite", image.DEFAULT_SUITE),
        ssh_activation=labels.get(f"{LABEL}.ssh-activation", "service"),
    )


def list_hosts(owner: str | None = None) -> list[Host]:
    hosts = [_host_from(entry) for entry in _lab_containers()]
    return [h for h in hosts if owner is None or h.owner == owner]


@contextlib.contextmanager
def _lab_lock() -> Iterator[None]:
    """Serialises address choice and container creation across processes (parallel tests)."""
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    with open(LAB_DIR / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _port_open(address: str, port: int = 22) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((address, port)) == 0


def _check_inputs(name: str, address: str | None, admin_user: str, hostname: str, suite: str,
                  ssh_activation: str) -> None:
    if not NAME_RE.match(name):
        raise LabError(f"host name {name!r} must be 1-63 lowercase letters, digits or '-'")
    if not USER_RE.match(admin_user):
        raise LabError(f"admin user {admin_user!r} is not a valid Linux user name")
    if not NAME_RE.match(hostname.split(".")[0]):
        raise LabError(f"hostname {hostname!r} is not a valid host name")
    if address is not None:
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            raise LabError(f"address {address!r} is not an IPv4 address") from None
        if not ip.is_loopback or ip == ipaddress.IPv4Address("127.0.0.1"):
            raise LabError(f"address {address} must be a loopback address 127.0.0.N other than 127.0.0.1")
    if suite not in image.SUITES:
        raise LabError(f"host {name}: suite {suite!r} is not one of {', '.join(image.SUITES)}")
    if ssh_activation not in SSH_ACTIVATIONS:
        raise LabError(f"host {name}: ssh activation {ssh_activation!r} is not one of {', '.join(SSH_ACTIVATIONS)}")
    if ssh_activation == "socket" and suite not in SOCKET_AWARE_SUITES:
        raise LabError(f"host {name}: ssh activation 'socket' needs suite {' or '.join(SOCKET_AWARE_SUITES)}: "
                       f"{suite}'s sshd cannot take its socket from systemd")


def start_host(
    name: str,
    authorized_keys: Iterable[str],
    *,
    address: str | None = None,
    admin_user: str = "azureuser",
    hostname: str | None = None,
    owner: str = "manual",
    suite: str = image.DEFAULT_SUITE,
    ssh_activation: str = "service",
    timeout: float = 120,
) -> Host:
    """Boot a host and return once its sshd answers on its address.

    `suite` picks the Debian image, `ssh_activation` how sshd starts: "service" (ssh.service) or
    "socket" (ssh.socket listens and starts ssh.service for the first connection, as on Ubuntu
    24.04; trixie only). A leftover container of the same name (a crashed run) is replaced; an
    address held by another lab host or by anything else listening on port 22 is refused.
    """
    hostname = hostname or name
    _check_inputs(name, address, admin_user, hostname, suite, ssh_activation)
    keys = [k.strip() for k in authorized_keys if k.strip()]
    if not keys:
        raise LabError(f"host {name}: at least one authorized public key is needed")
    ref = image.ensure(suite)
    container = _container(name)
    with _lab_lock():
        stop_host(name)
        taken = {h.address: h.name for h in list_hosts()}
        if address is None:
            address = next((a for a in ADDRESS_POOL if a not in taken and not _port_open(a)), None)
            if address is None:
                raise LabError("no free loopback address left in the lab pool")
        elif address in taken:
            raise LabError(f"address {address} is already used by lab host {taken[address]}")
        elif _port_open(address):
            raise LabError(f"address {address}: something outside the lab already listens on port 22")

        config = LAB_DIR / "hosts" / name
        shutil.rmtree(config, ignore_errors=True)
        config.mkdir(parents=True, mode=0o700)
        (config / "host.env").write_text(
            f"LAB_ADMIN_USER={admin_user}\nLAB_ADDRESS={address}\nLAB_HOSTNAME={hostname}\n"
            f"LAB_SSH_ACTIVATION={ssh_activation}\n"
        )
        (config / "authorized_keys").write_text("\n".join(keys) + "\n")
        labels = {
            LABEL: "1", f"{LABEL}.name": name, f"{LABEL}.address": address,
            f"{LABEL}.admin-user": admin_user, f"{LABEL}.hostname": hostname, f"{LABEL}.owner": owner,
            f"{LABEL}.suite": suite, f"{LABEL}.ssh-activation": ssh_activation,
        }
        podman.run(
            "run", "--detach", "--name", container, "--systemd=always", "--network=host",
            "--hostname", hostname, "--add-host", f"{hostname}:{address}", "--volume", f"{config}:/etc/lab:ro",
            *[arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")],
            ref,
        )
    host = Host(name, address, admin_user, hostname, owner, container, suite, ssh_activation)
    try:
        wait_for_ssh(address, timeout=timeout)
    except LabError as err:
        logs = podman.run("logs", "--tail", "30", container, check=False)
        stop_host(name)
        raise LabError(f"{err}\n--- container log ---\n{logs}") from None
    return host


def wait_for_ssh(address: str, port: int = 22, timeout: float = 120) -> None:
    """Wait until an SSH server banner comes back from address:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=2) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise LabError(f"sshd did not answer on {address}:{port} within {timeout:.0f} s")
        time.sleep(0.2)


def stop_host(name: str) -> bool:
    """Remove the host's container and its settings; True if there was one."""
    container = _container(name)
    existed = subprocess.run(["podman", "container", "exists", container], check=False).returncode == 0
    if existed:
        podman.run("rm", "--force", "--time", "0", container)
    shutil.rmtree(LAB_DIR / "hosts" / name, ignore_errors=True)
    return existed


def stop_all(owner: str | None = None) -> list[str]:
    removed = []
    for host in list_hosts(owner):
        stop_host(host.name)
        removed.append(host.name)
    return removed
