"""terraform/ against the azurerm provider's own schema, for every major that terraform.tf allows.

The schemas come from the prebuilt CDK provider packages that `make setup` downloads into
.venv-tfschema/ (see azurerm_schema.py). Planted faults, in copies of a module, show what a
failure looks like: one line naming the file, the line, the resource, the argument and the
provider version.
"""

from __future__ import annotations

import re
import shutil

import pytest
from azurerm_schema import check_file, check_tree, pinned_packages, schemas
from terraform_tree import ROOTS, TERRAFORM, load, unquote

ENROLLED_VM = TERRAFORM / "modules" / "enrolled_vm"


@pytest.fixture(scope="session")
def all_schemas():
    try:
        return schemas()
    except FileNotFoundError as missing:
        pytest.fail(str(missing))


def test_one_schema_per_major_and_the_constraint_allows_exactly_those(all_schemas):
    majors = [schema.major for schema in all_schemas]
    assert len(majors) == len(pinned_packages()) == len(set(majors)), f"one schema per azurerm major: {majors}"
    for root in ROOTS:
        (settings,) = load(root).files["terraform.tf"]["terraform"]
        constraint = unquote(settings["required_providers"][0]["azurerm"]["version"])
        whole_majors = re.fullmatch(r">= (\d+)\.0, < (\d+)\.0", constraint)
        assert whole_majors, f"{root.name}: azurerm {constraint!r} is not a range of whole majors"
        allowed = list(range(int(whole_majors[1]), int(whole_majors[2])))
        assert allowed == majors, f"{root.name}: azurerm {constraint} allows majors {allowed}, checked are {majors}"


@pytest.mark.parametrize("package", [f"{name} {version}" for name, version in pinned_packages()])
def test_every_azurerm_block_matches_the_provider_schema(package, all_schemas, capsys):
    (schema,) = [s for s in all_schemas if s.package == package]
    findings, checked = check_tree(ROOTS, schema, all_schemas)
    expected = sum(1 for root in ROOTS for rtype, _, _ in load(root).resources() if rtype.startswith("azurerm_"))
    expected += sum(1 for root in ROOTS if "azurerm" in load(root).blocks("provider"))
    assert checked == expected, f"the check saw {checked} azurerm blocks, the tree has {expected}"
    with capsys.disabled():
        print(f"\nazurerm {schema.version} (from {package}): {checked} blocks, {len(findings)} findings")
    assert not findings, "\n".join(map(str, findings))


# --- planted faults ------------------------------------------------------------------------------


def plant(tmp_path, old: str, new: str, root=ENROLLED_VM, file="main.tf"):
    """A copy of `root` with `old` replaced by `new` once in its `file`."""
    copy = shutil.copytree(root, tmp_path / root.name)
    planted = copy / file
    text = planted.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {root.name}/{file} once"
    planted.write_text(text.replace(old, new))
    return planted


def last_line_with(main, marker: str) -> int:
    return max(i for i, text in enumerate(main.read_text().splitlines(), 1) if marker in text)


def findings_for(main, all_schemas, schema):
    return [str(finding) for finding in check_file(main, schema, all_schemas)[0]]


SSH_KEY_BLOCK = """  admin_ssh_key {
    username   = var.admin_username
    public_key = trimspace(var.bootstrap_public_key)
  }
"""
# fault: (text in enrolled_vm/main.tf, what replaces it, the finding's line (last line holding
# this), the finding after "<file>:<line>: ").
FAULTS = {
    "misspelled nested argument": (
        "disk_size_gb         = var.os_disk.disk_size_gb", "disk_sizegb          = var.os_disk.disk_size_gb",
        "disk_sizegb", "azurerm_linux_virtual_machine.this: os_disk.disk_sizegb: no such argument in azurerm {v}",
    ),
    "missing required nested argument": (
        '    private_ip_address_allocation = "Dynamic"\n', "", "ip_configuration {",
        "azurerm_network_interface.this: ip_configuration.private_ip_address_allocation: required argument missing"
        " (azurerm {v})",
    ),
    "wrong literal type": (
        "disable_password_authentication = true", 'disable_password_authentication = "yes"', '"yes"',
        'azurerm_linux_virtual_machine.this: disable_password_authentication: azurerm {v} wants bool, got "yes"',
    ),
    "wrong literal type, nested": (
        "disk_size_gb         = var.os_disk.disk_size_gb", 'disk_size_gb         = "thirty"', '"thirty"',
        'azurerm_linux_virtual_machine.this: os_disk.disk_size_gb: azurerm {v} wants number, got "thirty"',
    ),
    "list where a string goes": (
        'caching              = "ReadWrite"', 'caching              = ["ReadWrite"]', '["ReadWrite"]',
        "azurerm_linux_virtual_machine.this: os_disk.caching: azurerm {v} wants string, got a list",
    ),
    "block written as an argument": (
        "boot_diagnostics {}", "boot_diagnostics = {}", "boot_diagnostics = {}",
        "azurerm_linux_virtual_machine.this: boot_diagnostics: a block in azurerm {v}:"
        " write `boot_diagnostics {{ ... }}`",
    ),
    "single block given twice": (
        "boot_diagnostics {}", "boot_diagnostics {}\n  boot_diagnostics {}", "boot_diagnostics {}",
        "azurerm_linux_virtual_machine.this: boot_diagnostics: azurerm {v} allows one boot_diagnostics block",
    ),
    "misspelled argument in a dynamic block": (
        SSH_KEY_BLOCK,
        SSH_KEY_BLOCK.replace("admin_ssh_key {", 'dynamic "admin_ssh_key" {\n    for_each = [1]\n    content {')
        .replace("  }\n", '    key_comment = "ops"\n    }\n  }\n'),
        "key_comment", "azurerm_linux_virtual_machine.this: admin_ssh_key.key_comment: no such argument in azurerm {v}",
    ),
    "data source without a required argument": (
        'resource "terraform_data" "enrollment" {',
        'data "azurerm_subnet" "given" {\n  name                 = "vms"\n  virtual_network_name = "net"\n}\n\n'
        'resource "terraform_data" "enrollment" {',
        'data "azurerm_subnet"',
        "data.azurerm_subnet.given: resource_group_name: required argument missing (azurerm {v})",
    ),
    "misspelled resource type": (
        'resource "azurerm_public_ip" "this" {', 'resource "azurerm_public_ips" "this" {', "azurerm_public_ips",
        "azurerm_public_ips.this: azurerm_public_ips: no such resource type in azurerm {v}",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_planted_fault_is_one_line_naming_file_line_resource_argument_version(fault, tmp_path, all_schemas):
    old, new, marker, message = FAULTS[fault]
    main = plant(tmp_path, old, new)
    line = last_line_with(main, marker)
    for schema in all_schemas:
        assert findings_for(main, all_schemas, schema) == [f"{main}:{line}: {message.format(v=schema.version)}"]


def test_values_terraform_converts_are_not_reported(tmp_path, all_schemas):
    """Terraform turns "true" into a bool and "30" into a number, so neither is a fault."""
    main = plant(tmp_path, "disk_size_gb         = var.os_disk.disk_size_gb", 'disk_size_gb         = "30"')
    text = main.read_text()
    main.write_text(text.replace("disable_password_authentication = true", 'disable_password_authentication = "true"'))
    for schema in all_schemas:
        assert findings_for(main, all_schemas, schema) == []


def test_an_argument_gone_in_the_next_major_is_deprecated_in_this_one(tmp_path, all_schemas):
    """vm_agent_platform_updates_enabled is deprecated through azurerm 4 and removed in 5."""
    old, new = all_schemas[0], all_schemas[-1]
    assert (old.major, new.major) == (4, 5), "this fact is about azurerm 4 and 5: choose another for new pins"
    main = plant(tmp_path, "disable_password_authentication = true",
                 "disable_password_authentication = true\n  vm_agent_platform_updates_enabled = true")
    line = last_line_with(main, "vm_agent")
    where = f"{main}:{line}: azurerm_linux_virtual_machine.this: vm_agent_platform_updates_enabled"
    assert findings_for(main, all_schemas, old) == [
        f"{where}: deprecated in azurerm {old.version}: azurerm {new.version} no longer has it"]
    assert findings_for(main, all_schemas, new) == [
        f"{where}: removed in azurerm {new.version} (azurerm {old.version} has it)"]


def test_the_provider_block_is_checked_too(tmp_path, all_schemas):
    planted = plant(tmp_path, "features {}", "featuers {}", TERRAFORM / "examples" / "single_vm", "terraform.tf")
    line = last_line_with(planted, "featuers")
    for schema in all_schemas:
        assert findings_for(planted, all_schemas, schema) == [
            f'{planted}:{line}: provider "azurerm": featuers: no such block in azurerm {schema.version}']


def test_a_list_of_objects_written_for_blocks_is_checked_key_by_key(tmp_path, all_schemas):
    """azurerm takes security_rule as blocks or as `security_rule = [{...}]`; both are checked."""
    nsg = 'resource "azurerm_network_security_group" "this" {'
    rules = '  security_rule = [{ name = "ssh", priority = "first", protocl = "Tcp" }]'
    planted = plant(tmp_path, nsg, f"{nsg}\n{rules}", TERRAFORM / "modules" / "network")
    where = f"{planted}:{last_line_with(planted, 'security_rule = [')}: azurerm_network_security_group.this"
    for schema in all_schemas:
        assert findings_for(planted, all_schemas, schema) == [
            f'{where}: security_rule.priority: azurerm {schema.version} wants number, got "first"',
            f"{where}: security_rule.protocl: no such argument in azurerm {schema.version}",
        ]
