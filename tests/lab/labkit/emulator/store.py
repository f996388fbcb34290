"""Emulator state on disk: configuration, resources, operations and keys as JSON, written
atomically after every change so a restarted emulator carries on where it stopped."""

from __future__ import annotations

import json
import os
import secrets
import threading
import uuid
from pathlib import Path

DEFAULT_STATE_DIR = Path(os.environ.get("SSHCA_EMULATOR_DIR", "/var/lib/sshca-lab/emulator"))


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_config(state_dir: Path) -> dict:
    """Identities of the emulated tenant; made once per state dir."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "config.json"
    if path.exists():
        return json.loads(path.read_text())
    config = {
        "subscription_id": str(uuid.uuid4()),
        "tenant_id": str(uuid.uuid4()),
        "client_id": str(uuid.uuid4()),
        "client_secret": secrets.token_urlsafe(24),
        "token_key": secrets.token_hex(32),
        # Hosts of this emulator are named with this prefix, so `down` removes its own only.
        "instance": secrets.token_hex(2),
    }
    write_atomic(path, json.dumps(config, indent=2))
    return config


class Store:
    """Everything the emulator knows, behind one re-entrant lock (held for each request)."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "resources.json"
        self.lock = threading.RLock()
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.resources: dict[str, dict] = data.get("resources", {})  # lower-case id -> {"body", "lab"}
        self.operations: dict[str, dict] = data.get("operations", {})
        self.keys: dict[str, list[dict]] = data.get("keys", {})  # key name -> versions, newest last
        self.deleted_keys: dict[str, dict] = data.get("deleted_keys", {})

    def save(self) -> None:
        with self.lock:
            text = json.dumps({"resources": self.resources, "operations": self.operations,
                               "keys": self.keys, "deleted_keys": self.deleted_keys}, indent=1)
            write_atomic(self.path, text)
