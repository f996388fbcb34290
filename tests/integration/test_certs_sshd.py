"""Real sshd decides: certificates from our CA against OpenSSH 9.2 on one lab host.

One host serves every case (CPU is scarce): it trusts our user CA (TrustedUserCAKeys) and presents
a host certificate from our host CA (HostCertificate). The login key is NOT in authorized_keys, so
only a certificate can let it in.
"""

# ruff: noqa: S106 - the passphrases here are test fixtures, not secrets

from __future__ import annotations

import subprocess
import time

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._ca_signers import FileCA
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import make_spec, resolve_validity
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import parse_public_key

from conftest import lab_available, make_keypair
from labkit import hosts

pytestmark = pytest.mark.lab

SSHD_DROP_IN = """\
TrustedUserCAKeys /etc/ssh/sshca_user_ca.pub
HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub
"""


def put(host: hosts.Host, path: str, content: str) -> None:
    host.exec("sh", "-c", 'printf "%s" "$1" > "$2"', "put", content, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not lab_available():
        pytest.fail("lab hosts need root and podman: run `make setup` first")
    folder = tmp_path_factory.mktemp("sshd")
    admin = make_keypair(folder, "admin")
    login_key = make_keypair(folder, "login")
    ca = FileCA(str(folder / "ca"), passphrase="sshd-test-ca")
    ca.ensure()
    other_ca = FileCA(str(folder / "other-ca"), allow_unencrypted=True)
    other_ca.ensure()
    name = f"t-certs-{int(time.time()) % 100000}"
    host = hosts.start_host(name, [admin.public_text], owner="pytest")
    try:
        host_key = parse_public_key(host.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout, "host key")
        now = int(time.time())
        host_cert = ca.signer("host").sign_certificate(
            make_spec("host", host_key, [host.address, host.hostname], resolve_validity("host", now)))
        put(host, "/etc/ssh/sshca_user_ca.pub", ca.public_key("user").openssh() + "\n")
        put(host, "/etc/ssh/ssh_host_ed25519_key-cert.pub", host_cert.openssh() + "\n")
        put(host, "/etc/ssh/sshd_config.d/60-sshca.conf", SSHD_DROP_IN)
        host.exec("sshd", "-t")
        host.exec("systemctl", "restart", "ssh")
        hosts.wait_for_ssh(host.address)
        yield {"host": host, "ca": ca, "other_ca": other_ca, "login_key": login_key, "folder": folder}
    finally:
        hosts.stop_host(name)


def user_cert(lab, *, ca=None, principals=("azureuser",), **validity) -> str:
    key = parse_public_key(lab["login_key"].public_text)
    window = resolve_validity("user", int(time.time()), **validity)
    return (ca or lab["ca"]).signer("user").sign_certificate(make_spec("user", key, list(principals), window))


def login(lab, cert=None, known_hosts=None) -> subprocess.CompletedProcess:
    options = []
    if cert is not None:
        path = lab["folder"] / f"cert-{time.monotonic_ns()}.pub"
        path.write_text(cert.openssh() + "\n")
        options = ["-o", f"CertificateFile={path}"]
    return lab["host"].ssh(lab["login_key"].private, "id", "-un", options=options, known_hosts=known_hosts)


def sshd_log(lab) -> str:
    return lab["host"].exec("journalctl", "-u", "ssh", "--no-pager", "-o", "cat").stdout


def test_user_certificate_from_our_ca_logs_in(lab):
    result = login(lab, user_cert(lab))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "azureuser"


def test_the_key_alone_is_refused(lab):
    result = login(lab)
    assert result.returncode == 255 and "Permission denied" in result.stderr


def test_expired_certificate_is_refused(lab):
    result = login(lab, user_cert(lab, valid_from="-2h", valid_to="-1h"))
    assert result.returncode == 255 and "Permission denied" in result.stderr
    assert "Certificate invalid: expired" in sshd_log(lab)


def test_certificate_for_another_principal_is_refused(lab):
    result = login(lab, user_cert(lab, principals=("someone-else",)))
    assert result.returncode == 255 and "Permission denied" in result.stderr
    assert "Certificate invalid: name is not a listed principal" in sshd_log(lab)


def test_certificate_from_another_ca_is_refused(lab):
    result = login(lab, user_cert(lab, ca=lab["other_ca"]))
    # sshd 9.2 logs an unlisted CA only at DEBUG2; the same key with our CA's certificate logs in (above).
    assert result.returncode == 255 and "Permission denied" in result.stderr


def test_host_certificate_verifies_with_only_a_cert_authority_line(lab):
    host = lab["host"]
    known_hosts = lab["folder"] / "known_hosts"
    known_hosts.write_text(f"@cert-authority {host.address} {lab['ca'].public_key('host').openssh()}\n")
    result = login(lab, user_cert(lab), known_hosts=str(known_hosts))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "azureuser"
    assert known_hosts.read_text().count("\n") == 1  # nothing was learnt on first use


def test_host_certificate_from_an_untrusted_ca_fails_strict_checking(lab):
    host = lab["host"]
    known_hosts = lab["folder"] / "known_hosts_other"
    known_hosts.write_text(f"@cert-authority {host.address} {lab['other_ca'].public_key('host').openssh()}\n")
    result = login(lab, user_cert(lab), known_hosts=str(known_hosts))
    assert result.returncode == 255 and "Host key verification failed" in result.stderr
