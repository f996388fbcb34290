"""The CA signer interface and the file backend."""

# ruff: noqa: S106 - the passphrases here are test fixtures, not secrets

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._ca_signers import (
    CASigner,
    FileCA,
    KeySigner,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import (
    assemble_certificate,
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
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    SSHCertificateBuilder,
    SSHCertificateType,
    load_ssh_public_identity,
)

from conftest import make_keypair

NOW = 1_800_000_000


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_file_ca_layout_modes_and_encryption(tmp_path):
    folder = tmp_path / "ca"
    store = FileCA(str(folder), passphrase="correct horse")
    assert store.ensure()
    assert mode(folder) == 0o700
    for kind in ("host", "user"):
        private = folder / f"{kind}_ca"
        assert mode(private) == 0o600
        assert private.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        # real OpenSSH opens it with the passphrase, and only with it
        derived = subprocess.run(["ssh-keygen", "-y", "-P", "correct horse", "-f", str(private)],
                                 check=True, capture_output=True, text=True).stdout.split()
        assert derived[:2] == (folder / f"{kind}_ca.pub").read_text().split()[:2]
        assert subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(private)], capture_output=True,
                              check=False).returncode != 0
        assert derived[0] == "ssh-ed25519"
    assert store.public_key("host") != store.public_key("user")
    assert sorted(p.name for p in folder.iterdir()) == ["host_ca", "host_ca.pub", "user_ca", "user_ca.pub"]
    assert FileCA(str(folder), passphrase="correct horse").plan() == []


def test_loose_folder_mode_is_fixed(tmp_path):
    store = FileCA(str(tmp_path / "ca"), allow_unencrypted=True)
    store.ensure()
    os.chmod(tmp_path / "ca", 0o755)  # noqa: S103 - the loose mode the CA must repair
    assert FileCA(str(tmp_path / "ca"), allow_unencrypted=True).ensure() == [f"set mode 0700 on {tmp_path / 'ca'}"]
    assert mode(tmp_path / "ca") == 0o700


@pytest.mark.parametrize(("key_type", "openssh_type"), [("rsa", "ssh-rsa"), ("ecdsa", "ecdsa-sha2-nistp384")])
def test_other_ca_key_types(tmp_path, key_type, openssh_type):
    store = FileCA(str(tmp_path / "ca"), passphrase="p", key_type=key_type)
    store.ensure()
    assert store.public_key("user").key_type == openssh_type
    with pytest.raises(SSHKeyError, match=f"is a {key_type} key, not ed25519"):
        FileCA(str(tmp_path / "ca"), passphrase="p", key_type="ed25519").plan()


def test_unencrypted_ca_needs_an_explicit_opt_in(tmp_path):
    with pytest.raises(SSHKeyError, match="allow_unencrypted"):
        FileCA(str(tmp_path / "ca"))
    FileCA(str(tmp_path / "ca"), allow_unencrypted=True).ensure()
    assert b"ENCRYPTED" not in (tmp_path / "ca" / "user_ca").read_bytes()
    with pytest.raises(SSHKeyError, match="is not encrypted, but a passphrase was given"):
        FileCA(str(tmp_path / "ca"), passphrase="p", allow_unencrypted=True).plan()
    with pytest.raises(SSHKeyError, match="not encrypted; set allow_unencrypted"):
        FileCA(str(tmp_path / "ca"), passphrase="p").plan()


def test_wrong_passphrase_names_the_key_file(tmp_path):
    FileCA(str(tmp_path / "ca"), passphrase="right").ensure()
    with pytest.raises(SSHKeyError) as caught:
        FileCA(str(tmp_path / "ca"), passphrase="wrong").signer("user")
    assert str(caught.value) == f"{tmp_path / 'ca' / 'user_ca'}: cannot be decrypted: wrong passphrase"


def test_writes_leave_no_temporary_files(tmp_path):
    FileCA(str(tmp_path / "ca"), allow_unencrypted=True).ensure()
    assert not [p for p in (tmp_path / "ca").iterdir() if p.name.startswith(".")]


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
