"""The lab host images, one per Debian suite: built from tests/lab/image with debootstrap, tagged by
the suite and a hash of the recipe."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import podman

RECIPE_DIR = Path(__file__).resolve().parent.parent / "image"
REPOSITORY = "localhost/sshca-lab-host"
DEFAULT_SUITE = "bookworm"
# bookworm: OpenSSH 9.2, stands in for Ubuntu 22.04; trixie: OpenSSH 10.0, socket-activation aware.
SUITES = ("bookworm", "trixie")
# lab-boot prepares sshd, then execs systemd as PID 1 (exec form, not `sh -c`); SIGRTMIN+3 is how
# systemd is asked to halt.
# Images of other recipes kept per suite, for other checkouts on the same machine.
KEEP_OTHER_RECIPES = 2
IMPORT_CHANGES = ('CMD ["/usr/local/sbin/lab-boot"]', "STOPSIGNAL SIGRTMIN+3")


def recipe_hash(suite: str = DEFAULT_SUITE) -> str:
    digest = hashlib.sha256("\0".join((suite, *IMPORT_CHANGES)).encode())
    for path in sorted(p for p in RECIPE_DIR.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(RECIPE_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def image_ref(suite: str = DEFAULT_SUITE) -> str:
    return f"{REPOSITORY}:{suite}-{recipe_hash(suite)}"


def exists(ref: str) -> bool:
    return subprocess.run(["podman", "image", "exists", ref], check=False).returncode == 0


def ensure(suite: str = DEFAULT_SUITE, log=sys.stderr) -> str:
    """Return the image for `suite`, building it first if this recipe has never been built."""
    if suite not in SUITES:
        raise podman.PodmanError(f"suite {suite!r} is not one the lab builds ({', '.join(SUITES)})")
    ref = image_ref(suite)
    if exists(ref):
        return ref
    # Parallel test workers all want the image: one builds (one suite at a time), the others wait.
    lock_dir = Path(os.environ.get("SSHCA_LAB_DIR", "/var/lib/sshca-lab"))
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not exists(ref):
            _build(suite, ref, log)
    return ref


def _build(suite: str, ref: str, log) -> None:
    podman.configure()
    started = time.monotonic()
    print(f"lab: building host image {ref} with debootstrap (about a minute, once per recipe)", file=log)
    with tempfile.TemporaryDirectory(prefix="sshca-lab-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        proc = subprocess.run(
            ["sh", str(RECIPE_DIR / "recipe.sh"), suite, str(root)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise podman.PodmanError(f"image recipe failed for {suite}:\n{tail}")
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-cf", "-", "."], stdout=subprocess.PIPE)
        changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
        podman.run("import", *changes, "-", ref, input=tar.stdout.read())
        tar.wait()
        shutil.rmtree(root, ignore_errors=True)
    print(f"lab: built {ref} in {time.monotonic() - started:.0f} s", file=log)
    _remove_stale(suite, ref)


def _remove_stale(suite: str, keep: str) -> None:
    """Drop images of older recipes for this suite, but the newest few: another checkout of the
    project on this machine (a git worktree, a branch) may still boot them. Ones a host uses stay."""
    listing = podman.run("images", "--format", "{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}", REPOSITORY, check=False)
    older = sorted((line.split("\t") for line in listing.splitlines() if "\t" in line), reverse=True)
    tags = [tag for _created, tag in older if tag != keep and tag.startswith(f"{REPOSITORY}:{suite}-")]
    for tag in tags[KEEP_OTHER_RECIPES:]:
        podman.run("rmi", tag, check=False)
