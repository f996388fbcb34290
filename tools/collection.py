"""This checkout as the `sshca.azure` collection, for ansible-playbook, tests, benchmarks, Molecule
and the Makefile (not shipped: galaxy.yml's build_ignore leaves `tools/` out).

Ansible finds collections at `<root>/ansible_collections/<namespace>/<name>`; each checkout
gets its own root (a symlink to it), so two checkouts testing at once never repoint each other.
Import it with the checkout's top folder on sys.path: `from tools.collection import ...`.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def link_collection(root: Path) -> Path:
    """Make `root/ansible_collections/sshca/azure` this checkout (atomically); return root."""
    link = root / "ansible_collections" / "sshca" / "azure"
    if not (link.is_symlink() and link.resolve() == REPO):
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".azure-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(REPO)
        tmp.replace(link)  # atomic: a parallel test never sees the link missing
    return root


def collections_root() -> Path:
    """The root whose ansible_collections/sshca/azure is this checkout (made on first use)."""
    default = Path.home() / ".cache" / "sshca-azure" / hashlib.sha256(str(REPO).encode()).hexdigest()[:10]
    return link_collection(Path(os.environ.get("SSHCA_COLLECTIONS_ROOT", default)))


def collection_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment in which ansible-playbook resolves `sshca.azure.*` to this checkout."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(collections_root()),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    env.update(extra or {})
    return env


def make_importable() -> None:
    """Let Python import `ansible_collections.sshca.azure` (module_utils in unit tests, benches)."""
    root = str(collections_root())
    if root not in sys.path:
        sys.path.insert(0, root)
