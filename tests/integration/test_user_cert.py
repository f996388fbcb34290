"""playbooks/user_cert.yml for a person who is not the operator: a certificate plus the known_hosts and
ssh_config that make `ssh -F <their config> <host>` just work (the real login is test_demo.py's step 2);
the admin principal refused; and signing through the lab's Key Vault, the key id naming who signed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_enroll_roles import PASSPHRASE, run_playbook

from conftest import REPO, collection_env
from labkit import emulator

BIN = Path(sys.executable).parent


def person_vars(work: Path, person: Path, principals: list[str], **extra) -> dict:
    """What a person passes: the published host CA key and their own files, nothing of the operator's else."""
    return {"sshca_ca_path": str(work / "ca"), "sshca_host_ca_public_key_path": str(work / "ca" / "host_ca.pub"),
            "sshca_user_key_path": str(person / "id_ed25519"), "sshca_user_principals": principals,
            "sshca_known_hosts_path": str(person / "known_hosts"), "sshca_ssh_config_path": str(person / "ssh_config"),
            "sshca_user_key_id": person.name, **extra}


def make_cas(folder: Path, env: dict, *args: str) -> None:
    """The operator's CAs, made by sshca.azure.ssh_ca (what enroll.yml does first)."""
    made = subprocess.run([str(BIN / "ansible"), "localhost", "-m", "sshca.azure.ssh_ca",
                           "-a", f"path={folder} {' '.join(args)}",
                           "-e", "ansible_python_interpreter={{ ansible_playbook_python }}"],
                          capture_output=True, text=True, env=env, cwd=folder.parent, timeout=120, check=False)
    assert made.returncode == 0, made.stdout + made.stderr


def test_user_cert_writes_the_client_files_check_apply_idempotent_and_refuses_the_admin_principal(tmp_path):
    # The login itself, by `ssh -F <her ssh_config> <host>` against enrolled lab hosts read from Azure, is
    # proven by tests/integration/test_demo.py (step 2), which runs this playbook the same way.
    work = tmp_path / "operator"
    work.mkdir()
    make_cas(work / "ca", collection_env({"SSHCA_CA_PASSPHRASE": PASSPHRASE}))
    alice = tmp_path / "alice"
    hosts = [{"name": "web-1", "address": "127.0.0.250", "private_ip": "10.0.1.4"}]
    variables = person_vars(work, alice, ["grp:web"], sshca_hosts=hosts)
    for check, changed in ((True, True), (False, True), (True, False), (False, False)):
        run = run_playbook("user_cert.yml", variables, tmp_path, check=check)
        assert run.rc == 0, run.output[-3000:]
        assert (run.changed("localhost") > 0) is changed, (check, run.output[-3000:])
        if check and changed:
            assert not alice.exists(), "check mode wrote files"
    assert PASSPHRASE not in run.output
    host_ca = " ".join((work / "ca" / "host_ca.pub").read_text().split()[:2])
    assert (alice / "known_hosts").read_text().splitlines()[1] == (
        f"@cert-authority web-1,127.0.0.250,10.0.1.4 {host_ca} sshca.azure-user:web-1")
    config = (alice / "ssh_config").read_text()
    for line in ("Host web-1 127.0.0.250", "HostName 127.0.0.250", "User azureuser", f"IdentityFile {alice}/id_ed25519",
                 f"CertificateFile {alice}/id_ed25519-cert.pub", "StrictHostKeyChecking yes",
                 f"UserKnownHostsFile {alice}/known_hosts"):
        assert line in config, line
    # ssh itself reads the entry that way (ssh -G evaluates the config without connecting).
    effective = subprocess.run(["ssh", "-G", "-F", str(alice / "ssh_config"), "web-1"], capture_output=True,
                               text=True, check=True).stdout.splitlines()
    assert {"hostname 127.0.0.250", "stricthostkeychecking true", "user azureuser"} <= set(effective)
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(alice / "id_ed25519-cert.pub")], capture_output=True,
                           text=True, check=True).stdout
    assert 'Key ID: "alice"' in shown and "grp:web" in shown

    # web-1 is decommissioned: the listing now returns web-2 alone. Its entries go from both files; what
    # alice wrote herself stays; the same fleet again changes nothing.
    own_host_line = "git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwnOwn"
    with (alice / "known_hosts").open("a") as known_hosts:
        known_hosts.write(own_host_line + "\n")
    with (alice / "ssh_config").open("a") as ssh_config:
        ssh_config.write("Host own-box\n    HostName 127.0.0.249\n")
    now = dict(variables, sshca_hosts=[{"name": "web-2", "address": "127.0.0.251"}])
    for changed in (True, False):
        run = run_playbook("user_cert.yml", now, tmp_path)
        assert run.rc == 0 and (run.changed("localhost") > 0) is changed, run.output[-3000:]
    for client_file in ("known_hosts", "ssh_config"):
        text = (alice / client_file).read_text()
        assert "web-1" not in text and "127.0.0.250" not in text and "sshca.azure-user:web-2" in text, client_file
    assert own_host_line in (alice / "known_hosts").read_text().splitlines()
    own_box = subprocess.run(["ssh", "-G", "-F", str(alice / "ssh_config"), "own-box"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert "hostname 127.0.0.249" in own_box

    # The admin principal: one line naming it, nothing written.
    mallory = tmp_path / "mallory"
    refused = run_playbook("user_cert.yml", person_vars(work, mallory, ["grp:web", "sshca-admin"], sshca_hosts=hosts),
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
        make_cas(operator_cas, env, "backend=azure_keyvault", "cas=host,user")
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
