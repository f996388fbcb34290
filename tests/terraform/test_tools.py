"""The real tools on terraform/: terraform fmt and validate, the modules' variable validations
evaluated by terraform itself, and checkov.

Nothing here reaches the network: terraform runs with update checks off and a CLI config that
installs providers only from local mirrors; checkov runs with downloads and update checks off.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._enrollment import host_principals
from terraform_tree import EXAMPLES, MODULES, REPO, TERRAFORM, load, unquote

TERRAFORM_BIN = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(
    TERRAFORM_BIN is None, reason="terraform is not on PATH: terraform fmt -check and validate skipped"
)
needs_terraform_for_validations = pytest.mark.skipif(
    TERRAFORM_BIN is None,
    reason="terraform is not on PATH: variable validations not evaluated by terraform (static checks still ran)",
)
OUTPUT = REPO / "tests" / "output" / "terraform"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


def provider_mirrors() -> list[Path]:
    """Local folders that may hold providers: a `terraform providers mirror` named by
    SSHCA_TF_PROVIDER_MIRROR, the plugin cache, and Terraform's implied local mirrors."""
    candidates = [os.environ.get("SSHCA_TF_PROVIDER_MIRROR"), os.environ.get("TF_PLUGIN_CACHE_DIR")]
    home = Path.home()
    candidates += [home / ".terraform.d" / "plugins", home / ".local/share/terraform/plugins",
                   "/usr/local/share/terraform/plugins", "/usr/share/terraform/plugins"]
    return [Path(c) for c in candidates if c and Path(c).is_dir()]


def has_azurerm(mirror: Path) -> bool:
    return any(mirror.glob("*/hashicorp/azurerm/*"))


def terraform_env(tmp_path: Path, mirrors: list[Path]) -> dict[str, str]:
    cli_config = tmp_path / "offline.tfrc"
    blocks = "".join(f"  filesystem_mirror {{\n    path = {json.dumps(str(m))}\n  }}\n" for m in mirrors)
    # Without a `direct` block Terraform installs providers from these folders only.
    cli_config.write_text(f"provider_installation {{\n{blocks}}}\n" if mirrors else "")
    env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0")
    if not os.environ.get("SSHCA_TF_ONLINE_INIT"):  # opt-in for machines allowed to download providers
        env["TF_CLI_CONFIG_FILE"] = str(cli_config)
    env.pop("TF_PLUGIN_CACHE_DIR", None)
    return env


def run_terraform(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([TERRAFORM_BIN, *args, "-no-color"], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False, timeout=300)


# --- fmt and validate ----------------------------------------------------------------------------


@needs_terraform
def test_terraform_fmt_check(tmp_path):
    env = terraform_env(tmp_path, [])
    result = subprocess.run([TERRAFORM_BIN, "fmt", "-check", "-recursive", "-diff", "-no-color", str(TERRAFORM)],
                            env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"terraform fmt would change these files:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def initialised_tree(tmp_path_factory):
    """A copy of terraform/ (so no .terraform/ or lock file lands in the repository), initialised
    per root with `terraform init -backend=false`; skips when providers cannot be installed."""
    if TERRAFORM_BIN is None:
        pytest.skip("terraform is not on PATH: terraform fmt -check and validate skipped")
    base = tmp_path_factory.mktemp("tf")
    mirrors = provider_mirrors()
    online = bool(os.environ.get("SSHCA_TF_ONLINE_INIT"))
    if not online and not any(has_azurerm(m) for m in mirrors):
        looked = ", ".join(str(m) for m in mirrors) or "no mirror or plugin cache folder exists"
        pytest.skip(
            "terraform validate skipped: terraform init -backend=false needs the hashicorp/azurerm provider and "
            f"none is in a local mirror or plugin cache ({looked}); providers cannot be downloaded here. "
            "Set SSHCA_TF_PROVIDER_MIRROR to a `terraform providers mirror` folder, or SSHCA_TF_ONLINE_INIT=1 "
            "where downloads are allowed."
        )
    tree = base / "terraform"
    shutil.copytree(TERRAFORM, tree, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl"))
    env = terraform_env(base, mirrors)
    for root in MODULES + EXAMPLES:
        workdir = tree / root.relative_to(TERRAFORM)
        init = run_terraform(["init", "-backend=false", "-input=false"], workdir, env)
        if init.returncode != 0:
            reason = " ".join((init.stderr or init.stdout).split())[:400]
            pytest.skip(f"terraform validate skipped: terraform init -backend=false failed in {workdir.name}: {reason}")
    return tree, env


@pytest.mark.parametrize("root", MODULES + EXAMPLES, ids=[str(p.relative_to(TERRAFORM)) for p in MODULES + EXAMPLES])
def test_terraform_validate(initialised_tree, root):
    tree, env = initialised_tree
    result = run_terraform(["validate"], tree / root.relative_to(TERRAFORM), env)
    assert result.returncode == 0, result.stdout + result.stderr


# --- variable validations, evaluated by terraform ------------------------------------------------
# The validations refer only to variables, so a folder holding just a module's variables.tf is a
# valid configuration without providers: `terraform plan` there evaluates them offline.


def plan_variables(module: str, tmp_path: Path, values: dict) -> subprocess.CompletedProcess:
    workdir = tmp_path / module
    workdir.mkdir(exist_ok=True)
    shutil.copy(TERRAFORM / "modules" / module / "variables.tf", workdir)
    (workdir / "case.tfvars.json").write_text(json.dumps(values))
    return run_terraform(["plan", "-input=false", "-lock=false", "-var-file=case.tfvars.json"], workdir,
                         terraform_env(tmp_path, []))


def refusal(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, "terraform accepted the input"
    text = " ".join(result.stderr.split())
    assert "Invalid value for variable" in text, text
    return text


NETWORK_BASE = {"location": "westeurope", "resource_group_name": "rg-sshca",
                "ssh_source_address_prefixes": ["203.0.113.0/24"]}
INTERNET_SOURCES = ["*", "Internet", "internet", "Any", "0.0.0.0/0", "::/0", "198.51.100.7/0", " * "]


@needs_terraform_for_validations
def test_network_variables_accept_listed_sources(tmp_path):
    for sources in (["203.0.113.0/24"], ["203.0.113.7", "198.51.100.0/25"], ["2001:db8::/48"], ["2001:db8::1"]):
        result = plan_variables("network", tmp_path, dict(NETWORK_BASE, ssh_source_address_prefixes=sources))
        assert result.returncode == 0, f"{sources}: {result.stderr}"


@needs_terraform_for_validations
@pytest.mark.parametrize("source", INTERNET_SOURCES)
def test_network_refuses_internet_ssh_sources_by_default(tmp_path, source):
    values = dict(NETWORK_BASE, ssh_source_address_prefixes=["203.0.113.0/24", source])
    assert "allow_ssh_from_internet = true" in refusal(plan_variables("network", tmp_path, values))


@needs_terraform_for_validations
@pytest.mark.parametrize("source", ["*", "Internet", "0.0.0.0/0"])
def test_network_accepts_internet_ssh_only_when_told_to(tmp_path, source):
    values = dict(NETWORK_BASE, ssh_source_address_prefixes=[source], allow_ssh_from_internet=True)
    result = plan_variables("network", tmp_path, values)
    assert result.returncode == 0, result.stderr


@needs_terraform_for_validations
@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"ssh_source_address_prefixes": []}, "must list at least one address"),
        ({"ssh_source_address_prefixes": ["office"]}, "must be IP addresses or CIDR ranges"),
        ({"address_space": ["10.20.0.0/33"]}, "address_space must hold"),
        ({"vm_subnet": "missing"}, "vm_subnet must be one of the keys of subnets"),
        ({"location": "West Europe"}, "location must be an Azure region name"),
        ({"ssh_rule_priority": 50}, "ssh_rule_priority must be"),
    ],
)
def test_network_refuses_bad_inputs_naming_them(tmp_path, override, complaint):
    assert complaint in refusal(plan_variables("network", tmp_path, dict(NETWORK_BASE, **override)))


def keygen(tmp_path: Path, *args: str) -> str:
    key = tmp_path / f"key{len(list(tmp_path.glob('key*')))}"
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-C", "bootstrap@ci", "-f", str(key), *args], check=True)
    return key.with_suffix(".pub").read_text()


def vm_values(public_key: str, **override) -> dict:
    subnet = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-sshca/providers/"
              "Microsoft.Network/virtualNetworks/sshca-vnet/subnets/vms")
    return dict({"name": "web-1", "resource_group_name": "rg-sshca", "location": "westeurope", "subnet_id": subnet,
                 "bootstrap_public_key": public_key, "bootstrap_private_key_path": "/home/ci/.ssh/bootstrap",
                 "ca_path": "/home/ci/.sshca"}, **override)


@needs_terraform_for_validations
@pytest.mark.parametrize("key_args", [("-t", "ed25519"), ("-t", "rsa", "-b", "2048"), ("-t", "rsa", "-b", "4096")])
def test_enrolled_vm_accepts_the_key_types_azure_accepts(tmp_path, key_args):
    result = plan_variables("enrolled_vm", tmp_path, vm_values(keygen(tmp_path, *key_args)))
    assert result.returncode == 0, result.stderr


@needs_terraform_for_validations
@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda p: keygen(p, "-t", "rsa", "-b", "1024"), id="rsa-1024"),
        pytest.param(lambda p: keygen(p, "-t", "ecdsa"), id="ecdsa"),
        pytest.param(lambda p: subprocess.run(["ssh-keygen", "-e", "-f", str(p / "key0.pub")], capture_output=True,
                                              text=True, check=True).stdout, id="rfc4716"),
        pytest.param(lambda p: "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ bootstrap", id="type-mismatch"),
    ],
)
def test_enrolled_vm_refuses_keys_the_provider_refuses(tmp_path, make_key):
    keygen(tmp_path, "-t", "ed25519")  # key0, for the RFC 4716 conversion
    complaint = refusal(plan_variables("enrolled_vm", tmp_path, vm_values(make_key(tmp_path))))
    assert "bootstrap_public_key must be one line" in complaint


@needs_terraform_for_validations
@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"admin_username": "root"}, "admin_username must be a Linux user name"),
        ({"name": "-web"}, "name must be 1-64 letters"),
        ({"subnet_id": "vms"}, "subnet_id must be a subnet resource id"),
        ({"access_rules": [{"principal": "grp:web", "accounts": []}]}, "Each access rule needs"),
        ({"ansible_environment": {"SSHCA_CA_PASSPHRASE": "x"}}, "ansible_environment must not carry secrets"),
        ({"bootstrap_private_key_path": "-----BEGIN OPENSSH PRIVATE KEY-----"}, "must be a file path"),
        ({"image": "ubuntu-20.04"}, "image must be ubuntu-24.04 or ubuntu-22.04"),
        ({"zone": "4"}, "zone must be"),
    ],
)
def test_enrolled_vm_refuses_bad_inputs_naming_them(tmp_path, override, complaint):
    values = vm_values(keygen(tmp_path, "-t", "ed25519"), **override)
    assert complaint in refusal(plan_variables("enrolled_vm", tmp_path, values))


# --- checkov -------------------------------------------------------------------------------------


def test_checkov_finds_nothing_and_every_skip_is_justified(capsys):
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV.relative_to(REPO)}: run `make setup`")
    env = dict(os.environ, CKV_SKIP_PACKAGE_UPDATE_CHECK="True", BC_SKIP_MAPPING="TRUE")
    env.pop("BC_API_KEY", None)
    result = subprocess.run(
        [str(CHECKOV), "-d", str(TERRAFORM), "--framework", "terraform", "--output", "json", "--skip-download",
         "--download-external-modules", "false"],
        env=env, capture_output=True, text=True, check=False, timeout=600,
    )
    report = json.loads(result.stdout)
    results = report["results"]
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "checkov.json").write_text(json.dumps(report, indent=1))

    ran: dict[str, str] = {}
    for outcome in ("passed_checks", "failed_checks", "skipped_checks"):
        for check in results[outcome]:
            ran[check["check_id"]] = check["check_name"].strip()
    skips = sorted({(c["check_id"], c["check_result"].get("suppress_comment", "")) for c in results["skipped_checks"]})
    lines = [f"checkov {report['summary']['checkov_version']}: {report['summary']}", "checks that ran:"]
    lines += [f"  {check_id}  {name}" for check_id, name in sorted(ran.items())]
    lines += ["skips:"] + [f"  {check_id}: {reason}" for check_id, reason in skips]
    (OUTPUT / "checkov-checks.txt").write_text("\n".join(lines) + "\n")
    with capsys.disabled():
        print("\n" + "\n".join(lines))

    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in results["failed_checks"]]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert not results["parsing_errors"], results["parsing_errors"]
    for check_id, reason in skips:
        assert len(reason.split()) >= 5, f"skip of {check_id} is not justified: {reason!r}"
    # checkov's own SSH-from-internet check must have looked at our NSG rule and passed it.
    assert any(c["check_id"] == "CKV_AZURE_10" and c["resource"].endswith("azurerm_network_security_rule.ssh")
               for c in results["passed_checks"])


def test_checkov_skips_are_inline_with_reasons():
    for tf in TERRAFORM.rglob("*.tf"):
        for line in tf.read_text().splitlines():
            if "checkov:skip" in line:
                assert line.strip().startswith("#checkov:skip=CKV"), f"{tf}: {line.strip()}"
                _, _, reason = line.partition("=")[2].partition(":")
                assert len(reason.split()) >= 5, f"{tf}: skip without a reason: {line.strip()}"


# --- the enrollment contract's host principals, evaluated by terraform ----------------------------
# enrolled_vm's `host_certificate_principals` must list what enroll.yml signs (what `ssh-keyscan -c`
# then shows): its expression, taken from main.tf with the resource attributes it reads turned into
# variables, is evaluated by terraform and compared with the contract's host_principals().

PRINCIPAL_INPUTS = {
    "azurerm_linux_virtual_machine.this.name": "name",
    "local.enroll_address": "address",
    "local.private_ip_address": "private_ip",
    "local.fqdn": "fqdn",
    "var.extra_principals": "extra_principals",
}
PRINCIPAL_CASES = [
    ("web-1", "20.1.2.3", "10.0.1.4", "web-one.westeurope.cloudapp.azure.com", ["web.example.com"]),
    ("web-2", "20.1.2.4", "10.0.1.5", None, []),
    ("db-1", "10.0.1.6", "10.0.1.6", None, ["db.internal", "10.0.1.6"]),  # no public IP
]


@needs_terraform
def test_terraform_host_certificate_principals_equal_the_contracts(tmp_path):
    expression = unquote(load(TERRAFORM / "modules" / "enrolled_vm").locals()["host_certificate_principals"])
    used = set(re.findall(r"\b(?:azurerm_\w+\.\w+\.\w+|local\.\w+|var\.\w+)", expression))
    assert used <= set(PRINCIPAL_INPUTS), f"the expression reads {sorted(used - set(PRINCIPAL_INPUTS))} as well"
    for reference, variable in PRINCIPAL_INPUTS.items():
        expression = expression.replace(reference, f"var.{variable}")
    config = "".join(f'variable "{name}" {{\n  type = {kind}\n  default = null\n}}\n' for name, kind in (
        ("name", "string"), ("address", "string"), ("private_ip", "string"), ("fqdn", "string"),
        ("extra_principals", "list(string)")))
    config += f"output \"principals\" {{\n  value = {expression}\n}}\n"
    for index, (name, address, private_ip, fqdn, extra) in enumerate(PRINCIPAL_CASES):
        workdir = tmp_path / f"case{index}"
        workdir.mkdir()
        (workdir / "main.tf").write_text(config)
        (workdir / "case.tfvars.json").write_text(json.dumps(
            {"name": name, "address": address, "private_ip": private_ip, "fqdn": fqdn, "extra_principals": extra}))
        env = terraform_env(tmp_path, [])
        applied = run_terraform(["apply", "-auto-approve", "-input=false", "-lock=false", "-state=out.tfstate",
                                 "-var-file=case.tfvars.json"], workdir, env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        shown = run_terraform(["output", "-json", "-state=out.tfstate", "principals"], workdir, env)
        assert json.loads(shown.stdout) == host_principals(name, address, private_ip, fqdn or "", extra)
