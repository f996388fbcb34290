"""Filters to_rfc4716, from_rfc4716, ssh_fingerprint: against ssh-keygen, and through real Ansible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.sshca.azure.plugins.filter.ssh_keys import FilterModule

from conftest import collection_env, make_keypair

FILTERS = FilterModule().filters()


def keygen(*args: str) -> str:
    return subprocess.run(["ssh-keygen", *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("key_type", ["rsa", "ed25519", "ecdsa"])
def test_to_rfc4716_is_read_by_ssh_keygen(tmp_path, key_type):
    pair = make_keypair(tmp_path, "k", key_type)
    out = tmp_path / "k.rfc"
    out.write_text(FILTERS["to_rfc4716"](pair.public_text))
    assert keygen("-i", "-m", "RFC4716", "-f", str(out)).split()[:2] == pair.public_text.split()[:2]


def test_from_rfc4716_reads_ssh_keygen_export(tmp_path):
    pair = make_keypair(tmp_path, "k", "rsa")
    exported = keygen("-e", "-m", "RFC4716", "-f", str(pair.public))
    line = FILTERS["from_rfc4716"](exported)
    assert line.split()[:2] == pair.public_text.split()[:2]
    assert line.split(None, 2)[2].startswith("3072-bit RSA, converted by")  # the Comment header, unquoted
    assert FILTERS["from_rfc4716"](exported, "") == " ".join(pair.public_text.split()[:2])


def test_fingerprint_of_key_rfc4716_and_certificate_match_ssh_keygen(tmp_path):
    pair = make_keypair(tmp_path, "k")
    ca = make_keypair(tmp_path, "ca")
    keygen("-s", str(ca.private), "-I", "id", "-n", "alice", str(pair.public))
    expected = keygen("-l", "-f", str(pair.public)).split()[1]
    assert FILTERS["ssh_fingerprint"](pair.public_text) == expected
    assert FILTERS["ssh_fingerprint"](FILTERS["to_rfc4716"](pair.public_text)) == expected
    cert = tmp_path / "k-cert.pub"
    assert FILTERS["ssh_fingerprint"](cert.read_text()) == keygen("-l", "-f", str(cert)).split()[1] == expected


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa"])
def test_fingerprint_is_what_ssh_keygen_prints_for_a_ca_key(tmp_path, key_type):
    # host_enroll's principals command matches sshd's %F against these, computed on the controller.
    pair = make_keypair(tmp_path, "ca", key_type)
    assert FILTERS["ssh_fingerprint"](pair.public_text, "user_ca") == keygen("-l", "-E", "sha256", "-f",
                                                                             str(pair.public)).split()[1]


def test_bad_key_is_one_line_naming_the_variable():
    with pytest.raises(AnsibleFilterError) as caught:
        FILTERS["ssh_fingerprint"]("ssh-ed25519 AAAA-not-base64", "host_enroll_user_ca_public_key")
    assert "host_enroll_user_ca_public_key" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("name", "value"), [
    ("to_rfc4716", "ssh-ed25519 AAAA"),
    ("from_rfc4716", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPIs1kGYIT+0CS4ShkLjL1vn0wex9ExMarDOJfsBvE9p"),
    ("ssh_fingerprint", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"),
    ("ssh_fingerprint", 42),
])
def test_bad_input_is_one_line_naming_the_filter(name, value):
    with pytest.raises(AnsibleFilterError) as caught:
        FILTERS[name](value)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(name)


def test_filters_work_in_a_playbook(tmp_path):
    pair = make_keypair(tmp_path, "k")
    playbook = tmp_path / "play.yml"
    out = tmp_path / "out.json"
    playbook.write_text(
        "- hosts: localhost\n"
        "  gather_facts: false\n"
        "  vars:\n"
        "    ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
        f"    key: {json.dumps(pair.public_text.strip())}\n"
        "  tasks:\n"
        "    - ansible.builtin.copy:\n"
        "        dest: " + str(out) + "\n"
        "        mode: '0600'\n"
        "        content: \"{{ {'fp': key | sshca.azure.ssh_fingerprint,\n"
        "                      'back': key | sshca.azure.to_rfc4716 | sshca.azure.from_rfc4716} | to_json }}\"\n"
    )
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(playbook)], capture_output=True, text=True, env=collection_env(), cwd=tmp_path,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["fp"] == keygen("-l", "-f", str(pair.public)).split()[1]
    assert result["back"] == pair.public_text.strip()
