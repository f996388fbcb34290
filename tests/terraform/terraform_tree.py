"""The repository's terraform/ tree, parsed with python-hcl2, for the static checks."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import hcl2

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MODULES = sorted(p for p in (TERRAFORM / "modules").iterdir() if p.is_dir())
EXAMPLES = sorted(p for p in (TERRAFORM / "examples").iterdir() if p.is_dir())
ROOTS = MODULES + EXAMPLES

# Sources that mean "anyone on the internet" in an NSG rule.
INTERNET_WIDE = {"*", "any", "internet", "0.0.0.0", "0.0.0.0/0", "::", "::/0"}  # noqa: S104 (data, not a bind)


def is_internet_wide(source: str) -> bool:
    source = source.strip().lower()
    return source in INTERNET_WIDE or source.endswith("/0")


def unquote(value):
    """hcl2 keeps string literals quoted ('"x"') and expressions wrapped ('${...}')."""
    if isinstance(value, str):
        if value.startswith("${") and value.endswith("}"):
            return value[2:-1]
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            return value[1:-1]
    return value


def is_literal_string(value) -> bool:
    return isinstance(value, str) and not value.startswith("${") and value.startswith('"')


def text_of(value) -> str:
    """A description as a reader sees it (heredocs included)."""
    text = unquote(value) if isinstance(value, str) else ""
    heredoc = re.match(r"^<<-?(\w+)\n(.*)\n\s*\1\s*$", text, re.S)
    return (heredoc.group(2) if heredoc else text).strip()


@dataclass
class Root:
    """One module or example folder: its blocks by kind, names unquoted."""

    path: Path
    files: dict[str, dict] = field(default_factory=dict)

    def blocks(self, kind: str) -> dict[str, dict]:
        found = {}
        for parsed in self.files.values():
            for block in parsed.get(kind, []):
                for name, body in block.items():
                    found[unquote(name)] = body
        return found

    def resources(self) -> list[tuple[str, str, dict]]:
        found = []
        for parsed in self.files.values():
            for block in parsed.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        found.append((unquote(rtype), unquote(name), body))
        return found

    @property
    def variables(self) -> dict[str, dict]:
        return self.blocks("variable")

    @property
    def outputs(self) -> dict[str, dict]:
        return self.blocks("output")

    @property
    def module_calls(self) -> dict[str, dict]:
        return self.blocks("module")

    def locals(self) -> dict:
        merged = {}
        for parsed in self.files.values():
            for block in parsed.get("locals", []):
                merged.update(block)
        return merged


@functools.cache
def load(path: Path) -> Root:
    root = Root(path)
    for tf in sorted(path.glob("*.tf")):
        with tf.open() as handle:
            root.files[tf.name] = hcl2.load(handle)
    return root


def walk(value, trail=()):
    """Every (attribute path, value) pair under a parsed block."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*trail, key))
    elif isinstance(value, list):
        for item in value:
            yield from walk(item, trail)
    else:
        yield trail, value
