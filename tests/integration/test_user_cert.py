"""playbooks/user_cert.yml for a person who is not the operator: a certificate plus the known_hosts and
ssh_config that make `ssh -F <their config> <host>` just work, judged by a real login to an enrolled lab
host; the admin principal refused; and signing through the lab's Key Vault, the key id naming who signed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_enroll_roles import PASSPHRASE, host_keys, run_playbook, work_with_bootstrap

from conftest import REPO, collection_env
from labkit import emulator

pytestmark = pytest.mark.lab

BIN = Path(sys.executable).parent
WEB_RULE = {"principal": "grp:web", "accounts": ["azureuser"], "host_tags": {"role": "web"}}


def person_vars(work: Path, person: Path, principals: list[str], **extra) -> dict:
    """What a person passes: the published host CA key and their own files, nothing of the operator's else."""
    return {"sshca_ca_path": str(work / "ca"), "sshca_host_ca_public_key_path": str(work / "ca" / "host_ca.pub"),
            "sshca_user_key_path": str(person / "id_ed25519"), "sshca_user_principals": principals,
            "sshca_known_hosts_path": str(person / "known_hosts"), "sshca_ssh_config_path": str(person / "ssh_config"),
            "sshca_user_key_id": person.name, **extra}


def test_user_cert_sets_up_known_hosts_and_ssh_config_so_ssh_just_works(lab_host_factory, tmp_path):
    work, _bootstrap, bootstrap_public = work_with_bootstrap(tmp_path)
    host = lab_host_factory([bootstrap_public], hostname="uc-web")
    enroll = run_playbook("enroll.yml", {
        "sshca_work_dir": str(work), "sshca_access_rules": [WEB_RULE],
        "sshca_hosts": [{"name": "uc-web", "address": host.address, "host_tags": {"role": "web"},
                         "host_keys": host_keys(host)}]}, tmp_path)
    assert enroll.rc == 0, enroll.output[-3000:]

    alice = tmp_path / "alice"
    variables = person_vars(work, alice, ["grp:web"],
                            sshca_hosts=[{"name": "uc-web", "address": host.address}])
    for check, changed in ((True, True), (False, True), (True, False), (False, False)):
        run = run_playbook("user_cert.yml", variables, tmp_path, check=check)
        assert run.rc == 0, run.output[-3000:]
        assert (run.changed("localhost") > 0) is changed, (check, run.output[-3000:])
        if check and changed:
            assert not alice.exists(), "check mode wrote files"
    assert PASSPHRASE not in run.output

    # Strict host checking against the host CA only, no flag but -F: the person's files are enough.
    login = subprocess.run(["ssh", "-F", str(alice / "ssh_config"), "uc-web", "id -un"], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "azureuser"
    assert "StrictHostKeyChecking yes" in (alice / "ssh_config").read_text()
    assert (alice / "known_hosts").read_text().count("@cert-authority uc-web,") == 1
    journal = host.exec("journalctl", "-u", "ssh", "--no-pager").stdout
    assert "ID alice (serial" in journal

    # The admin principal: one line naming it, nothing written.
    mallory = tmp_path / "mallory"
    refused = run_playbook("user_cert.yml", person_vars(work, mallory, ["grp:web", "sshca-admin"],
                                                        sshca_hosts=[{"name": "uc-web", "address": host.address}]),
                           tmp_path)
    assert refused.rc != 0
    failure = [line for line in refused.output.splitlines() if line.startswith("fatal:")]
    assert len(failure) == 1 and "names the admin principal sshca-admin" in failure[0]
    assert "nothing was written" in failure[0]
    assert not mallory.exists()


def test_user_cert_through_key_vault_names_the_signing_identity_and_reads_the_host_ca_there(tmp_path):
    with emulator.running(tmp_path / "emulator") as emu:
        env = collection_env(emu.env())
        operator_cas = tmp_path / "operator-ca"  # made by the operator; the person holds none of it
        made = subprocess.run(
            [str(BIN / "ansible"), "localhost", "-m", "sshca.azure.ssh_ca",
             "-a", f"backend=azure_keyvault path={operator_cas} cas=host,user",
             "-e", "ansible_python_interpreter={{ ansible_playbook_python }}"],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)
        assert made.returncode == 0, made.stdout + made.stderr
        person = tmp_path / "bob"
        variables = {"sshca_ca_backend": "azure_keyvault", "sshca_ca_path": str(person / "ca"),
                     "sshca_user_key_path": str(person / "id_ed25519"), "sshca_user_principals": ["grp:web"],
                     "sshca_known_hosts_path": str(person / "known_hosts"), "sshca_ssh_config_path": "",
                     "sshca_hosts": [{"name": "kv-web", "address": "127.0.0.250"}]}
        (tmp_path / "vars.json").write_text(json.dumps(variables))
        playbook = str(REPO / "playbooks" / "user_cert.yml")
        run = subprocess.run([str(BIN / "ansible-playbook"), playbook, "-e", f"@{tmp_path / 'vars.json'}"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        shown = subprocess.run(["ssh-keygen", "-L", "-f", str(person / "id_ed25519-cert.pub")], capture_output=True,
                               text=True, check=True).stdout
        assert f'Key ID: "app:{env["AZURE_CLIENT_ID"]}"' in shown
        host_ca = (operator_cas / "host_ca.pub").read_text().split()[:2]
        assert f"@cert-authority kv-web,127.0.0.250 {' '.join(host_ca)} " in (person / "known_hosts").read_text()
        assert env["AZURE_CLIENT_SECRET"] not in run.stdout + run.stderr
