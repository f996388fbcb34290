"""Static checks of terraform/: conventions, the enroll.yml contract, SSH exposure, READMEs.

No terraform binary or provider is needed: every .tf file is parsed with python-hcl2.
"""

from __future__ import annotations

import importlib.util
import re

import pytest
from ansible_collections.sshca.azure.plugins.module_utils import _azure_rules as rules
from ansible_collections.sshca.azure.plugins.module_utils import _enrollment as contract
from terraform_tree import (
    EXAMPLES,
    MODULES,
    REPO,
    ROOTS,
    TERRAFORM,
    is_internet_wide,
    is_literal_string,
    load,
    text_of,
    unquote,
    walk,
)

_spec = importlib.util.spec_from_file_location("terraform_network", REPO / "plugins/filter/terraform_network.py")
terraform_network = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(terraform_network)

NETWORK = TERRAFORM / "modules" / "network"
ENROLLED_VM = TERRAFORM / "modules" / "enrolled_vm"
ids = [str(p.relative_to(TERRAFORM)) for p in ROOTS]
module_ids = [str(p.relative_to(TERRAFORM)) for p in MODULES]


def test_the_modules_and_examples_the_docs_promise_exist():
    assert {p.name for p in MODULES} >= {"network", "enrolled_vm"}
    assert {p.name for p in EXAMPLES} >= {"network_only", "single_vm", "fleet"}


def test_every_tf_file_parses():
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert files
    for root in ROOTS:
        assert load(root).files, f"{root} has no .tf files"
    assert sum(len(load(root).files) for root in ROOTS) == len(files), "a .tf file lies outside modules/ and examples/"


# --- conventions (STYLE.md, Azure Verified Modules) ----------------------------------------------


@pytest.mark.parametrize("root", MODULES, ids=module_ids)
def test_module_layout(root):
    for name in ("main.tf", "variables.tf", "outputs.tf", "terraform.tf", "README.md"):
        assert (root / name).is_file(), f"{root.name}: {name} missing"
    assert not load(root).blocks("provider"), f"{root.name}: a module must not configure providers"


@pytest.mark.parametrize("root", ROOTS, ids=ids)
def test_terraform_tf_pins_terraform_and_azurerm(root):
    assert "terraform.tf" in load(root).files, f"{root.name}: terraform.tf missing"
    (settings,) = load(root).files["terraform.tf"]["terraform"]
    assert unquote(settings.get("required_version", "")).startswith(">="), "required_version missing"
    (providers,) = settings["required_providers"]
    azurerm = providers["azurerm"]
    assert unquote(azurerm["source"]) == "hashicorp/azurerm"
    # A range of whole majors; test_schema.py checks every major in it against that major's schema.
    assert re.fullmatch(r">= \d+\.0, < \d+\.0", unquote(azurerm["version"])), f"{root.name}: {azurerm['version']}"
    other_pins = [name for name, parsed in load(root).files.items() if name != "terraform.tf" and "terraform" in parsed]
    assert not other_pins, f"{root.name}: terraform blocks outside terraform.tf: {other_pins}"


@pytest.mark.parametrize("root", ROOTS, ids=ids)
def test_variables_are_typed_described_and_null_safe(root):
    variables = load(root).variables
    for name, body in variables.items():
        assert "type" in body, f"{root.name}: variable {name} has no type"
        assert len(text_of(body.get("description"))) >= 10, f"{root.name}: variable {name} is not described"
        optional_null = "default" in body and body["default"] is None
        assert optional_null or body.get("nullable") is False, (
            f"{root.name}: variable {name} must set nullable = false (or default to null when null means 'none')"
        )
        for rule in body.get("validation", []):
            assert len(text_of(rule.get("error_message"))) >= 20, f"{root.name}: {name} has an unhelpful error"


@pytest.mark.parametrize("root", MODULES, ids=module_ids)
def test_required_free_form_inputs_are_validated(root):
    """A required string or list input is what users get wrong: each must have a validation."""
    for name, body in load(root).variables.items():
        free_form = unquote(body["type"]) in ("string", "list(string)")
        if free_form and "default" not in body:
            assert body.get("validation"), f"{root.name}: required variable {name} has no validation"


@pytest.mark.parametrize("root", ROOTS, ids=ids)
def test_outputs_are_described_and_not_whole_objects(root):
    for name, body in load(root).outputs.items():
        assert len(text_of(body.get("description"))) >= 10, f"{root.name}: output {name} is not described"
        value = unquote(body["value"]) if isinstance(body["value"], str) else ""
        whole = re.fullmatch(r"(azurerm_\w+|terraform_data)\.\w+(\[[^\]]+\])?|module\.\w+", value)
        assert not whole, f"{root.name}: output {name} returns a whole object ({value}); output attributes"


# --- no secrets in code or state -----------------------------------------------------------------

SECRET_ATTRIBUTE = re.compile(r"password|secret|passphrase|private_key|token|access_key|sas|client_certificate", re.I)


@pytest.mark.parametrize("root", ROOTS, ids=ids)
def test_no_secret_is_hard_coded(root):
    tree = load(root)
    for filename, parsed in tree.files.items():
        for trail, value in walk(parsed):
            names = [str(part) for part in trail if isinstance(part, str)]
            leaf = names[-1] if names else ""
            if SECRET_ATTRIBUTE.search(leaf) and not leaf.endswith(("_path", "_enabled")):
                assert not is_literal_string(value), f"{root.name}/{filename}: {'.'.join(names)} is a literal"
        text = (root / filename).read_text()
        assert "PRIVATE KEY-----" not in text, f"{root.name}/{filename} holds a private key"
        assert not re.search(r"\b(admin_password|client_secret)\s*=", text), f"{root.name}/{filename} sets a password"
    kinds = {rtype for rtype, _, _ in tree.resources()}
    assert "tls_private_key" not in kinds, "tls_private_key would store the private key in the Terraform state"


@pytest.mark.parametrize("root", ROOTS, ids=ids)
def test_linux_vms_log_in_with_keys_only(root):
    for rtype, name, body in load(root).resources():
        if rtype == "azurerm_linux_virtual_machine":
            assert body.get("disable_password_authentication") is True, f"{name}: password login left on"
            assert body.get("admin_ssh_key"), f"{name}: no admin_ssh_key"


# --- SSH exposure --------------------------------------------------------------------------------


def _opens_ssh(rule: dict) -> bool:
    if unquote(rule.get("direction", "")).lower() != "inbound" or unquote(rule.get("access", "")).lower() != "allow":
        return False
    ports = [unquote(rule.get("destination_port_range") or "")]
    ports += [unquote(p) for p in rule.get("destination_port_ranges") or []]
    for port in ports:
        if port == "*":
            return True
        low, _, high = port.partition("-")
        if low.isdigit() and int(low) <= 22 <= int(high or low):
            return True
    return False


def _ssh_rules(root):
    for rtype, name, body in load(root).resources():
        if rtype == "azurerm_network_security_rule":
            yield name, body
        if rtype == "azurerm_network_security_group":
            for rule in body.get("security_rule", []):
                yield f"{name}.security_rule", rule


@pytest.mark.parametrize("root", ROOTS, ids=ids)
def test_no_ssh_rule_is_open_to_the_internet_by_default(root):
    tree = load(root)
    for name, rule in _ssh_rules(root):
        if not _opens_ssh(rule):
            continue
        sources = []
        for attribute in ("source_address_prefix", "source_address_prefixes"):
            value = rule.get(attribute)
            sources += value if isinstance(value, list) else [value]
        for source in filter(None, sources):
            if is_literal_string(source):
                assert not is_internet_wide(unquote(source)), f"{root.name}: {name} admits {source}"
                continue
            # An expression: every variable it reads must have no internet-wide default, and must
            # refuse internet-wide values unless allow_ssh_from_internet is set.
            referenced = set(re.findall(r"var\.(\w+)", unquote(source)))
            for local in re.findall(r"local\.(\w+)", unquote(source)):
                referenced |= set(re.findall(r"var\.(\w+)", unquote(str(tree.locals().get(local, "")))))
            assert referenced, f"{root.name}: cannot trace the source of {name}"
            for variable in referenced:
                body = tree.variables[variable]
                default = body.get("default") or []
                default = default if isinstance(default, list) else [default]
                assert not any(is_internet_wide(unquote(d)) for d in default), f"{variable} defaults to the internet"
                guards = [unquote(v["condition"]) for v in body.get("validation", [])]
                assert any("var.allow_ssh_from_internet" in g for g in guards), f"{variable}: no internet guard"
    if "allow_ssh_from_internet" in tree.variables:
        assert tree.variables["allow_ssh_from_internet"].get("default") is False


def test_the_network_module_has_an_ssh_rule():
    assert any(_opens_ssh(rule) for _, rule in _ssh_rules(NETWORK))


@pytest.mark.parametrize("root", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_do_not_open_ssh_to_the_internet(root):
    tree = load(root)
    for name, call in tree.module_calls.items():
        assert call.get("allow_ssh_from_internet") in (None, False), f"{root.name}: module {name} allows the internet"
        sources = call.get("ssh_source_address_prefixes")
        if isinstance(sources, list):
            assert not any(is_internet_wide(unquote(s)) for s in sources), f"{root.name}: {name} admits the internet"
    for name, body in tree.variables.items():
        default = body.get("default")
        if name.startswith("ssh_source") and default is not None:
            assert not any(is_internet_wide(unquote(s)) for s in default), f"{root.name}: {name} default"


# --- the contract with playbooks/enroll.yml ------------------------------------------------------


def test_network_module_declares_every_output_enroll_reads():
    outputs = load(NETWORK).outputs
    missing = [name for name in terraform_network.REQUIRED_OUTPUTS if name not in outputs]
    assert not missing, f"network module lacks outputs the network_from_terraform filter requires: {missing}"
    assert "subnet_id" in terraform_network.REQUIRED_OUTPUTS


def test_network_only_example_prints_what_enroll_reads():
    """Its `terraform output -json` is what users hand to enroll.yml as sshca_network."""
    outputs = load(TERRAFORM / "examples" / "network_only").outputs
    for name in terraform_network.REQUIRED_OUTPUTS:
        assert name in outputs, f"examples/network_only does not re-export {name}"
        assert unquote(outputs[name]["value"]) == f"module.network.{name}"


AGREED_ENROLL_VARS = {
    "sshca_hosts",
    "sshca_bootstrap_key_path",
    "sshca_admin_user",
    "sshca_ca_path",
    "sshca_access_rules",
    "sshca_resource_group",
}
# What enrollment needs from Terraform: the fields host principals and access rules are made
# from, and the VM id through which Azure's Run Command pins the host keys.
NEEDED_HOST_KEYS = {"name", "address", "private_ip", "fqdn", "extra_principals", "host_tags", "vm_id"}


def test_enrolled_vm_passes_enroll_yml_its_agreed_inputs():
    tree = load(ENROLLED_VM)
    local_values = tree.locals()
    extra_vars = local_values["enroll_extra_vars"]
    assert set(extra_vars) >= AGREED_ENROLL_VARS
    assert not any(re.search("passphrase|password|secret", key) for key in extra_vars), "a secret in the extra vars"
    host = set(local_values["sshca_host"])
    unknown = sorted(host - set(contract.HOST_FIELDS))
    assert not unknown, f"sshca_host passes {unknown}, which enroll.yml refuses (not HostInput fields)"
    assert host >= NEEDED_HOST_KEYS, f"sshca_host lacks {sorted(NEEDED_HOST_KEYS - host)}"
    assert extra_vars["sshca_hosts"] == ["${local.sshca_host}"], "enroll must be limited to this VM"
    (enrollment,) = [body for rtype, _, body in tree.resources() if rtype == "terraform_data"]
    # The extra vars are the triggers: any input change re-runs enrollment.
    assert unquote(enrollment["triggers_replace"]) == "local.enroll_extra_vars"
    (provisioner,) = enrollment["provisioner"]
    local_exec = provisioner['"local-exec"']
    assert unquote(local_exec["command"]) == "jsonencode(local.enroll_extra_vars)"
    assert "-e" in unquote(local_exec["interpreter"]), "the JSON must reach ansible-playbook as -e"


def test_admin_user_and_image_rules_are_the_python_table():
    """enrolled_vm refuses the admin names, and offers the image presets, that _azure_rules.py holds."""
    [rule] = load(ENROLLED_VM).variables["admin_username"]["validation"]
    condition = unquote(rule["condition"])
    reserved = set(re.findall(r'"([^"]+)"', condition.split("!contains([", 1)[1].split("]", 1)[0]))
    assert reserved == set(rules.RESERVED_ADMIN_USERNAMES)
    longest = int(re.search(r"\{0,(\d+)\}", condition).group(1)) + 1
    assert longest == rules.ADMIN_USERNAME_MAX
    presets = {unquote(name).replace("-", "").replace(".", ""): {k: unquote(v) for k, v in image.items()}
               for name, image in load(ENROLLED_VM).locals()["image_presets"].items()}
    assert presets == rules.IMAGE_PRESETS


def test_enroll_yml_reads_the_inputs_the_wrapper_passes():
    text = (REPO / "playbooks" / "enroll.yml").read_text()
    unread = sorted(name for name in AGREED_ENROLL_VARS | {"sshca_network"} if name not in text)
    assert not unread, f"playbooks/enroll.yml never mentions {unread}"
    assert "network_from_terraform" in text, "enroll.yml must read sshca_network through the filter"


# --- READMEs -------------------------------------------------------------------------------------


def _table_names(readme: str, heading: str) -> list[str]:
    section = re.search(rf"^## {heading}\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert section, f"README has no '## {heading}' section"
    return re.findall(r"^\| `([\w-]+)` \|", section.group(1), re.M)


@pytest.mark.parametrize("root", MODULES, ids=module_ids)
def test_readme_tables_match_variables_and_outputs(root):
    readme = (root / "README.md").read_text()
    tree = load(root)
    assert sorted(_table_names(readme, "Inputs")) == sorted(tree.variables), f"{root.name}: README Inputs out of sync"
    assert sorted(_table_names(readme, "Outputs")) == sorted(tree.outputs), f"{root.name}: README Outputs out of sync"


@pytest.mark.parametrize("root", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_say_how_to_run_them(root):
    readme = (root / "README.md").read_text()
    assert "terraform apply" in readme and "terraform init" in readme
    assert len(readme.split("\n\n")[1]) > 40, "say what the example makes"


# --- references: the part of `terraform validate` that needs no provider schema -------------------

REFERENCE = re.compile(r"(?<![\w.])(var|local|module|azurerm_\w+|terraform_data)\.(\w+)(?:\[[^\]]*\])?(?:\.(\w+))?")
META_ARGUMENTS = {"source", "version", "count", "for_each", "providers", "depends_on"}


def _expressions(root):
    for parsed in load(root).files.values():
        for _, value in walk(parsed):
            if isinstance(value, str) and "${" in value:
                yield value


@pytest.mark.parametrize("root", ROOTS, ids=ids)
def test_every_reference_resolves(root):
    tree = load(root)
    declared_resources = {(rtype, name) for rtype, name, _ in tree.resources()}
    for expression in _expressions(root):
        for kind, name, attribute in REFERENCE.findall(expression):
            where = f"{root.name}: {kind}.{name} in {expression[:80]}"
            if kind == "var":
                assert name in tree.variables, where
            elif kind == "local":
                assert name in tree.locals(), where
            elif kind == "module":
                assert name in tree.module_calls, where
                called = load((root / unquote(tree.module_calls[name]["source"])).resolve())
                assert not attribute or attribute in called.outputs, f"{where}: no output {attribute}"
            else:
                assert (kind, name) in declared_resources, where


@pytest.mark.parametrize("root", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_module_calls_pass_declared_and_required_inputs(root):
    for name, call in load(root).module_calls.items():
        called = load((root / unquote(call["source"])).resolve())
        given = {key for key in call if not key.startswith("__")} - META_ARGUMENTS
        unknown = given - set(called.variables)
        assert not unknown, f"{root.name}: module {name} gets unknown inputs {unknown}"
        required = {v for v, body in called.variables.items() if "default" not in body}
        assert required <= given, f"{root.name}: module {name} misses required inputs {required - given}"
