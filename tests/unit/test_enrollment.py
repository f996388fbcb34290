"""The enrollment contract (module_utils/_enrollment.py) and its filters: access rules, host
principals, bad input refused in one line naming host and field, host keys from Run Command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.sshca.azure.plugins.filter.enrollment import FilterModule
from ansible_collections.sshca.azure.plugins.module_utils import _azure_run_command as run_command
from ansible_collections.sshca.azure.plugins.module_utils import _enrollment as contract

from conftest import REPO, collection_env, make_keypair

FILTERS = FilterModule().filters()
VM_ID = "/subscriptions/0000/resourceGroups/rg-a/providers/Microsoft.Compute/virtualMachines/web-1"


def rules(*entries):
    return contract.access_rules([{"principal": p, "accounts": a, "host_tags": t} for p, a, t in entries])


# --- access rules: real tag matching ----------------------------------------------------------


@pytest.mark.parametrize(("rule_tags", "host_tags", "applies"), [
    ({}, {}, True),  # no tags: every host
    ({}, {"role": "web"}, True),
    ({"role": "web"}, {"role": "web", "env": "prod"}, True),
    ({"role": "web"}, {"role": "db"}, False),
    ({"role": "web", "env": "prod"}, {"role": "web"}, False),
    # A `k=v` string join would call these equal.
    ({"a": "b=c"}, {"a=b": "c"}, False),
    ({"a=b": "c"}, {"a": "b=c"}, False),
    ({"a": "b=c"}, {"a": "b=c"}, True),
    ({"a=b": "c=d"}, {"a=b": "c=d", "x": "y"}, True),
    ({"role": ""}, {"role": ""}, True),
    ({"role": ""}, {}, False),
])
def test_a_rule_applies_when_its_tags_are_among_the_hosts(rule_tags, host_tags, applies):
    [rule] = rules(("grp:x", ["ops"], rule_tags))
    mapped = contract.account_principals([rule], host_tags, "azureuser", ["sshca-admin"])
    assert ("ops" in mapped) is applies


@pytest.mark.parametrize(("entries", "host_tags", "expected"), [
    ([], {"role": "web"}, {"azureuser": ["sshca-admin"]}),  # no rules: only the admin principal
    ([("grp:web", ["azureuser", "deploy"], {"role": "web"}), ("grp:all", ["azureuser"], {}),
      ("grp:web", ["deploy"], {})],  # overlapping: one principal reaches deploy twice
     {"role": "web"},
     {"azureuser": ["sshca-admin", "grp:web", "grp:all"], "deploy": ["grp:web"]}),
    ([("grp:db", ["postgres"], {"role": "db"}), ("grp:ops", ["ops", "postgres"], {"env": "prod"})],
     {"role": "web", "env": "prod"},
     {"azureuser": ["sshca-admin"], "ops": ["grp:ops"], "postgres": ["grp:ops"]}),
    ([("grp:db", ["postgres"], {"role": "db"})], {"role": "web"}, {"azureuser": ["sshca-admin"]}),
    ([("sshca-admin", ["azureuser"], {})], {}, {"azureuser": ["sshca-admin"]}),
])
def test_accounts_get_the_principals_of_every_rule_that_applies(entries, host_tags, expected):
    assert contract.account_principals(rules(*entries), host_tags, "azureuser", ["sshca-admin"]) == expected


def test_host_principals_come_from_the_operator_and_azure_in_terraforms_order():
    assert contract.host_principals("web-1", "20.1.2.3", "10.0.1.4", "web-1.westeurope.cloudapp.azure.com",
                                    ["web.example.com", "10.0.1.4"]) == [
        "web-1", "20.1.2.3", "10.0.1.4", "web-1.westeurope.cloudapp.azure.com", "web.example.com"]
    # No public IP: the private address is where enroll connects; it appears once.
    assert contract.host_principals("db-1", "10.0.1.5", "10.0.1.5", "", []) == ["db-1", "10.0.1.5"]


# --- the filters: inputs -> targets -----------------------------------------------------------


def test_hosts_become_targets_with_principals_accounts_and_pinned_keys(tmp_path):
    host_key = make_keypair(tmp_path, "host", "ed25519")
    [target] = FILTERS["enroll_targets"](
        [{"name": "web-1", "address": "20.1.2.3", "private_ip": "10.0.1.4", "fqdn": "web-1.example.net",
          "extra_principals": ["web"], "host_tags": {"role": "web"}, "host_keys": [host_key.public_text]}],
        "sshca_hosts", access_rules=[{"principal": "grp:web", "accounts": ["deploy"], "host_tags": {"role": "web"}}])
    assert target["principals"] == ["web-1", "20.1.2.3", "10.0.1.4", "web-1.example.net", "web"]
    assert target["accounts"] == {"azureuser": ["sshca-admin"], "deploy": ["grp:web"]}
    # What user-CA certificates may use: never the admin principal.
    assert target["user_ca_accounts"] == {"deploy": ["grp:web"]}
    assert target["host_key_source"] == "given"
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(host_key.public)], capture_output=True, text=True,
                                 check=True).stdout.split()[1]
    assert target["host_keys"] == [{"family": "ed25519", "key": " ".join(host_key.public_text.split()[:2]),
                                    "fingerprint": fingerprint,
                                    "certificate_path": "/etc/ssh/ssh_host_ed25519_key-cert.pub"}]
    assert target["known_hosts"] == f"web-1,20.1.2.3 {' '.join(host_key.public_text.split()[:2])}\n"
    assert target["aliases"] == ["web-1.example.net", "web"]


def test_an_inventory_group_reads_only_its_sshca_variables():
    hostvars = {"web-1": {"ansible_host": "20.1.2.3", "sshca_host_tags": {"role": "web"}, "sshca_vm_name": "web-1",
                          "sshca_work_dir": "~/.sshca", "ansible_user": "someone"}}
    [target] = FILTERS["enroll_targets"](hostvars, "sshca_hosts_group", resource_group="rg-a", group="webs")
    assert (target["address"], target["vm_name"], target["resource_group"]) == ("20.1.2.3", "web-1", "rg-a")
    assert target["host_key_source"] == "pending"
    assert FILTERS["host_key_vms"]([target]) == [{"name": "web-1", "resource_group": "rg-a"}]


def test_a_fleet_is_checked_before_creation_and_enrolled_with_what_azure_made():
    fleet = [{"name": "web-1", "host_tags": {"role": "web"}, "dns_label": "web-one", "extra_principals": ["web"]},
             {"name": "web-2"}]
    assert FILTERS["enroll_targets"](fleet, "sshca_fleet") == []
    assert FILTERS["fleet_vms"](fleet) == [
        {"name": "web-1", "tags": {"role": "web"}, "dns_label": "web-one", "public_ip": True},
        {"name": "web-2", "tags": {}}]
    vms = [{"name": "web-1", "id": VM_ID, "public_ip": "20.1.2.3", "private_ip": "10.0.1.4",
            "fqdn": "web-one.westeurope.cloudapp.azure.com"},
           {"name": "web-2", "id": VM_ID.replace("web-1", "web-2"), "public_ip": None}]  # check mode: not made
    [target] = FILTERS["enroll_targets"](fleet, "sshca_fleet", vms=vms)
    assert target["principals"] == ["web-1", "20.1.2.3", "10.0.1.4", "web-one.westeurope.cloudapp.azure.com", "web"]
    assert target["vm_id"] == VM_ID and target["host_key_source"] == "pending"
    assert FILTERS["host_key_vms"]([target]) == [{"id": VM_ID}]


GOOD = {"name": "web-1", "address": "20.1.2.3", "vm_id": VM_ID}


@pytest.mark.parametrize(("kind", "entry", "settings", "message"), [
    ("sshca_hosts", dict(GOOD, colour="blue"), {},
     "enroll: sshca_hosts[0] (web-1): unknown key colour (known: name, address,"),
    ("sshca_hosts", dict(GOOD, host_tags={"team/a": "x"}), {},
     "enroll: sshca_hosts[0] (web-1): host_tags: tag name 'team/a' must be 1-512 characters without any of"),
    ("sshca_hosts", dict(GOOD, host_tags={f"t{n}": "v" for n in range(51)}), {},
     "enroll: sshca_hosts[0] (web-1): host_tags: has 51 tags; Azure allows at most 50 per resource"),
    ("sshca_hosts", dict(GOOD, host_tags={"role": "x" * 257}), {},
     "enroll: sshca_hosts[0] (web-1): host_tags: value of tag 'role' has 257 characters; Azure allows at most 256"),
    ("sshca_hosts", dict(GOOD, extra_principals=["web one"]), {},
     "enroll: sshca_hosts[0] (web-1): extra_principals entry 'web one' contains ' '"),
    ("sshca_hosts", dict(GOOD, extra_principals=["a,b"]), {},
     "enroll: sshca_hosts[0] (web-1): extra_principals entry 'a,b' contains ','"),
    ("sshca_hosts", dict(GOOD, extra_principals=["a\nb"]), {},
     "enroll: sshca_hosts[0] (web-1): extra_principals entry 'a\\nb' contains '\\n'"),
    ("sshca_hosts", GOOD, {"access_rules": [{"principal": "grp ops", "accounts": ["ops"]}]},
     "enroll: sshca_access_rules[0]: principal 'grp ops' contains ' '"),
    ("sshca_hosts", GOOD, {"access_rules": [{"principal": "grp:ops", "accounts": ["Ops"]}]},
     "enroll: sshca_access_rules[0]: account 'Ops' is not a valid Linux user name"),
    ("sshca_hosts", GOOD, {"access_rules": [{"principal": "sshca-admin", "accounts": ["ops"]}]},
     "enroll: sshca_access_rules[0]: principal 'sshca-admin' is an admin principal, which only admin-CA "
     "certificates carry"),
    ("sshca_hosts", GOOD, {"accounts": [{"name": "9lives"}]},
     "enroll: sshca_accounts[0]: name '9lives' is not a valid Linux user name"),
    ("sshca_hosts", GOOD, {"admin_user": "Admin User"},
     "enroll: sshca_admin_user: admin user 'Admin User' is not a valid Linux user name"),
    ("sshca_fleet", {"name": "web-1"}, {"admin_user": "backup"},
     "enroll: sshca_admin_user: 'backup' is a name Azure reserves or the image already uses"),
    ("sshca_fleet", {"name": "web_1"}, {},
     "enroll: sshca_fleet[0] (web_1): name: 'web_1' must be 1-64 letters, digits or '-'"),
    ("sshca_fleet", {"name": "web-1", "image": "ubuntu1804"}, {},
     "enroll: sshca_fleet[0] (web-1): image: 'ubuntu1804' is not a preset"),
    ("sshca_fleet", {"name": "web-1", "host_tags": {"a<b": "c"}}, {},
     "enroll: sshca_fleet[0] (web-1): host_tags: tag name 'a<b' must be"),
    ("sshca_hosts", {"name": "web-1", "address": "20.1.2.3"}, {},
     "enroll: sshca_hosts[0] (web-1): no way to check its host keys: give vm_id"),
    ("sshca_hosts", dict(GOOD, host_keys=["ssh-ed25519 AAAA"]), {},
     "enroll: sshca_hosts[0] (web-1): host_keys[0]"),
    ("sshca_hosts", dict(GOOD, address="20.1.2.3; rm -rf /"), {},
     "enroll: sshca_hosts[0] (web-1): address '20.1.2.3; rm -rf /' is not a host name or IP address"),
])
def test_bad_input_is_refused_in_one_line_naming_host_and_field(kind, entry, settings, message):
    with pytest.raises(AnsibleFilterError) as err:
        FILTERS["enroll_targets"]([entry], kind, **settings)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_a_host_listed_twice_is_refused():
    with pytest.raises(AnsibleFilterError, match=r"^enroll: host web-1: is listed twice$"):
        FILTERS["enroll_targets"]([GOOD, GOOD], "sshca_hosts")


def test_trust_on_first_use_only_when_asked_for():
    [target] = FILTERS["enroll_targets"]([{"name": "lab-1", "accept_new_host_keys": True}], "sshca_hosts")
    assert target["host_key_source"] == "accept-new" and target["host_keys"] == []


# --- host keys from Azure's Run Command -------------------------------------------------------


def message(stdout, stderr=""):
    return f"Enable succeeded: \n[stdout]\n{stdout}\n[stderr]\n{stderr}"


def test_run_command_output_pins_exactly_the_marked_host_keys(tmp_path):
    ed = make_keypair(tmp_path, "ed", "ed25519").public_text.strip()
    rsa = make_keypair(tmp_path, "rsa", "rsa").public_text.strip()
    stdout = "\n".join([
        "motd noise",
        f"{contract.RUN_COMMAND_MARKER} /etc/ssh/ssh_host_ed25519_key.pub {ed}",
        f"{contract.RUN_COMMAND_MARKER} /etc/ssh/ssh_host_rsa_key.pub {rsa}",
        f"{contract.RUN_COMMAND_MARKER} /tmp/evil_key.pub {rsa}",  # not a host key file
    ])
    keys = contract.host_keys_from_run_command(message(stdout), "VM web-1")
    assert [k.key for k in keys] == [" ".join(ed.split()[:2]), " ".join(rsa.split()[:2])]
    [target] = FILTERS["enroll_targets"]([GOOD], "sshca_hosts")
    [pinned] = FILTERS["pin_host_keys"]([target], [{"id": VM_ID.upper(), "host_keys": [
        {"family": k.family, "key": k.key, "fingerprint": k.fingerprint} for k in keys]}])
    assert pinned["host_key_source"] == "azure"
    assert [k["key"] for k in pinned["host_keys"]] == [k.key for k in keys]


@pytest.mark.parametrize(("stdout", "problem"), [
    ("", "Run Command found no public host key in /etc/ssh (cat: permission denied)"),
    (f"{contract.RUN_COMMAND_MARKER} /etc/ssh/ssh_host_rsa_key.pub ssh-ed25519 "
     "AAAAC3NzaC1lZDI1NTE5AAAAIG/OF+RfHmQLpilRM0AR9efCqkGJqxVJgEH6KxFBN0pT",
     "/etc/ssh/ssh_host_rsa_key.pub holds a key of type ed25519"),
])
def test_run_command_output_without_usable_keys_fails_naming_the_vm(stdout, problem):
    with pytest.raises(contract.EnrollmentError) as err:
        contract.host_keys_from_run_command(message(stdout, "cat: permission denied"), "VM web-1")
    assert str(err.value).startswith("VM web-1: " + problem)


def test_a_vm_run_command_did_not_answer_for_fails_its_host():
    [target] = FILTERS["enroll_targets"]([GOOD], "sshca_hosts")
    with pytest.raises(AnsibleFilterError, match=r"^enroll: host web-1: Azure's Run Command returned no host keys"):
        FILTERS["pin_host_keys"]([target], [])


# --- through enroll.yml: refused before anything is written -----------------------------------


@pytest.mark.parametrize(("extra_vars", "message"), [
    ({"sshca_fleet": [{"name": "web-1"}], "sshca_admin_user": "backup", "sshca_resource_group": "rg",
      "sshca_subnet_id": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s"},
     "enroll: sshca_admin_user: 'backup' is a name Azure reserves"),
    ({"sshca_hosts": [{"name": "web-1", "address": "127.0.0.9", "host_tags": {"a>b": "c"},
                       "accept_new_host_keys": True}]},
     "enroll: sshca_hosts[0] (web-1): host_tags: tag name 'a>b' must be"),
])
def test_enroll_yml_refuses_bad_input_before_writing_anything(tmp_path, extra_vars, message):
    """No Azure credentials and no reachable host: any call to either would fail differently."""
    work = tmp_path / "work"
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({"sshca_work_dir": str(work), **extra_vars}))
    env = {k: v for k, v in collection_env().items() if not k.startswith("AZURE_")}
    playbook = [str(Path(sys.executable).parent / "ansible-playbook"), str(REPO / "playbooks" / "enroll.yml")]
    proc = subprocess.run([*playbook, "-e", f"@{variables}"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          check=False)
    assert proc.returncode != 0
    [line] = [line for line in (proc.stdout + proc.stderr).splitlines() if '"msg":' in line]
    assert message in line, line
    assert not work.exists()


# --- Run Command's one message -> stdout, stderr, exit status --------------------------------


@pytest.mark.parametrize(("stdout", "status"), [
    (f"hello\n{run_command.EXIT_MARKER}0", 0),
    (f"hello\n{run_command.EXIT_MARKER}3", 3),
    ("hello", None),  # Azure kept only the last 4,096 bytes and the marker line is not among them
])
def test_run_command_output_carries_the_scripts_exit_status(stdout, status):
    assert run_command.split_output(message(stdout, "warning\n")) == ("hello", "warning", status)
    assert run_command.wrapped(["true"])[-1] == f'echo "{run_command.EXIT_MARKER}$?"'


@pytest.mark.parametrize(("vms", "problem"), [
    ([{"name": "web-1"}], "vms[0] needs id, or name with resource_group"),
    ([{"id": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n"}],
     "vms[0]: id '/subscriptions/0/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n' is not a VM"),
    ([{"name": "web-1", "size": "big"}], "vms[0]: unknown key size"),
])
def test_run_command_vm_references_are_checked(vms, problem):
    with pytest.raises(run_command.RunCommandInputError) as err:
        run_command.vm_references(vms, None)
    assert str(err.value).startswith(problem)
    assert run_command.vm_references([{"id": VM_ID}, {"name": "web-2"}], "rg-b") == [
        (VM_ID, "rg-a", "web-1"), ("", "rg-b", "web-2")]
