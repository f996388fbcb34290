"""The CA signer interface and the file backend: one custody per CA, creation under a lock."""

# ruff: noqa: S106 - the passphrases here are test fixtures, not secrets

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import subprocess
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._ca_keyvault import IdentityRecorder, KeyVaultCA
from ansible_collections.sshca.azure.plugins.module_utils._ca_signers import (
    CABackend,
    CASigner,
    FileCA,
    KeySigner,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import (
    assemble_certificate,
    certificate_task,
    certificate_tbs,
    make_spec,
    read_certificate,
    resolve_validity,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (
    SSHKeyError,
    parse_public_key,
    public_key_of,
)
from azure.core.credentials import AccessToken
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    SSHCertificateBuilder,
    SSHCertificateType,
    load_ssh_public_identity,
)

from conftest import make_keypair

NOW = 1_800_000_000


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


PASSPHRASES = {"host": "host custody", "user": "user custody", "admin": "admin custody"}


def opens_with(private: Path, passphrase: str) -> bool:
    """Whether real OpenSSH opens the key file with this passphrase."""
    return subprocess.run(["ssh-keygen", "-y", "-P", passphrase, "-f", str(private)], capture_output=True,
                          check=False).returncode == 0


def test_three_cas_each_encrypted_with_its_own_passphrase(tmp_path):
    folder = tmp_path / "ca"
    store = FileCA(str(folder), passphrases=PASSPHRASES)
    assert store.ensure()
    assert mode(folder) == 0o700
    for kind, passphrase in PASSPHRASES.items():
        private = folder / f"{kind}_ca"
        assert mode(private) == 0o600
        assert private.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        derived = subprocess.run(["ssh-keygen", "-y", "-P", passphrase, "-f", str(private)],
                                 check=True, capture_output=True, text=True).stdout.split()
        assert derived[:2] == (folder / f"{kind}_ca.pub").read_text().split()[:2]
        assert derived[0] == "ssh-ed25519"
        # the next CA's passphrase does not open it (an unencrypted key would open with any)
        other = list(PASSPHRASES.values())[(list(PASSPHRASES).index(kind) + 1) % 3]
        assert not opens_with(private, other)
    assert len({store.public_key(kind) for kind in PASSPHRASES}) == 3
    assert sorted(p.name for p in folder.iterdir()) == [
        "admin_ca", "admin_ca.pub", "host_ca", "host_ca.pub", "user_ca", "user_ca.pub"]
    assert FileCA(str(folder), passphrases=PASSPHRASES).plan() == []


def test_the_user_ca_signs_with_its_own_passphrase_alone(tmp_path):
    FileCA(str(tmp_path / "ca"), passphrases=PASSPHRASES).ensure()
    user_only = FileCA(str(tmp_path / "ca"), passphrases={"user": PASSPHRASES["user"]}, kinds=("user",))
    subject = parse_public_key(make_keypair(tmp_path, "alice").public_text)
    cert = user_only.signer("user").sign_certificate(make_spec("user", subject, ["alice"],
                                                               resolve_validity("user", NOW)))
    assert cert.signing_ca == user_only.public_key("user")
    # the others' public keys are there to trust, their private keys stay shut
    assert user_only.public_key("host") == FileCA(str(tmp_path / "ca"), passphrases=PASSPHRASES).public_key("host")
    with pytest.raises(SSHKeyError, match=r"^host_ca_passphrase: the host CA is encrypted at rest.*"
                                          r"SSHCA_HOST_CA_PASSPHRASE"):
        user_only.signer("host")
    with pytest.raises(SSHKeyError, match="admin_ca: cannot be decrypted: wrong passphrase"):
        FileCA(str(tmp_path / "ca"), passphrases={"admin": PASSPHRASES["user"]}, kinds=("admin",)).signer("admin")


def test_one_shared_passphrase_still_opens_a_work_folder_of_earlier_releases(tmp_path):
    folder = tmp_path / "ca"
    FileCA(str(folder), passphrase="shared", kinds=("host", "user")).ensure()  # what earlier releases made
    upgraded = FileCA(str(folder), passphrase="shared")
    assert upgraded.plan() == [f"create admin CA key {folder / 'admin_ca'} (ed25519)"]
    upgraded.ensure()
    assert all(opens_with(folder / f"{kind}_ca", "shared") for kind in PASSPHRASES)
    # a CA's own passphrase wins over the shared one
    assert FileCA(str(folder), passphrase="wrong", passphrases={"user": "shared"}, kinds=("user",)).signer("user")


def _first_run(folder: str, barrier, results) -> None:
    barrier.wait()
    store = FileCA(folder, passphrase="parallel", kinds=("host",))
    changes = store.ensure()
    results.put((changes, store.signer("host").public_key.openssh()))


def test_parallel_first_runs_on_an_empty_folder_make_one_ca(tmp_path):
    folder = tmp_path / "ca"
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(4), context.Queue()
    runs = [context.Process(target=_first_run, args=(str(folder), barrier, results)) for _run in range(4)]
    for run in runs:
        run.start()
    reports = [results.get(timeout=60) for _run in runs]
    for run in runs:
        run.join(timeout=60)
        assert run.exitcode == 0
    on_disk = (folder / "host_ca.pub").read_text().strip()
    assert all(key == on_disk for _changes, key in reports), "a run signs with a CA that is not on disk"
    assert sum(1 for changes, _keys in reports if changes) == 1, "more than one run made the CA"


def test_loose_folder_mode_is_fixed(tmp_path):
    store = FileCA(str(tmp_path / "ca"), allow_unencrypted=True)
    store.ensure()
    os.chmod(tmp_path / "ca", 0o755)  # noqa: S103 - the loose mode the CA must repair
    assert FileCA(str(tmp_path / "ca"), allow_unencrypted=True).ensure() == [f"set mode 0700 on {tmp_path / 'ca'}"]
    assert mode(tmp_path / "ca") == 0o700


@pytest.mark.parametrize(("key_type", "openssh_type"), [("rsa", "ssh-rsa"), ("ecdsa", "ecdsa-sha2-nistp384")])
def test_other_ca_key_types(tmp_path, key_type, openssh_type):
    store = FileCA(str(tmp_path / "ca"), passphrase="p", key_type=key_type, kinds=("user",))
    store.ensure()
    assert store.public_key("user").key_type == openssh_type
    with pytest.raises(SSHKeyError, match=f"is a {key_type} key, not ed25519"):
        FileCA(str(tmp_path / "ca"), passphrase="p", key_type="ed25519", kinds=("user",)).plan()


def test_unencrypted_ca_needs_an_explicit_opt_in(tmp_path):
    with pytest.raises(SSHKeyError, match="allow_unencrypted"):
        FileCA(str(tmp_path / "ca"))
    with pytest.raises(SSHKeyError, match=r"^admin_ca_passphrase: "):
        FileCA(str(tmp_path / "ca"), passphrases={"host": "h", "user": "u"})
    FileCA(str(tmp_path / "ca"), allow_unencrypted=True).ensure()
    assert b"ENCRYPTED" not in (tmp_path / "ca" / "user_ca").read_bytes()
    with pytest.raises(SSHKeyError, match="is not encrypted, but a passphrase was given"):
        FileCA(str(tmp_path / "ca"), passphrase="p", allow_unencrypted=True).plan()
    with pytest.raises(SSHKeyError, match="not encrypted; set allow_unencrypted"):
        FileCA(str(tmp_path / "ca"), passphrase="p").plan()


def test_wrong_passphrase_names_the_key_file(tmp_path):
    FileCA(str(tmp_path / "ca"), passphrase="right", kinds=("user",)).ensure()
    with pytest.raises(SSHKeyError) as caught:
        FileCA(str(tmp_path / "ca"), passphrase="wrong").signer("user")
    assert str(caught.value) == f"{tmp_path / 'ca' / 'user_ca'}: cannot be decrypted: wrong passphrase"


def test_writes_leave_no_temporary_files(tmp_path):
    FileCA(str(tmp_path / "ca"), allow_unencrypted=True).ensure()
    assert not [p for p in (tmp_path / "ca").iterdir() if p.name.startswith(".")]  # the lock is on the folder


@pytest.mark.parametrize(("key_type", "size", "expected"), [
    ("rsa", 2048, "key_size: rsa CA keys take 3072 or 4096 bits, not 2048"),
    ("ed25519", 256, "key_size: ed25519 CA keys take no key_size, not 256"),
])
def test_key_size_must_suit_the_type(tmp_path, key_type, size, expected):
    with pytest.raises(SSHKeyError) as caught:
        FileCA(str(tmp_path / "ca"), passphrase="p", key_type=key_type, key_size=size)
    assert str(caught.value) == expected
    assert not (tmp_path / "ca").exists()


# --- the certificate blob writer, for remote signers ------------------------------------------


def builder_certificate(private_key, spec):
    """The same fields signed by cryptography's own SSHCertificateBuilder (random nonce)."""
    builder = (SSHCertificateBuilder().public_key(spec.public_key.to_cryptography()).serial(spec.serial)
               .type(SSHCertificateType.USER if spec.cert_type == "user" else SSHCertificateType.HOST)
               .key_id(spec.key_id.encode()).valid_principals([p.encode() for p in spec.principals])
               .valid_after(spec.valid_after).valid_before(spec.valid_before))
    for name, value in spec.critical_options:
        builder = builder.add_critical_option(name.encode(), value.encode())
    for name in spec.extensions:
        builder = builder.add_extension(name.encode(), b"")
    return builder.sign(private_key)


@pytest.mark.parametrize("cert_type", ["user", "host"])
@pytest.mark.parametrize("ca_kind", ["ed25519", "rsa"])  # deterministic signatures: Ed25519, RSA PKCS#1 v1.5
def test_blob_writer_matches_cryptography_byte_for_byte(tmp_path, cert_type, ca_kind):
    ca_key = ed25519.Ed25519PrivateKey.generate() if ca_kind == "ed25519" else rsa.generate_private_key(65537, 3072)
    subject = parse_public_key(make_keypair(tmp_path, "subject", "ecdsa").public_text)
    options = {"critical_options": {"source-address": "10.1.0.0/16", "force-command": "uptime"}} \
        if cert_type == "user" else {}
    spec = make_spec(cert_type, subject, ["p1", "p2"], resolve_validity(cert_type, NOW), serial=2 ** 63 + 5,
                     key_id="kid", **options)
    reference = builder_certificate(ca_key, spec)
    signer = KeySigner(ca_key)
    tbs = certificate_tbs(spec, signer.public_key, reference.nonce)
    ours = assemble_certificate(tbs, signer.sign_data(tbs))
    assert ours == base64.b64decode(reference.public_bytes().split()[1])
    cert_file = tmp_path / "subject-cert.pub"
    cert_file.write_text(f"{subject.key_type}-cert-v01@openssh.com {base64.b64encode(ours).decode()}\n")
    listing = subprocess.run(["ssh-keygen", "-L", "-f", str(cert_file)], check=True, capture_output=True,
                             text=True).stdout
    assert f"Serial: {2 ** 63 + 5}" in listing and signer.public_key.fingerprint() in listing


def test_rsa_ca_signs_rsa_sha2_256_when_asked(tmp_path):
    signer = KeySigner(rsa.generate_private_key(65537, 3072), rsa_algorithm="rsa-sha2-256")
    subject = parse_public_key(make_keypair(tmp_path, "s").public_text)
    cert_file = tmp_path / "s-cert.pub"
    cert_file.write_text(signer.sign_certificate(make_spec("user", subject, ["a"], resolve_validity("user", NOW)))
                         .openssh() + "\n")
    listing = subprocess.run(["ssh-keygen", "-L", "-f", str(cert_file)], check=True, capture_output=True,
                             text=True).stdout
    assert "(using rsa-sha2-256)" in listing
    read_certificate(cert_file.read_text())  # and the signature verifies


class RemoteSigner(CASigner):
    """Stands in for a Key Vault signer: it only knows its public key and a sign(bytes) call."""

    def __init__(self, remote_key):
        self.calls = []
        self._remote = remote_key
        self._public = public_key_of(remote_key)

    @property
    def public_key(self):
        return self._public

    def sign_data(self, data):
        self.calls.append(data)
        return KeySigner(self._remote).sign_data(data)  # what the remote service would return, wrapped


def test_a_signer_that_only_signs_bytes_makes_valid_certificates(tmp_path):
    signer = RemoteSigner(ed25519.Ed25519PrivateKey.generate())
    subject = parse_public_key(make_keypair(tmp_path, "s").public_text)
    cert = signer.sign_certificate(make_spec("user", subject, ["alice"], resolve_validity("user", NOW)))
    assert len(signer.calls) == 1
    assert read_certificate(cert.openssh()) == cert
    nonce = load_ssh_public_identity(cert.openssh().encode()).nonce
    assert len(nonce) == 32 and signer.calls[0].startswith(b"\x00\x00\x00\x20ssh-ed25519-cert-v01@openssh.com")


class RemoteCA(CABackend):
    """Stands in for the Key Vault backend: the CA's public key comes without a sign, signing is remote."""

    name = "remote"

    def __init__(self, signer):
        self.remote = signer

    def plan(self):
        return []

    def ensure(self):
        return []

    def signer(self, kind):
        return self.remote

    def public_key(self, kind):
        return self.remote.public_key


def test_several_certificates_cost_one_remote_sign_each_and_none_when_kept(tmp_path):
    ca = RemoteCA(RemoteSigner(ec.generate_private_key(ec.SECP256R1())))  # Key Vault has EC keys, no Ed25519
    keys = [make_keypair(tmp_path, f"k{n}", kind).public_text for n, kind in enumerate(("ed25519", "ecdsa"))]
    params = {"type": "user", "principals": ["deploy"], "certificates": [
        {"public_key": key, "path": str(tmp_path / f"k{n}-cert.pub")} for n, key in enumerate(keys)]}
    signed = certificate_task(params, ca, False, now=NOW)["certificates"]
    assert len(ca.remote.calls) == 2
    for entry, key in zip(signed, keys, strict=True):
        cert = read_certificate(Path(entry["path"]).read_text())  # the remote signature verifies
        assert cert.signing_ca == ca.remote.public_key and cert.public_key == parse_public_key(key)
    assert not certificate_task(params, ca, False, now=NOW + 60)["changed"]
    assert len(ca.remote.calls) == 2


class FakeCredential:
    def __init__(self, claims):
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        self.token = f"e30.{payload}.c2ln"

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, 0)


@pytest.mark.parametrize(("claims", "identity"), [
    ({"upn": "alice@contoso.example", "appid": "04b07795"}, "alice@contoso.example"),  # a person, via the CLI app
    ({"appid": "5323f9a7", "oid": "faf80fe8"}, "app:5323f9a7"),  # a service principal, v1 token
    ({"azp": "bb2a64ee"}, "app:bb2a64ee"),  # v2 token
    ({"oid": "faf80fe8", "tid": "72f988bf"}, "oid:faf80fe8"),  # neither UPN nor app id
    ({}, None),
])
def test_the_signing_identity_comes_from_the_vault_token(claims, identity):
    recorder = IdentityRecorder(FakeCredential(claims))
    assert recorder.get_token("https://vault.azure.net/.default").token.count(".") == 2
    assert recorder.identity() == identity


VAULT = "https://sshca-test.vault.azure.net"


@pytest.mark.parametrize("record, given, names", [
    (None, {}, {"host": "sshca-host-ca", "user": "sshca-user-ca", "admin": "sshca-admin-ca"}),
    (None, {"user": "mine"}, {"host": "sshca-host-ca", "user": "mine", "admin": "sshca-admin-ca"}),
    ({"host": "h-2", "user": "u-2", "admin": "a-2"}, {}, {"host": "h-2", "user": "u-2", "admin": "a-2"}),
    ({"host": "h-2", "user": "u-2", "admin": "a-2"}, {"user": "u-2"}, {"host": "h-2", "user": "u-2", "admin": "a-2"}),
])
def test_key_vault_ca_names_follow_the_rotation_record_in_the_ca_folder(tmp_path, record, given, names):
    if record is not None:
        (tmp_path / "keyvault_keys.json").write_text(json.dumps(record))
    assert KeyVaultCA(VAULT, key_names=given, path=str(tmp_path)).key_names == names


@pytest.mark.parametrize("record, message", [
    ('{"user": "u-2"}', "user_ca_key: 'sshca-user-ca' disagrees with {folder}/keyvault_keys.json, which names the "
                        "user CA key 'u-2' since rotate_ca.yml made it: give that name, or none"),
    ("[1]", '{folder}/keyvault_keys.json: is not a JSON object of key names ({{"user": "sshca-user-ca-2", ...}})'),
])
def test_a_key_name_against_the_rotation_record_fails_in_one_line(tmp_path, record, message):
    (tmp_path / "keyvault_keys.json").write_text(record)
    with pytest.raises(SSHKeyError) as failure:
        KeyVaultCA(VAULT, key_names={"user": "sshca-user-ca"}, path=str(tmp_path))
    assert str(failure.value) == message.format(folder=tmp_path)
