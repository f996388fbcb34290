"""OpenSSH public keys and RFC 4716 files, judged against ssh-keygen."""

# ruff: noqa: S106 - the passphrases here are test fixtures, not secrets

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (
    KeyAction,
    KeypairFiles,
    PassphraseNeeded,
    PassphraseNotNeeded,
    SSHKeyError,
    UnreadableKey,
    WrongPassphrase,
    load_private_key,
    parse_openssh_public_key,
    parse_public_key,
    parse_rfc4716,
    parse_rfc4716_headers,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import make_keypair

# ssh-keygen -t / -b for every key type we support
KEY_KINDS = {
    "rsa": ("rsa", "3072"),
    "ed25519": ("ed25519", None),
    "ecdsa256": ("ecdsa", "256"),
    "ecdsa384": ("ecdsa", "384"),
    "ecdsa521": ("ecdsa", "521"),
}


def ssh_keygen(*args: str, input: str | None = None) -> str:
    return subprocess.run(["ssh-keygen", *args], check=True, capture_output=True, text=True, input=input).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """One ssh-keygen public key file per supported type."""
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name, (key_type, bits) in KEY_KINDS.items():
        private = folder / name
        args = ["-q", "-t", key_type, "-N", "", "-C", f"{name}@test", "-f", str(private)]
        if bits:
            args += ["-b", bits]
        ssh_keygen(*args)
        made[name] = private.with_suffix(".pub")
    return made


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_fingerprint_is_what_ssh_keygen_prints(keys, kind):
    key = parse_public_key(keys[kind].read_text(), str(keys[kind]))
    printed = ssh_keygen("-l", "-f", str(keys[kind])).split()
    assert key.fingerprint() == printed[1]
    assert key.bits == int(printed[0])


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_openssh_line_round_trips(keys, kind):
    line = keys[kind].read_text().strip()
    key = parse_openssh_public_key(line, "key")
    assert key.openssh() == line
    assert key.comment == f"{kind}@test"


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_ssh_keygen_reads_our_rfc4716_as_the_same_key(keys, kind, tmp_path):
    key = parse_public_key(keys[kind].read_text())
    long_comment = "a comment: long enough to fold " * 5 + "--------- dashes and ü"
    text = key.rfc4716(comment=long_comment, headers={"Subject": "azureuser", "x-note": "n: " * 60})
    assert all(len(line.encode()) <= 72 for line in text.split("\n"))
    assert text.endswith("\n") and "\r" not in text
    out = tmp_path / "key.rfc"
    out.write_text(text)
    converted = ssh_keygen("-i", "-m", "RFC4716", "-f", str(out)).split()
    assert converted[:2] == keys[kind].read_text().split()[:2]


@pytest.mark.parametrize("kind", KEY_KINDS)
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_we_read_what_ssh_keygen_exports(keys, kind, newline):
    exported = ssh_keygen("-e", "-m", "RFC4716", "-f", str(keys[kind]))
    key = parse_rfc4716(exported.replace("\n", newline), "exported")
    assert key.openssh_no_comment() == " ".join(keys[kind].read_text().split()[:2])
    assert key.comment.startswith(key.bits.__str__() + "-bit")  # ssh-keygen writes "<bits>-bit <TYPE>, converted ..."


def test_headers_are_case_insensitive_continued_and_unknown_ones_ignored(keys):
    body = ssh_keygen("-e", "-m", "RFC4716", "-f", str(keys["ed25519"])).splitlines()[2]
    text = (
        "---- BEGIN SSH2 PUBLIC KEY ----\n"
        "sUbJeCt: me\n"
        "x-Private-Tag: first part \\\n"
        "second part\n"
        "Unknown-Tag: whatever\n"
        'COMMENT: "quoted comment"\n'
        f"{body}\n"
        "---- END SSH2 PUBLIC KEY ----\n"
    )
    key = parse_rfc4716(text)
    headers = parse_rfc4716_headers(text)
    assert key.comment == "quoted comment"
    assert headers["subject"] == "me"
    assert headers["x-private-tag"] == "first part second part"
    assert key.openssh_no_comment() == " ".join(keys["ed25519"].read_text().split()[:2])


def test_unquoted_comment_is_taken_as_it_is(keys):
    key = parse_public_key(keys["rsa"].read_text())
    text = key.rfc4716().replace('"rsa@test"', "rsa@test")
    assert parse_rfc4716(text).comment == "rsa@test"


def test_parse_public_key_takes_either_form(keys):
    line = keys["ecdsa384"].read_text()
    from_line = parse_public_key(line)
    assert parse_public_key(from_line.rfc4716()) == from_line
    assert parse_public_key(line.encode()) == from_line


def test_putty_style_file_is_read(keys):
    """PuTTYgen writes 64-character lines and an unquoted Comment; RFC 4716 allows both."""
    key = parse_public_key(keys["rsa"].read_text())
    import base64
    body = base64.b64encode(key.blob).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    text = "\r\n".join(["---- BEGIN SSH2 PUBLIC KEY ----", "Comment: rsa-key-20260101", *lines,
                        "---- END SSH2 PUBLIC KEY ----"]) + "\r\n"
    parsed = parse_rfc4716(text)
    assert parsed == key and parsed.comment == "rsa-key-20260101"


# --- property-based round trips -------------------------------------------------------------

_printable = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029\x85")
_comment = st.text(_printable, max_size=120).filter(lambda c: "-" * 60 not in c)
_value = st.text(_printable, min_size=0, max_size=150).filter(
    lambda v: not v.startswith(" ") and not v.endswith("\\") and "-" * 60 not in v)
_tag = st.from_regex(r"x-[A-Za-z0-9-]{1,20}", fullmatch=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(KEY_KINDS)), comment=_comment,
       headers=st.dictionaries(_tag, _value, max_size=3), newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_rfc4716_round_trip_property(keys, kind, comment, headers, newline):
    assume(len({t.lower() for t in headers}) == len(headers))
    key = parse_public_key(keys[kind].read_text())
    text = key.rfc4716(comment=comment, headers=headers)
    assert all(len(line.encode()) <= 72 for line in text.split("\n"))
    wire = text.replace("\n", newline)
    back = parse_rfc4716(wire, "generated")
    assert back == key
    assert back.comment == comment
    read_headers = parse_rfc4716_headers(wire, "generated")
    for tag, value in headers.items():
        assert read_headers[tag.lower()] == value


# --- keypair files ----------------------------------------------------------------------------


def test_keypair_files_are_readable_by_ssh_keygen(tmp_path):
    pair = KeypairFiles(str(tmp_path / "boot"), "rsa", 3072, "boot@test")
    plan = pair.plan()
    assert plan["key"] is KeyAction.CREATE
    public = pair.apply(plan)
    assert (tmp_path / "boot").stat().st_mode & 0o777 == 0o600
    derived = ssh_keygen("-y", "-f", str(tmp_path / "boot")).split()
    assert derived[:2] == public.openssh().split()[:2]
    assert (tmp_path / "boot.pub").read_text() == public.openssh() + "\n"
    converted = ssh_keygen("-i", "-m", "RFC4716", "-f", str(tmp_path / "boot.rfc4716.pub")).split()
    assert converted[:2] == derived[:2]
    assert public.bits == 3072
    assert KeypairFiles(str(tmp_path / "boot"), "rsa", 3072, "boot@test").plan()["key"] is KeyAction.KEEP


def test_passphrase_protects_the_keypair(tmp_path):
    pair = KeypairFiles(str(tmp_path / "k"), "ed25519", passphrase="s3cret")
    pair.apply(pair.plan())
    assert subprocess.run(["ssh-keygen", "-y", "-P", "wrong", "-f", str(tmp_path / "k")],
                          capture_output=True, check=False).returncode != 0
    ssh_keygen("-y", "-P", "s3cret", "-f", str(tmp_path / "k"))
    with pytest.raises(SSHKeyError, match="wrong passphrase"):
        KeypairFiles(str(tmp_path / "k"), "ed25519", passphrase="typo").plan()


def test_unencrypted_key_gets_encrypted_without_being_replaced(tmp_path):
    pair = make_keypair(tmp_path, "plain")
    files = KeypairFiles(str(pair.private), "ed25519", passphrase="now-secret")
    plan = files.plan()
    assert plan["key"] is KeyAction.ENCRYPT
    public = files.apply(plan)
    assert public.openssh_no_comment() == " ".join(pair.public_text.split()[:2])
    ssh_keygen("-y", "-P", "now-secret", "-f", str(pair.private))


@pytest.mark.parametrize(("policy", "expected"), [
    ("never", KeyAction.KEEP), ("partial_idempotence", KeyAction.REGENERATE),
    ("full_idempotence", KeyAction.REGENERATE), ("always", KeyAction.REGENERATE),
])
def test_type_change_follows_the_regenerate_policy(tmp_path, policy, expected):
    pair = make_keypair(tmp_path, "k")
    assert KeypairFiles(str(pair.private), "rsa", regenerate=policy).plan()["key"] is expected


def test_type_change_with_fail_policy_fails(tmp_path):
    pair = make_keypair(tmp_path, "k")
    with pytest.raises(SSHKeyError, match="type is ed25519, not rsa"):
        KeypairFiles(str(pair.private), "rsa", regenerate="fail").plan()


def test_unreadable_key_is_replaced_only_under_full_idempotence(tmp_path):
    path = tmp_path / "k"
    path.write_text("not a key\n")
    with pytest.raises(SSHKeyError, match="not a readable private key"):
        KeypairFiles(str(path), "ed25519").plan()
    assert KeypairFiles(str(path), "ed25519", regenerate="full_idempotence").plan()["key"] is KeyAction.REGENERATE


# Every private-key format users hand us, each as ssh-keygen writes it: the problem with a
# passphrase is told by the key's format (an error type), whatever cryptography's messages say.
KEY_FORMATS = {"openssh": ("ed25519", "RFC4716"), "pkcs8": ("rsa", "PKCS8"), "traditional-pem": ("rsa", "PEM")}
FAST = ("-b", "2048", "-a", "2")  # small RSA keys and few bcrypt rounds: the format is what is tested


@pytest.fixture(scope="module")
def private_keys(tmp_path_factory) -> dict[tuple[str, bool], bytes]:
    folder = tmp_path_factory.mktemp("private")
    made = {}
    for name, (key_type, key_format) in KEY_FORMATS.items():
        for encrypted in (True, False):
            path = folder / f"{name}-{encrypted}"
            ssh_keygen("-q", "-t", key_type, *FAST, "-m", key_format, "-N", "right-pass" if encrypted else "",
                       "-f", str(path))
            made[(name, encrypted)] = path.read_bytes()
    return made


@pytest.mark.parametrize("key_format", KEY_FORMATS)
@pytest.mark.parametrize(("encrypted", "passphrase", "outcome"), [
    (True, "right-pass", None), (True, None, PassphraseNeeded), (True, "wrong-pass", WrongPassphrase),
    (False, None, None), (False, "right-pass", PassphraseNotNeeded),
])
def test_private_key_problems_are_typed(private_keys, key_format, encrypted, passphrase, outcome):
    data = private_keys[(key_format, encrypted)]
    if outcome is None:
        assert load_private_key(data, passphrase, "k").public_key() is not None
        return
    with pytest.raises(outcome) as err:
        load_private_key(data, passphrase, "the-key")
    assert str(err.value).startswith("the-key: ") and "\n" not in str(err.value)
    assert b"PRIVATE" not in str(err.value).encode()


@pytest.mark.parametrize("data", [b"not a key", b"-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n", b""])
def test_garbage_is_unreadable_with_or_without_a_passphrase(data):
    for passphrase in (None, "p4ssword"):
        with pytest.raises(UnreadableKey, match=r"^k: is not a readable private key$"):
            load_private_key(data, passphrase, "k")
