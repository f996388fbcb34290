"""The azure_keyvault CA backend against the lab's Key Vault, with the real azure-keyvault-keys
clients: the modules, RBAC per CA key, bad input, and real sshd judging the certificates."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest
from ansible_collections.sshca.azure.plugins.module_utils._ca_keyvault import KeyVaultCA
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import (
    certificate_task,
    make_spec,
    resolve_validity,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import SSHKeyError, parse_public_key
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import make_keypair
from labkit import emulator, hosts

CLIENT_VARIABLES = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST",
                    "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSHCA_KEYVAULT_URL")
# Keys the module-level tests share; the default names (sshca-*-ca) belong to the ssh_ca test.
TEST_KEYS = {"host": "t-host-ca", "user": "t-user-ca", "admin": "t-admin-ca"}


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    """The lab emulator's Key Vault, and the environment a controller pointed at it would have."""
    with emulator.running(tmp_path_factory.mktemp("emulator")) as emu:
        env = emu.env()
        saved = {name: os.environ.get(name) for name in (*CLIENT_VARIABLES, "SSHCA_CA_PASSPHRASE")}
        os.environ.update({name: env[name] for name in CLIENT_VARIABLES})
        os.environ.pop("SSHCA_CA_PASSPHRASE", None)
        credential = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
                                            authority=env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)
        try:
            yield SimpleNamespace(emu=emu, url=env["SSHCA_KEYVAULT_URL"].rstrip("/"), credential=credential,
                                  client_id=env["AZURE_CLIENT_ID"], secret=env["AZURE_CLIENT_SECRET"],
                                  keys=KeyClient(env["SSHCA_KEYVAULT_URL"], credential))
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def vault_ca(vault, **options) -> KeyVaultCA:
    return KeyVaultCA(vault.url, credential=vault.credential, **options)


@pytest.fixture(scope="module")
def test_cas(vault, tmp_path_factory):
    """The three CA keys (EC P-384) and their public-key folder; RBAC grants sign on the user CA alone."""
    folder = tmp_path_factory.mktemp("kv") / "ca"
    vault_ca(vault, key_names=TEST_KEYS, path=str(folder)).ensure()
    vault.emu.set_faults(key_vault={"permissions": {TEST_KEYS["user"]: ["get", "sign"],
                                                    TEST_KEYS["host"]: ["get"], TEST_KEYS["admin"]: ["get"]}})
    return folder


def emulator_secrets(vault) -> list[str]:
    """The vault's private numbers in the forms a leak would show: decimal, hex, base64 at each alignment.
    (Not the PEM lines: an EC key's PEM embeds its public point, which certificates carry by design.)"""
    state = json.loads((vault.emu.state_dir / "resources.json").read_text())
    found = []
    for versions in state["keys"].values():
        for entry in versions:
            key = serialization.load_pem_private_key(entry["pem"].encode(), None)
            number = (key.private_numbers().d if isinstance(key, rsa.RSAPrivateKey)
                      else key.private_numbers().private_value)
            raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
            found += [str(number), f"{number:x}", *(base64.b64encode(raw[i:i + 24]).decode() for i in range(3))]
    return found


def sign_requests(vault) -> list[dict]:
    return [entry for entry in vault.emu.requests() if entry["method"] == "POST" and entry["path"].endswith("/sign")]


# --- the modules ----------------------------------------------------------------------------------


def run_four(ansible_module, module, args, changed_first=True):
    """check, apply, check, apply (the last one with -vvv and diff); asserts `changed` each time."""
    runs = []
    for step, (check, changed) in enumerate(((True, changed_first), (False, changed_first), (True, False),
                                             (False, False))):
        run = ansible_module(module, args, check=check, **({"verbosity": 3, "diff": True} if step == 3 else {}))
        assert not run.failed and run.changed is changed, (module, step, run.result)
        runs.append(run)
    return runs


def test_ssh_ca_makes_one_vault_key_per_ca_and_no_private_byte_on_the_controller(ansible_module, vault, tmp_path):
    folder = tmp_path / "ca"
    runs = run_four(ansible_module, "ssh_ca", {"backend": "azure_keyvault", "path": str(folder)})  # vault_url: env
    assert [line.split(" (")[0] for line in runs[0].result["changes"]] == [
        f"create folder {folder}",
        *(f"create Key Vault key {vault.url}/keys/sshca-{kind}-ca" for kind in ("host", "user", "admin"))]
    made = runs[1].result
    for kind in ("host", "user", "admin"):
        key = vault.keys.get_key(f"sshca-{kind}-ca")
        assert made[f"{kind}_ca_key_id"] == key.id and made[f"{kind}_ca_key_version"] == key.properties.version
        assert sorted(key.key_operations) == ["sign", "verify"]  # the CA key can do nothing but sign
        public = (folder / f"{kind}_ca.pub").read_text().strip()
        assert public == made[f"{kind}_ca_public_key"] and public.startswith("ecdsa-sha2-nistp384 ")
        assert runs[3].result[f"{kind}_ca_public_key"] == public
    assert len({made[f"{kind}_ca_fingerprint"] for kind in ("host", "user", "admin")}) == 3
    # No CA key file on the controller, and no private byte in -vvv output.
    assert sorted(p.name for p in folder.iterdir()) == ["admin_ca.pub", "host_ca.pub", "user_ca.pub"]
    output = "".join(run.output for run in runs)
    assert "PRIVATE KEY" not in output and "<localhost> EXEC" in runs[3].output  # -vvv shows the module run
    assert not [secret for secret in [*emulator_secrets(vault), vault.secret] if secret in output]


def test_ssh_cert_signs_through_key_vault_with_sign_granted_on_the_user_ca_alone(
        ansible_module, vault, test_cas, tmp_path):
    key = make_keypair(tmp_path, "alice")
    args = {"type": "user", "ca_backend": "azure_keyvault", "ca_path": str(test_cas), "user_ca_key": TEST_KEYS["user"],
            "public_key_path": str(key.public), "path": str(tmp_path / "alice-cert.pub"), "principals": ["alice"]}
    log = test_cas / "issued.jsonl"
    log_before = log.read_text().splitlines() if log.exists() else []
    signs_before = len(sign_requests(vault))
    runs = run_four(ansible_module, "ssh_cert", args)
    result = runs[1].result
    version = vault.keys.get_key(TEST_KEYS["user"]).properties.version
    assert result["ca_key_version"] == version and result["ca_key_id"].endswith(f"/keys/{TEST_KEYS['user']}/{version}")
    # The key id names who signed: the service principal the vault token was issued to.
    assert result["key_id"] == f"app:{vault.client_id}"
    listing = subprocess.run(["ssh-keygen", "-L", "-f", str(tmp_path / "alice-cert.pub")], check=True,
                             capture_output=True, text=True).stdout
    user_ca = subprocess.run(["ssh-keygen", "-l", "-f", str(test_cas / "user_ca.pub")], check=True,
                             capture_output=True, text=True).stdout.split()[1]
    assert f"Signing CA: ECDSA {user_ca} (using ecdsa-sha2-nistp384)" in listing
    assert f'Key ID: "app:{vault.client_id}"' in listing
    # One certificate, one signature, one log line: check runs and the idempotent run sign nothing.
    assert len(sign_requests(vault)) == signs_before + 1
    lines = log.read_text().splitlines()[len(log_before):]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["serial"] == result["serial"] and entry["principals"] == ["alice"]
    assert entry["backend"] == "azure_keyvault" and entry["key_version"] == version
    assert entry["ca_fingerprint"] == user_ca and entry["signed_by"] == f"app:{vault.client_id}"
    assert vault.secret not in log.read_text()

    # The same identity has no sign on the host CA: Key Vault refuses, one line, nothing written.
    refused = ansible_module("ssh_cert", {**args, "type": "host", "host_ca_key": TEST_KEYS["host"],
                                          "path": str(tmp_path / "host-cert.pub"), "principals": ["h1"]})
    assert refused.failed
    assert refused.result["msg"] == (
        f"{vault.url}/keys/{TEST_KEYS['host']}: sign refused: 403 Forbidden/ForbiddenByRbac: Caller is not "
        "authorized to perform action on resource (Microsoft.KeyVault/vaults/keys/sign/action)")
    assert not (tmp_path / "host-cert.pub").exists() and len(log.read_text().splitlines()) == len(log_before) + 1
    output = "".join(run.output for run in [*runs, refused])
    assert not [secret for secret in [*emulator_secrets(vault), vault.secret] if secret in output]


def test_a_pinned_key_version_signs_after_the_key_gets_a_new_one_and_hsm_keys_are_asked_for(vault, tmp_path):
    first = vault.keys.create_ec_key("t-pinned", curve="P-256", key_operations=["sign", "verify"])
    vault.keys.create_ec_key("t-pinned", curve="P-256", key_operations=["sign", "verify"])  # a new CA, in effect
    pinned = vault_ca(vault, key_names={"user": f"t-pinned/{first.properties.version}"}, kinds=("user",))
    subject = parse_public_key(make_keypair(tmp_path, "s").public_text)
    window = resolve_validity("user", int(time.time()))
    cert = pinned.signer("user").sign_certificate(make_spec("user", subject, ["a"], window))
    assert pinned.describe("user")["key_version"] == first.properties.version
    assert cert.signing_ca == pinned.public_key("user") != vault_ca(
        vault, key_names={"user": "t-pinned"}, kinds=("user",)).public_key("user")
    hsm = vault_ca(vault, key_names={"user": "t-hsm"}, kinds=("user",), key_type="rsa", key_size=3072, hsm=True)
    assert hsm.plan() == [f"create Key Vault key {vault.url}/keys/t-hsm (RSA 3072, HSM) for the user CA"]
    hsm.ensure()
    assert vault.keys.get_key("t-hsm").key_type == "RSA-HSM"


# --- bad input: one line naming the vault and the key, nothing written ------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sign_into(folder: Path, ca: KeyVaultCA, kind: str = "user") -> None:
    subject = make_keypair(folder.parent, "subject").public_text
    params = {"type": "host" if kind == "host" else "user", "ca": kind, "public_key": subject,
              "path": str(folder / "cert.pub"), "principals": ["p"]}
    certificate_task(params, ca, check_mode=False)


BAD_INPUTS = {
    "an Ed25519 CA": (
        lambda vault, out: vault_ca(vault, path=str(out / "ca"), key_type="ed25519").ensure(),
        "{url}/keys/sshca-host-ca: Key Vault and Managed HSM have no Ed25519 keys; use key_type rsa or ecdsa"),
    "a wrong vault URL": (
        lambda vault, out: KeyVaultCA(f"https://127.0.0.1:{vault.port}/", credential=vault.credential,
                                      path=str(out / "ca")).ensure(),
        "https://127.0.0.1:{port}/keys/sshca-host-ca: cannot reach the vault ("),
    "a missing sign permission": (
        lambda vault, out: sign_into(out, vault_ca(vault, key_names=TEST_KEYS, kinds=("admin",)), "admin"),
        "{url}/keys/t-admin-ca: sign refused: 403 Forbidden/ForbiddenByRbac: Caller is not authorized to perform "
        "action on resource (Microsoft.KeyVault/vaults/keys/sign/action)"),
    "a key that cannot sign": (
        lambda vault, out: sign_into(out, vault_ca(vault, key_names={"user": "t-encryption"}, kinds=("user",))),
        "{url}/keys/t-encryption: is not a signing key: its key operations are encrypt, decrypt, without sign"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_vault_and_key(vault, test_cas, tmp_path, name):
    if not [key for key in vault.keys.list_properties_of_keys() if key.name == "t-encryption"]:
        vault.keys.create_rsa_key("t-encryption", size=2048, key_operations=["encrypt", "decrypt"])
    run, expected = BAD_INPUTS[name]
    out = tmp_path / "out"
    out.mkdir()
    vault.port = closed_port()
    keys_before = sorted(key.name for key in vault.keys.list_properties_of_keys())
    with pytest.raises(SSHKeyError) as caught:
        run(vault, out)
    message = str(caught.value)
    assert message.startswith(expected.format(url=vault.url, port=vault.port)), message
    assert "\n" not in message and len(message) < 400
    assert list(out.iterdir()) == []
    assert sorted(key.name for key in vault.keys.list_properties_of_keys()) == keys_before


# --- real sshd ----------------------------------------------------------------------------------------

SSHD_DROP_IN = """\
TrustedUserCAKeys /etc/ssh/sshca_user_ca.pub
HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub
"""


def tampered(cert_line: str) -> str:
    """The same certificate with the last byte of its signature flipped."""
    key_type, blob = cert_line.split()[:2]
    raw = base64.b64decode(blob)
    return f"{key_type} {base64.b64encode(raw[:-1] + bytes([raw[-1] ^ 0x01])).decode()}"


@pytest.mark.lab
def test_real_sshd_accepts_key_vault_certificates_and_refuses_a_tampered_signature(vault, lab_host_factory,
                                                                                   tmp_path):
    admin, login_key = make_keypair(tmp_path, "admin"), make_keypair(tmp_path, "login")
    host = lab_host_factory([admin.public_text])  # the login key is not authorized: only a certificate lets it in
    host_ca = vault_ca(vault, key_names={"host": "sshd-host-ca"}, kinds=("host",), key_type="ecdsa", key_size=256)
    rsa_ca = vault_ca(vault, key_names={"user": "sshd-user-rsa"}, kinds=("user",), key_type="rsa", key_size=3072)
    ec_ca = vault_ca(vault, key_names={"admin": "sshd-user-ec"}, kinds=("admin",), key_type="ecdsa", key_size=384)
    for ca in (host_ca, rsa_ca, ec_ca):
        ca.ensure()
    now = int(time.time())
    host_key = parse_public_key(host.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout, "host key")
    host_cert = host_ca.signer("host").sign_certificate(
        make_spec("host", host_key, [host.address], resolve_validity("host", now)))
    trusted = f"{rsa_ca.public_key('user').openssh()}\n{ec_ca.public_key('admin').openssh()}\n"
    for path, content in (("/etc/ssh/sshca_user_ca.pub", trusted),
                          ("/etc/ssh/ssh_host_ed25519_key-cert.pub", host_cert.openssh() + "\n"),
                          ("/etc/ssh/sshd_config.d/60-sshca.conf", SSHD_DROP_IN)):
        host.exec("sh", "-c", 'printf "%s" "$1" > "$2"', "put", content, path)
    host.exec("sshd", "-t")
    host.exec("systemctl", "restart", "ssh")
    hosts.wait_for_ssh(host.address)
    known_hosts = tmp_path / "known_hosts"  # the host CA alone vouches for the host: strict checking
    known_hosts.write_text(f"@cert-authority {host.address} {host_ca.public_key('host').openssh()}\n")
    subject = parse_public_key(login_key.public_text)

    def login(cert_line: str):
        path = tmp_path / f"cert-{time.monotonic_ns()}.pub"
        path.write_text(cert_line + "\n")
        return host.ssh(login_key.private, "id", "-un", options=["-o", f"CertificateFile={path}"],
                        known_hosts=str(known_hosts))

    certificates = {}
    for label, signer in (("RS512", rsa_ca.signer("user")),
                          ("RS256", vault_ca(vault, key_names={"user": "sshd-user-rsa"}, kinds=("user",),
                                             rsa_algorithm="rsa-sha2-256").signer("user")),
                          ("ES384", ec_ca.signer("admin"))):
        certificates[label] = signer.sign_certificate(
            make_spec("user", subject, ["azureuser"], resolve_validity("user", now))).openssh()
        accepted = login(certificates[label])
        assert accepted.returncode == 0 and accepted.stdout.strip() == "azureuser", (label, accepted.stderr)

    # OpenSSH's client checks a certificate's signature when it loads one and would never send a forged
    # one; paramiko sends the bytes as given, so sshd is the one that must refuse them.
    def paramiko_login(cert_line: str) -> str:
        key = paramiko.Ed25519Key.from_private_key_file(str(login_key.private))
        key.load_certificate(cert_line)
        with paramiko.SSHClient() as client:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # the host is not what is tested here
            client.connect(host.address, username="azureuser", pkey=key, look_for_keys=False, allow_agent=False,
                           timeout=30)
            _stdin, stdout, _stderr = client.exec_command("id -un")
            return stdout.read().decode().strip()

    assert paramiko_login(certificates["ES384"]) == "azureuser"  # the untouched certificate works this way too
    for label in ("RS512", "ES384"):
        with pytest.raises(paramiko.AuthenticationException):
            paramiko_login(tampered(certificates[label]))
    journal = host.exec("journalctl", "-u", "ssh", "--no-pager", "-o", "cat").stdout
    # sshd checks the CA signature as it parses the offered key: RSA fails in libcrypto, ECDSA as such.
    refusals = [line for line in journal.splitlines() if "userauth_pubkey: parse key: " in line]
    assert len(refusals) == 2 and "incorrect signature" in refusals[1], journal[-2000:]
    assert known_hosts.read_text().count("\n") == 1  # nothing learnt on first use: the host certificate did it


# --- enroll.yml with the CAs in Key Vault ----------------------------------------------------------


@pytest.mark.lab
def test_enroll_with_the_cas_in_key_vault_logs_in_with_no_ca_key_on_the_controller(vault, lab_host_factory,
                                                                                   tmp_path):
    from test_enroll_roles import fingerprint, host_keys, run_playbook, served_certificate, work_with_bootstrap
    work, bootstrap, bootstrap_public = work_with_bootstrap(tmp_path)
    host = lab_host_factory([bootstrap_public], hostname="kv-1")
    names = {kind: f"enroll-{kind}-ca" for kind in ("host", "user", "admin")}
    # Everything the vault needs is given as playbook inputs (the environment has it too, unused here).
    azure = {"auth_source": "credential", "tenant": os.environ["AZURE_TENANT_ID"], "client_id": vault.client_id,
             "secret": vault.secret, "authority_host": os.environ["AZURE_AUTHORITY_HOST"]}
    signs_before = len(sign_requests(vault))
    custody = {"sshca_work_dir": str(work), "sshca_ca_backend": "azure_keyvault", "sshca_vault_url": vault.url,
               "sshca_azure": azure, **{f"sshca_{kind}_ca_key": name for kind, name in names.items()}}
    run = run_playbook("enroll.yml", {
        **custody, "sshca_hosts": [{"name": "kv-1", "address": host.address, "host_keys": host_keys(host)}]},
        tmp_path, extra_args=("-vvv",))
    assert run.rc == 0, run.output[-4000:]
    assert run.summary()["kv-1"]["locked"] is True

    # The CAs are the vault's keys: their public keys are all the controller holds of them.
    ca = work / "ca"
    assert sorted(path.name for path in ca.iterdir()) == ["admin_ca.pub", "host_ca.pub", "issued.jsonl", "user_ca.pub"]
    for kind, name in names.items():
        in_vault = vault_ca(vault, key_names={kind: name}, kinds=(kind,)).public_key(kind).openssh()
        assert (ca / f"{kind}_ca.pub").read_text().split()[:2] == in_vault.split()[:2]
    assert not [path for path in work.rglob("*") if path.is_file() and b"PRIVATE KEY" in path.read_bytes()
                and path.parent.name not in ("bootstrap", "admin")]
    # Key Vault made every signature: the host certificates and the admin certificate.
    assert len(sign_requests(vault)) - signs_before == len(host_keys(host)) + 1
    assert f"Signing CA: ECDSA {fingerprint(ca / 'host_ca.pub')}" in served_certificate(host.address)

    # The admin certificate (from the admin CA in the vault) logs in; the host is checked strictly
    # against the vault's host CA, and the bootstrap key is locked out.
    admin = work / "admin" / "id_ed25519"
    assert f"Signing CA: ECDSA {fingerprint(ca / 'admin_ca.pub')}" in subprocess.run(
        ["ssh-keygen", "-L", "-f", f"{admin}-cert.pub"], capture_output=True, text=True, check=True).stdout
    login = host.ssh(admin, "sudo", "-n", "id", "-un", known_hosts=str(work / "known_hosts"),
                     options=["-o", f"CertificateFile={admin}-cert.pub"])
    assert login.returncode == 0 and login.stdout.strip() == "root", login.stderr
    assert host.ssh(bootstrap, "true").returncode != 0

    # Renewal signs through the same vault keys, and the host then serves the new certificate.
    signs_before = len(sign_requests(vault))
    renew = run_playbook("renew.yml", {**custody, "sshca_renew_force": True}, tmp_path, extra_args=("-vvv",))
    assert renew.rc == 0, renew.output[-4000:]
    assert len(sign_requests(vault)) - signs_before == len(host_keys(host))
    assert f"Signing CA: ECDSA {fingerprint(ca / 'host_ca.pub')}" in served_certificate(host.address)
    assert host.ssh(admin, "true", known_hosts=str(work / "known_hosts"),
                    options=["-o", f"CertificateFile={admin}-cert.pub"]).returncode == 0

    # Nothing of the CAs, nor the Azure secret, in -vvv output.
    output = run.output + renew.output
    assert "<localhost> EXEC" in output
    assert not [secret for secret in [*emulator_secrets(vault), vault.secret] if secret in output]
