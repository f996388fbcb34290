"""The collection artifact users install carries the collection and nothing of the lab."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_built_artifact_has_no_lab_terraform_bench_tools_or_virtualenv(tmp_path):
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    subprocess.run([str(galaxy), "collection", "build", "--output-path", str(tmp_path), str(REPO)],
                   check=True, capture_output=True)
    (artifact,) = tmp_path.glob("sshca-azure-*.tar.gz")
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    assert "meta/runtime.yml" in names
    unwanted = ("tests/lab", "terraform", "bench", "tools", ".venv", ".git/", "tests/output", ".ci")
    assert [n for n in names if n.startswith(unwanted)] == []
