"""The azurerm provider's own schema, and a check of terraform/ against it.

No provider binary reaches this machine, but its schema does: the prebuilt CDK provider
packages are generated from `terraform providers schema -json` of one azurerm release each.
Their jsii assembly (`_jsii/*.jsii.tgz` inside the wheel, a JSON file) holds, per resource and
data source, a config struct whose properties are the arguments (nested blocks are structs of
their own), each with its Terraform name (the anchor of its registry link), its type, and
`optional` unless Terraform requires it. Computed-only attributes are not in the config structs,
so what is there is exactly what a configuration may set.

The wheels are downloaded by `make setup` into `.venv-tfschema/` and read from there; nothing is
installed or imported from them (installed, each is ~340 MB of generated Python that needs
Node.js to import). The assemblies carry no provider deprecation flags, so deprecation is
read across majors: azurerm deprecates an argument throughout one major and removes it in the
next, so an argument that the newer schema no longer has is deprecated in the older one.
"""

from __future__ import annotations

import functools
import json
import re
import tarfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hcl2.query import DocumentView

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / ".venv-tfschema"
REQUIREMENTS = Path(__file__).with_name("azurerm-schemas.txt")

# Terraform's own arguments and blocks, valid on every resource or data source.
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
META_BLOCKS = {"resource": {"lifecycle", "provisioner", "connection"}, "data": {"lifecycle"}, "provider": set()}
PROVIDER_META_ARGUMENTS = {"alias"}

_LINK = re.compile(r"\{@link https://registry\.terraform\.io/providers/hashicorp/azurerm/(?P<version>[\d.]+)/docs"
                   r"(?:/(?P<kind>resources|data-sources)/\w+)?(?:#(?P<anchor>\w+))? (?P<name>[\w#]+)\}")


# --- the schema ----------------------------------------------------------------------------------


@dataclass
class Block:
    """A resource, data source, provider or nested block: its arguments and nested blocks."""

    attributes: dict[str, Attribute] = field(default_factory=dict)
    blocks: dict[str, NestedBlock] = field(default_factory=dict)

    def names(self) -> set[str]:
        return set(self.attributes) | set(self.blocks)


@dataclass(frozen=True)
class Attribute:
    required: bool
    type: str | tuple  # "string", "number", "bool", "any", ("list", element) or ("map", element)


@dataclass(frozen=True)
class NestedBlock:
    required: bool
    repeatable: bool
    body: Block
    # A list of objects the provider lets you write either as blocks or as `name = [{...}]`.
    also_attribute: bool = False


@dataclass
class ProviderSchema:
    package: str  # the registry package it was read from, name and version
    version: str  # the azurerm release it was generated from
    provider: Block
    resources: dict[str, Block]
    data_sources: dict[str, Block]

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def top(self, kind: str, name: str) -> Block | None:
        if kind == "provider":
            return self.provider
        return (self.resources if kind == "resource" else self.data_sources).get(name)


def pinned_packages() -> list[tuple[str, str]]:
    """(name, version) of each schema package, from the requirements file `make setup` downloads."""
    pins = []
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([\w.]+)", line.strip())
        if match:
            pins.append((match.group(1), match.group(2)))
    return pins


def wheel_path(name: str, version: str) -> Path:
    return SCHEMA_DIR / f"{re.sub(r'[-.]+', '_', name).lower()}-{version}-py3-none-any.whl"


def _read_assembly(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        inner = next(n for n in archive.namelist() if n.endswith(".jsii.tgz"))
        with archive.open(inner) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in tar:
                if member.name == "package/.jsii":
                    return json.load(tar.extractfile(member))
    raise ValueError(f"{wheel.name}: no jsii assembly in {inner}")


class _Reader:
    """Turns jsii config structs into Blocks (each struct once: nested types are shared)."""

    def __init__(self, types: dict):
        self.types = types
        self.done: dict[str, Block] = {}

    def block(self, fqn: str) -> Block:
        if fqn in self.done:
            return self.done[fqn]
        block = self.done[fqn] = Block()
        struct = self.types[fqn]
        properties = list(struct.get("properties", []))
        for parent in struct.get("interfaces", []):
            properties += self.types.get(parent, {}).get("properties", [])
        for prop in properties:
            docs = prop.get("docs", {})
            anchors = [m["anchor"] for m in _LINK.finditer(docs.get("summary", "") + docs.get("remarks", ""))]
            name = next(a for a in anchors if a)
            required = not prop.get("optional", False)
            shape = self._shape(prop["type"])
            if isinstance(shape, Block | tuple) and self._is_blocks(shape):
                repeatable = isinstance(shape, tuple)
                body = shape[1] if repeatable else shape
                written_as_block = docs.get("summary", "").endswith(" block.")
                block.blocks[name] = NestedBlock(required, repeatable, body, also_attribute=not written_as_block)
            else:
                block.attributes[name] = Attribute(required, shape)
        return block

    @staticmethod
    def _is_blocks(shape) -> bool:
        return isinstance(shape, Block) or (shape[0] == "list" and isinstance(shape[1], Block))

    def _shape(self, jsii_type: dict):
        if "union" in jsii_type:  # every settable value is also `IResolvable` (a Terraform expression)
            (real,) = [t for t in jsii_type["union"]["types"] if not t.get("fqn", "").endswith(".IResolvable")]
            return self._shape(real)
        if "primitive" in jsii_type:
            return {"string": "string", "number": "number", "boolean": "bool"}.get(jsii_type["primitive"], "any")
        if "collection" in jsii_type:
            kind = "list" if jsii_type["collection"]["kind"] == "array" else "map"
            return (kind, self._shape(jsii_type["collection"]["elementtype"]))
        if jsii_type.get("fqn") in self.types and self.types[jsii_type["fqn"]].get("datatype"):
            return self.block(jsii_type["fqn"])
        return "any"


@functools.cache
def load_schema(name: str, version: str) -> ProviderSchema:
    wheel = wheel_path(name, version)
    if not wheel.is_file():
        raise FileNotFoundError(f"{wheel.relative_to(REPO)} is missing: run `make setup`")
    types = _read_assembly(wheel)["types"]
    reader = _Reader(types)
    tops: dict[str, dict[str, Block]] = {"resources": {}, "data-sources": {}}
    provider, releases = None, set()
    for jsii_type in types.values():
        if jsii_type["kind"] != "class" or not jsii_type.get("initializer"):
            continue
        base = jsii_type.get("base", "")
        if not base.endswith((".TerraformResource", ".TerraformDataSource", ".TerraformProvider")):
            continue
        link = _LINK.search(jsii_type["docs"].get("summary", ""))
        config = reader.block(jsii_type["initializer"]["parameters"][-1]["type"]["fqn"])
        releases.add(link["version"])
        if link["kind"]:
            tops[link["kind"]][link["name"]] = config
        else:
            provider = config
    (release,) = releases
    return ProviderSchema(f"{name} {version}", release, provider, tops["resources"], tops["data-sources"])


def schemas() -> list[ProviderSchema]:
    """Every pinned schema, oldest azurerm release first."""
    found = [load_schema(name, version) for name, version in pinned_packages()]
    return sorted(found, key=lambda s: tuple(int(p) for p in s.version.split(".")))


# --- the check -----------------------------------------------------------------------------------


def _line(view) -> int:
    return view.raw.to_lark().meta.line


def _literal(value):
    """(kind, text) of a literal HCL value as python-hcl2 gives it; kind None for an expression."""
    if value is None:
        return "null", None
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int | float):
        return "number", value
    if isinstance(value, list):
        return "list", value
    if isinstance(value, dict):
        return "object", value
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        text = value[1:-1]
        if re.fullmatch(r"\$\{.*\}", text, re.S):  # "${x}" alone is x itself, of x's type
            return None, None
        if "${" in text or "%{" in text or text.startswith("<<"):
            return "string", None  # a template: a string, its text known only at plan time
        return "string", text
    return None, None


def _type_name(wanted) -> str:
    if isinstance(wanted, tuple):
        return f"{wanted[0]}({_type_name(wanted[1])})"
    return wanted


def type_mismatch(value, wanted) -> str | None:
    """Why a literal cannot become `wanted` under Terraform's conversions, or None if it can (or
    is an expression). Terraform turns numbers and bools into strings, and strings like "22" or
    "true" into numbers and bools, so only what it would refuse is reported."""
    kind, literal = _literal(value)
    if kind is None or kind == "null" or wanted == "any" or isinstance(wanted, Block):
        return None
    shown = json.dumps(literal) if kind == "string" and literal is not None else f"a {kind}"
    if kind == "string" and literal is None:
        shown = "a string template"
    if wanted == "string":
        return None if kind in ("string", "number", "bool") else shown
    if wanted == "number":
        if kind == "number" or (kind == "string" and (literal is None or _is_number(literal))):
            return None
        return shown
    if wanted == "bool":
        return None if kind == "bool" or (kind == "string" and literal in (None, "true", "false")) else shown
    container, element = wanted
    expected = "list" if container == "list" else "object"
    if kind != expected:
        return shown
    items = literal if container == "list" else literal.values()
    for item in items:
        inner = type_mismatch(item, element)
        if inner:
            return f"{shown} holding {inner}"
    return None


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text.strip()) is not None


@dataclass
class Finding:
    file: Path
    line: int
    address: str  # the resource, data source or provider, as Terraform names it
    argument: str  # dotted path from the resource down
    problem: str  # names the azurerm release

    def __str__(self) -> str:
        where = self.file.relative_to(REPO) if self.file.is_relative_to(REPO) else self.file
        return f"{where}:{self.line}: {self.address}: {self.argument}: {self.problem}"


class _BlockCheck:
    """Checks one resource, data source or provider block against one provider schema, with the
    neighbouring majors' schemas at hand to tell a deprecation or removal from a typo."""

    def __init__(self, file: Path, address: str, schema: ProviderSchema, older: ProviderSchema | None,
                 newer: ProviderSchema | None):
        self.file, self.address, self.schema, self.older, self.newer = file, address, schema, older, newer
        self.findings: list[Finding] = []

    def report(self, line: int, path: tuple[str, ...], problem: str) -> None:
        self.findings.append(Finding(self.file, line, self.address, ".".join(path), problem))

    def unknown(self, line: int, path, older: Block | None, what: str) -> None:
        if older is not None and path[-1] in older.names():
            self.report(line, path, f"removed in azurerm {self.schema.version} (azurerm {self.older.version} has it)")
        else:
            self.report(line, path, f"no such {what} in azurerm {self.schema.version}")

    def body(self, view, block_line: int, schema: Block, path: tuple[str, ...], meta: tuple[set, set],
             older: Block | None, newer: Block | None) -> None:
        """`view` is the BodyView of the block starting at `block_line`; `older`/`newer` are the same
        block in the neighbouring majors' schemas."""
        meta_arguments, meta_blocks = meta
        given: Counter[str] = Counter()
        for attribute in view.attributes():
            name, line, here = attribute.name, _line(attribute), (*path, attribute.name)
            if name in meta_arguments:
                continue
            if name in schema.attributes:
                given[name] += attribute.value is not None
                self.typed(attribute.value, schema.attributes[name], line, here)
            elif name in schema.blocks and schema.blocks[name].also_attribute:
                given[name] += attribute.value is not None
                self.objects(attribute.value, line, schema.blocks[name].body, here)
            elif name in schema.blocks:
                self.report(line, here, f"a block in azurerm {self.schema.version}: write `{name} {{ ... }}`")
                given[name] += 1
                continue
            else:
                self.unknown(line, here, older, "argument")
                continue
            self.deprecated(line, here, newer)
        single_blocks: Counter[str] = Counter()
        for nested in view.blocks():
            name, line = nested.block_type, _line(nested)
            if name in meta_blocks:
                continue
            content = nested.body
            if name == "dynamic":  # dynamic "x" { content { ... } } stands for any number of x blocks
                name = nested.labels[1]
                content = next(iter(nested.body.blocks("content")), None)
            else:
                single_blocks[name] += 1
            here = (*path, name)
            given[name] += 1
            if name in schema.attributes:
                self.report(line, here, f"an argument in azurerm {self.schema.version}: write `{name} = ...`")
                continue
            if name not in schema.blocks:
                self.unknown(line, here, older, "block")
                continue
            self.deprecated(line, here, newer)
            target = schema.blocks[name]
            if not target.repeatable and single_blocks[name] == 2:
                self.report(line, here, f"azurerm {self.schema.version} allows one {name} block")
            if content is not None:
                self.body(content, line, target.body, here, (set(), set()), _nested(older, name),
                          _nested(newer, name))
        for name in sorted(schema.names() - set(given)):
            required = schema.attributes[name].required if name in schema.attributes else schema.blocks[name].required
            if required:
                what = "argument" if name in schema.attributes else "block"
                self.report(block_line, (*path, name), f"required {what} missing (azurerm {self.schema.version})")

    def objects(self, value, line: int, schema: Block, path: tuple[str, ...]) -> None:
        """`name = [{...}]`, for a list of objects the provider also takes as blocks: the keys and
        literal types of each object written out (an expression is left to plan time)."""
        for item in value if isinstance(value, list) else []:
            for key, inner in item.items() if isinstance(item, dict) else []:
                key = key.strip('"')
                if key.startswith("__"):
                    continue
                if key not in schema.names():
                    self.report(line, (*path, key), f"no such argument in azurerm {self.schema.version}")
                elif key in schema.attributes:
                    self.typed(inner, schema.attributes[key], line, (*path, key))

    def typed(self, value, attribute: Attribute, line: int, path: tuple[str, ...]) -> None:
        wrong = type_mismatch(value, attribute.type)
        if wrong:
            self.report(line, path, f"azurerm {self.schema.version} wants {_type_name(attribute.type)}, got {wrong}")

    def deprecated(self, line: int, path, newer: Block | None) -> None:
        if newer is not None and path[-1] not in newer.names():
            self.report(line, path, f"deprecated in azurerm {self.schema.version}: "
                                    f"azurerm {self.newer.version} no longer has it")


def _nested(block: Block | None, name: str) -> Block | None:
    if block is None or name not in block.blocks:
        return None
    return block.blocks[name].body


def _tops(document: DocumentView):
    """(kind, type, address, BlockView) of every azurerm resource, data source and provider."""
    for kind in ("resource", "data"):
        for block in document.blocks(kind):
            rtype, name = block.name_labels
            if rtype.startswith("azurerm_"):
                yield kind, rtype, ("data." if kind == "data" else "") + f"{rtype}.{name}", block
    for block in document.blocks("provider", "azurerm"):
        yield "provider", "azurerm", 'provider "azurerm"', block


def check_file(path: Path, schema: ProviderSchema, all_schemas: list[ProviderSchema]) -> tuple[list[Finding], int]:
    """Findings for one .tf file against `schema`, and how many azurerm blocks it holds; the other
    majors in `all_schemas` (oldest first) tell deprecations and removals from typos."""
    index = all_schemas.index(schema)
    older = all_schemas[index - 1] if index > 0 else None
    newer = all_schemas[index + 1] if index + 1 < len(all_schemas) else None
    findings, checked = [], 0
    document = DocumentView.parse(path.read_text())
    for kind, rtype, address, block in _tops(document):
        checked += 1
        check, line = _BlockCheck(path, address, schema, older, newer), _line(block)
        top = schema.top(kind, rtype)
        if top is None:
            gone = f" (azurerm {older.version} has it)" if older and older.top(kind, rtype) else ""
            what = {"resource": "resource type", "data": "data source"}.get(kind, kind)
            check.report(line, (rtype,), f"no such {what} in azurerm {schema.version}{gone}")
        else:
            meta = (PROVIDER_META_ARGUMENTS, set()) if kind == "provider" else (META_ARGUMENTS, META_BLOCKS[kind])
            check.body(block.body, line, top, (), meta, older.top(kind, rtype) if older else None,
                       newer.top(kind, rtype) if newer else None)
        findings += check.findings
    return findings, checked


def check_tree(roots: list[Path], schema: ProviderSchema, all_schemas: list[ProviderSchema]):
    """check_file over every .tf file under `roots`."""
    findings, checked = [], 0
    for root in roots:
        for tf in sorted(root.rglob("*.tf")):
            found, count = check_file(tf, schema, all_schemas)
            findings += found
            checked += count
    return findings, checked
