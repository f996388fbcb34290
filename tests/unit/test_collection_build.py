"""The collection artifact users install: the collection, what an execution environment needs, nothing of the lab."""

from __future__ import annotations

import ast
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """The collection tarball `ansible-galaxy collection build` makes of this checkout."""
    out = tmp_path_factory.mktemp("build")
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    subprocess.run([str(galaxy), "collection", "build", "--output-path", str(out), str(REPO)],
                   check=True, capture_output=True)
    (built,) = out.glob("sshca-azure-*.tar.gz")
    return built


def test_built_artifact_has_no_lab_terraform_bench_tools_or_virtualenv(artifact):
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    assert "meta/runtime.yml" in names
    unwanted = ("tests/lab", "terraform", "bench", "tools", ".venv", ".git/", "tests/output", ".ci")
    assert [n for n in names if n.startswith(unwanted)] == []


def test_artifact_carries_what_ansible_builder_reads_for_an_execution_environment(artifact):
    """ansible-builder takes a collection's dependencies from these files in the installed artifact."""
    with tarfile.open(artifact) as tar:
        meta = yaml.safe_load(tar.extractfile("meta/execution-environment.yml"))
        names = set(tar.getnames())
    assert set(meta["dependencies"].values()) <= names


def _imported_modules(folder: Path) -> set[str]:
    """Every module the shipped Python imports, at any depth (optional imports included)."""
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
    return found


def _requirement_closure(requirements: Path) -> set[str]:
    """Distributions pip installs for a requirements file: the named ones and what they require."""
    todo = [Requirement(line.split("#")[0]).name for line in requirements.read_text().splitlines()
            if line.split("#")[0].strip()]
    closure: set[str] = set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in closure:
            continue
        closure.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return closure


def test_execution_environment_python_requirements_cover_every_import_of_the_collection():
    """An execution environment gets only what requirements.txt brings: a module importing a
    package outside it would fail there, though it works on a controller that happens to have it."""
    closure = _requirement_closure(REPO / "requirements.txt")
    files_by_dist = {name: {str(f) for f in metadata.distribution(name).files or []} for name in closure}
    third_party = {m for m in _imported_modules(REPO / "plugins")
                   if m.split(".")[0] not in sys.stdlib_module_names | {"ansible", "ansible_collections", "__future__"}}
    assert third_party, "the scan found no third-party import at all"

    def shipped(module: str) -> bool:
        path = module.replace(".", "/")
        return any(f == f"{path}.py" or f.startswith(f"{path}/") for files in files_by_dist.values() for f in files)

    assert sorted(m for m in third_party if not shipped(m)) == []
