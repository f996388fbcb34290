"""Podman on these machines: the settings it needs, and a small runner."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

CONTAINERS_CONF = Path("/etc/containers/containers.conf")

# Measured here: crun fails on the hybrid cgroup setup and the default ulimits are refused,
# so runc and lowered limits are required for any container to start.
REQUIRED_SETTINGS = {
    "containers": {"default_ulimits": '["nofile=10000:10000", "nproc=1000:1000"]'},
    "engine": {"runtime": '"runc"'},
}


class PodmanError(RuntimeError):
    pass


def configure(path: Path = CONTAINERS_CONF) -> bool:
    """Write REQUIRED_SETTINGS into containers.conf, keeping anything else; True if changed."""
    text = path.read_text() if path.exists() else ""
    new = text
    for table, settings in REQUIRED_SETTINGS.items():
        for key, value in settings.items():
            new = _set_toml_key(new, table, key, value)
    if new == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new)
    tmp.replace(path)
    return True


def _set_toml_key(text: str, table: str, key: str, value: str) -> str:
    """Set `key = value` under `[table]`, line by line, leaving every other line as it was."""
    lines = text.splitlines()
    wanted = f"{key} = {value}"
    header = f"[{table}]"
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == header)
    except StopIteration:
        return "\n".join([*lines, "", header, wanted]).lstrip("\n") + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for i in range(start + 1, end):
        if re.match(rf"[ \t]*{re.escape(key)}[ \t]*=", lines[i]):
            lines[i] = wanted
            break
    else:
        lines.insert(start + 1, wanted)
    return "\n".join(lines) + "\n"


def run(*args: str, check: bool = True, input: bytes | None = None) -> str:
    proc = subprocess.run(["podman", *args], capture_output=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise PodmanError(f"podman {' '.join(args[:2])} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode()


def run_json(*args: str) -> list | dict:
    out = run(*args)
    return json.loads(out) if out.strip() else []
