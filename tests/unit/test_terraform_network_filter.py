"""The sshca.azure.network_from_terraform filter: terraform output -json in, network settings out."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from conftest import LOCALHOST_PLAY, collection_env

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("terraform_network", REPO / "plugins/filter/terraform_network.py")
terraform_network = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(terraform_network)
network_from_terraform = terraform_network.network_from_terraform
REQUIRED_OUTPUTS = terraform_network.REQUIRED_OUTPUTS

SUB = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-sshca/providers/Microsoft.Network"
VALUES = {
    "resource_group_name": "rg-sshca",
    "location": "westeurope",
    "vnet_id": f"{SUB}/virtualNetworks/sshca-vnet",
    "vnet_name": "sshca-vnet",
    "subnet_id": f"{SUB}/virtualNetworks/sshca-vnet/subnets/vms",
    "subnet_name": "vms",
    "nsg_id": f"{SUB}/networkSecurityGroups/sshca-nsg",
    "nsg_name": "sshca-nsg",
}


def terraform_output_json(values: dict) -> dict:
    """What `terraform output -json` prints for a root module exporting these outputs."""
    printed = {name: {"sensitive": False, "type": "string", "value": value} for name, value in values.items()}
    # Outputs the filter does not use, typed the way Terraform prints them, must not disturb it.
    printed["subnet_ids"] = {
        "sensitive": False,
        "type": ["object", {"vms": "string"}],
        "value": {"vms": values.get("subnet_id")},
    }
    printed["ssh_source_address_prefixes"] = {
        "sensitive": False,
        "type": ["tuple", ["string"]],
        "value": ["203.0.113.0/24"],
    }
    return printed


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(terraform_output_json(VALUES), id="terraform-output-json-dict"),
        pytest.param(json.dumps(terraform_output_json(VALUES), indent=2), id="terraform-output-json-string"),
        pytest.param(json.dumps(terraform_output_json(VALUES)).encode(), id="terraform-output-json-bytes"),
        pytest.param(dict(VALUES, subnet_ids={"vms": VALUES["subnet_id"]}), id="plain-values"),
    ],
)
def test_accepted_forms_give_the_network_settings(given):
    assert network_from_terraform(given) == VALUES


@pytest.mark.parametrize("name", REQUIRED_OUTPUTS)
def test_a_missing_output_is_named(name):
    printed = terraform_output_json(VALUES)
    del printed[name]
    with pytest.raises(AnsibleFilterError, match=rf"^network_from_terraform: missing output {name}:[^\n]*$"):
        network_from_terraform(printed)


def test_every_missing_output_is_named_at_once():
    with pytest.raises(AnsibleFilterError) as error:
        network_from_terraform({"vnet_name": "sshca-vnet"})
    message = str(error.value)
    assert "\n" not in message
    assert all(name in message for name in REQUIRED_OUTPUTS if name != "vnet_name")


@pytest.mark.parametrize(
    ("name", "bad", "complaint"),
    [
        ("subnet_id", None, "must be a string, got null"),
        ("subnet_id", ["a", "b"], "must be a string, got list"),
        ("location", 7, "must be a string, got int"),
        ("nsg_name", {"nested": "object"}, "must be a string, got dict"),
        ("vnet_name", "  ", "is empty"),
        ("subnet_id", "vms", "is not an Azure resource id"),
        ("vnet_id", f"{SUB}/networkSecurityGroups/sshca-nsg", "is not an Azure resource id"),
        ("nsg_id", f"{SUB}/virtualNetworks/sshca-vnet", "is not an Azure resource id"),
    ],
)
def test_an_ill_typed_output_is_named(name, bad, complaint):
    for printed in (terraform_output_json(dict(VALUES, **{name: bad})), dict(VALUES, **{name: bad})):
        with pytest.raises(AnsibleFilterError) as error:
            network_from_terraform(printed)
        message = str(error.value)
        assert f"output '{name}' {complaint}" in message
        assert "\n" not in message


def test_a_subnet_of_another_vnet_is_refused():
    values = dict(VALUES, subnet_id=f"{SUB}/virtualNetworks/other-vnet/subnets/vms")
    with pytest.raises(AnsibleFilterError, match="output 'subnet_id' is not a subnet of output 'vnet_id'"):
        network_from_terraform(values)


def test_resource_ids_compare_case_insensitively_as_azure_does():
    values = dict(VALUES, subnet_id=VALUES["subnet_id"].replace("resourceGroups/rg-sshca", "resourcegroups/RG-SSHCA"))
    assert network_from_terraform(values)["subnet_id"] == values["subnet_id"]


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ('{"subnet_id": ', "input is not valid JSON"),
        ("[]", "expected the object printed by `terraform output -json`"),
        (["subnet_id"], "got list"),
        (None, "got NoneType"),
    ],
)
def test_input_that_is_not_an_output_object_is_refused(given, complaint):
    with pytest.raises(AnsibleFilterError) as error:
        network_from_terraform(given)
    assert complaint in str(error.value)
    assert "\n" not in str(error.value)


def test_the_input_is_not_modified():
    printed = terraform_output_json(VALUES)
    before = copy.deepcopy(printed)
    network_from_terraform(printed)
    assert printed == before


def test_ansible_resolves_the_filter_by_its_fqcn(tmp_path: Path):
    """Through real ansible-playbook: the FQCN works on -e JSON, and a bad input fails the task in one line."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        LOCALHOST_PLAY
        + "    - name: Read the network\n"
        "      ansible.builtin.copy:\n"
        "        content: \"{{ sshca_network | sshca.azure.network_from_terraform | to_json }}\"\n"
        f"        dest: {tmp_path / 'network.json'}\n"
        "        mode: '0600'\n"
    )
    ansible_playbook = str(Path(sys.executable).parent / "ansible-playbook")

    def run(network: dict) -> subprocess.CompletedProcess:
        extra_vars = json.dumps({"sshca_network": network})
        return subprocess.run(
            [ansible_playbook, "-i", "localhost,", "-c", "local", str(playbook), "-e", extra_vars],
            capture_output=True, text=True, env=collection_env(), cwd=tmp_path, check=False,
        )

    good = run(terraform_output_json(VALUES))
    assert good.returncode == 0, good.stdout + good.stderr
    assert json.loads((tmp_path / "network.json").read_text()) == VALUES

    broken = terraform_output_json(VALUES)
    del broken["subnet_id"]
    bad = run(broken)
    assert bad.returncode != 0
    assert "network_from_terraform: missing output subnet_id" in bad.stdout + bad.stderr
