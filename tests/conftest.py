"""Shared pytest fixtures: lab hosts and throwaway SSH keys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "lab")]

from labkit import hosts  # noqa: E402
from tools.collection import collection_env, make_importable  # noqa: E402


def pytest_collection_modifyitems(items):
    """Lab tests first: with several workers (make test steals work between them), the long ones start
    at once and the quick unit tests fill the gaps at the end, instead of one worker finishing a long
    lab test alone."""
    items.sort(key=lambda item: item.get_closest_marker("lab") is None)


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path

    @property
    def public_text(self) -> str:
        return self.public.read_text()


def make_keypair(folder: Path, name: str = "id_ed25519", key_type: str = "ed25519") -> KeyPair:
    """A keypair made by the real ssh-keygen, the way a user's key would be."""
    private = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", name, "-f", str(private)], check=True)
    return KeyPair(private, private.with_name(name + ".pub"))


@pytest.fixture
def keypair(tmp_path: Path) -> KeyPair:
    return make_keypair(tmp_path)


def lab_available() -> bool:
    return os.geteuid() == 0 and shutil.which("podman") is not None


@pytest.fixture
def lab_host_factory():
    """Start lab hosts on demand; every host started is removed afterwards, pass or fail."""
    if not lab_available():
        pytest.fail("lab hosts need root and podman: run `make setup` first")
    started: list[str] = []

    def start(authorized_keys, **kwargs) -> hosts.Host:
        name = kwargs.pop("name", None) or f"t-{uuid.uuid4().hex[:8]}"
        started.append(name)
        return hosts.start_host(name, authorized_keys, owner="pytest", **kwargs)

    yield start
    for name in started:
        hosts.stop_host(name)


@pytest.fixture
def lab_host(lab_host_factory, keypair):
    """A running lab host whose admin user `azureuser` authorizes `keypair`."""
    return lab_host_factory([keypair.public_text])


# --- running the collection's modules through real ansible-playbook -------------------------

# Module code under test is imported as ansible_collections.sshca.azure, this checkout.
make_importable()


# The head of a playbook that runs its tasks on the controller, with the controller's Python.
LOCALHOST_PLAY = (
    "- hosts: localhost\n"
    "  gather_facts: false\n"
    "  vars:\n"
    "    ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    "  tasks:\n"
)


@dataclass
class ModuleRun:
    result: dict
    output: str  # everything ansible-playbook printed, for no_log checks

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))


@pytest.fixture
def ansible_module(tmp_path: Path):
    """Run one sshca.azure module on localhost via ansible-playbook and return its result.

    `ansible_module("ssh_keypair", {"path": ...}, check=True, diff=True)`; failures are
    returned (result["failed"]), not raised, so tests can assert on the message.
    """
    counter = iter(range(10_000))

    def run(module: str, args: dict, *, check: bool = False, diff: bool = False,
            verbosity: int = 0) -> ModuleRun:
        n = next(counter)
        out = tmp_path / f"result-{n}.json"
        playbook = tmp_path / f"play-{n}.yml"
        variables = tmp_path / f"vars-{n}.json"
        variables.write_text(json.dumps({"module_args": args, "result_file": str(out)}))
        playbook.write_text(
            LOCALHOST_PLAY
            + f"    - name: Run {module}\n"
            f"      sshca.azure.{module}: '{{{{ module_args }}}}'\n"
            "      register: module_result\n"
            "      ignore_errors: true\n"
            "    - name: Save the result\n"
            "      ansible.builtin.copy:\n"
            "        content: '{{ module_result | to_json }}'\n"
            "        dest: '{{ result_file }}'\n"
            "        mode: '0600'\n"
            "      check_mode: false\n"
            "      diff: false\n"
        )
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                str(playbook), "-e", f"@{variables}"]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        if verbosity:
            argv.append("-" + "v" * verbosity)
        proc = subprocess.run(argv, capture_output=True, text=True, env=collection_env(), cwd=tmp_path,
                              check=False)
        if not out.exists():
            raise AssertionError(f"ansible-playbook did not run the module:\n{proc.stdout}\n{proc.stderr}")
        return ModuleRun(json.loads(out.read_text()), proc.stdout + proc.stderr)

    return run
