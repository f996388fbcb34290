"""Certificates: our output judged by ssh-keygen -L, ssh-keygen -s output read by us, re-sign rules."""

# ruff: noqa: S106 - the passphrases here are test fixtures, not secrets

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sshca.azure.plugins.module_utils import _ca_signers
from ansible_collections.sshca.azure.plugins.module_utils._ca_signers import FileCA, IssuanceLog
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import (
    CLOCK_SKEW_SECONDS,
    CertificateError,
    certificate_task,
    decide,
    make_spec,
    parse_duration,
    parse_time,
    read_certificate,
    resolve_validity,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import SSHKeyError, parse_public_key
from ansible_collections.sshca.azure.plugins.modules import ssh_cert

from conftest import make_keypair

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z


def keygen_list(cert_path: Path) -> str:
    return subprocess.run(["ssh-keygen", "-L", "-f", str(cert_path)], check=True, capture_output=True,
                          text=True).stdout


def keygen_time(epoch: int) -> str:
    """ssh-keygen -L prints validity in local time; the tests run with TZ=UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture(scope="module", params=["ed25519", "rsa", "ecdsa"])
def ca(request, tmp_path_factory) -> FileCA:
    store = FileCA(str(tmp_path_factory.mktemp("ca") / "ca"), passphrase="ca-pass", key_type=request.param,
                   kinds=("host", "user"))  # the admin CA adds nothing here but an RSA key to make
    store.ensure()
    return store


@pytest.mark.parametrize("subject_type", ["ed25519", "rsa", "ecdsa"])
def test_ssh_keygen_shows_our_user_certificate_fields(ca, tmp_path, subject_type):
    pair = make_keypair(tmp_path, "subject", subject_type)
    key = parse_public_key(pair.public_text)
    validity = resolve_validity("user", NOW, valid_for="16h")
    spec = make_spec("user", key, ["alice", "deploy"], validity, serial=4242, key_id="alice@example",
                     critical_options={"force-command": "/usr/bin/id", "source-address": ["10.0.0.0/8", "127.0.0.1"]})
    cert = ca.signer("user").sign_certificate(spec)
    out = tmp_path / "subject-cert.pub"
    out.write_text(cert.openssh() + "\n")
    listing = keygen_list(out)
    assert "user certificate" in listing
    assert ca.public_key("user").fingerprint() in listing
    assert key.fingerprint() in listing
    assert 'Key ID: "alice@example"' in listing
    assert "Serial: 4242" in listing
    assert f"Valid: from {keygen_time(NOW - CLOCK_SKEW_SECONDS)} to {keygen_time(NOW + 16 * 3600)}" in listing
    assert re.search(r"Principals: \n\s+alice\n\s+deploy\n", listing)
    assert "force-command /usr/bin/id" in listing
    assert "source-address 10.0.0.0/8,127.0.0.1" in listing
    for extension in ("permit-agent-forwarding", "permit-port-forwarding", "permit-pty", "permit-user-rc"):
        assert extension in listing
    assert "permit-X11-forwarding" not in listing


def test_ssh_keygen_shows_our_host_certificate(ca, tmp_path):
    pair = make_keypair(tmp_path, "ssh_host_ed25519_key")
    spec = make_spec("host", parse_public_key(pair.public_text), ["vm1.example", "127.0.0.20"],
                     resolve_validity("host", NOW), serial=7)
    out = tmp_path / "host-cert.pub"
    out.write_text(ca.signer("host").sign_certificate(spec).openssh() + "\n")
    listing = keygen_list(out)
    assert "host certificate" in listing
    assert ca.public_key("host").fingerprint() in listing
    assert f"to {keygen_time(NOW + 30 * 86400)}" in listing
    assert re.search(r"Critical Options: \(none\)\n\s+Extensions: \(none\)", listing)


def test_we_read_what_ssh_keygen_signs(tmp_path):
    ca_key = make_keypair(tmp_path, "ca")
    subject = make_keypair(tmp_path, "subject", "rsa")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca_key.private), "-I", "bob@example", "-n", "bob,root",
                    "-z", "99", "-V", "20270101000000:20270102123000", "-O", "clear", "-O", "permit-pty",
                    "-O", "force-command=/bin/true", "-O", "source-address=192.0.2.0/24",
                    str(subject.public)], check=True)
    cert = read_certificate((tmp_path / "subject-cert.pub").read_text(), "subject-cert.pub")
    assert cert.cert_type == "user"
    assert cert.key_id == "bob@example"
    assert cert.principals == ("bob", "root")
    assert cert.serial == 99
    assert cert.valid_after == 1798761600  # 2027-01-01T00:00:00Z
    assert cert.valid_before == 1798893000  # 2027-01-02T12:30:00Z
    assert dict(cert.critical_options) == {"force-command": "/bin/true", "source-address": "192.0.2.0/24"}
    assert cert.extensions == ("permit-pty",)
    assert cert.signing_ca == parse_public_key(ca_key.public_text)
    assert cert.public_key == parse_public_key(subject.public_text)


def test_ssh_keygen_host_certificate_is_read(tmp_path):
    ca_key = make_keypair(tmp_path, "ca")
    host = make_keypair(tmp_path, "host")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca_key.private), "-h", "-I", "host1", "-n", "host1.example",
                    "-V", "always:forever", str(host.public)], check=True)
    info = read_certificate((tmp_path / "host-cert.pub").read_text()).info(NOW)
    assert info["type"] == "host"
    assert info["valid_after"] == "always" and info["valid_before"] == "forever"
    assert info["expired"] is False
    assert info["extensions"] == [] and info["critical_options"] == {}


def test_tampered_certificate_is_refused(ca, tmp_path):
    pair = make_keypair(tmp_path, "k")
    spec = make_spec("user", parse_public_key(pair.public_text), ["alice"], resolve_validity("user", NOW))
    cert = ca.signer("user").sign_certificate(spec)
    forged = cert.blob.replace(b"alice", b"admin")
    with pytest.raises(CertificateError, match="does not verify"):
        read_certificate(f"{cert.key_type} {base64.b64encode(forged).decode()}", "forged")


# --- validity -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("16h", 57600), ("30d", 2592000), ("+1w", 604800), ("1d12h", 129600), ("90", 90), ("5m", 300), ("-5m", -300),
])
def test_durations(text, seconds):
    assert parse_duration(text, "valid_for") == seconds


@pytest.mark.parametrize(("text", "expected"), [
    ("2027-01-15T08:00:00Z", NOW), ("2027-01-15 08:00", NOW), ("2027-01-15T09:00:00+01:00", NOW),
    ("20270115080000", NOW), ("202701150800", NOW), ("20270115", NOW - 8 * 3600), ("@1800000000", NOW),
    ("+1h", NOW + 3600), ("-1d", NOW - 86400), ("always", 0), ("forever", 2 ** 64 - 1),
])
def test_times(text, expected):
    assert parse_time(text, NOW, "valid_from")[0] == expected


def test_defaults_back_date_the_start_for_clock_skew():
    user = resolve_validity("user", NOW)
    host = resolve_validity("host", NOW)
    assert user.valid_after == host.valid_after == NOW - CLOCK_SKEW_SECONDS
    assert user.valid_before == NOW + 16 * 3600
    assert host.valid_before == NOW + 30 * 86400


# --- when to re-sign --------------------------------------------------------------------------


@pytest.fixture
def signed(tmp_path):
    """A user certificate signed 'at NOW' for 16 h, and what it takes to ask for the same again."""
    ca = FileCA(str(tmp_path / "ca"), allow_unencrypted=True)
    ca.ensure()
    key = parse_public_key(make_keypair(tmp_path, "k").public_text)
    validity = resolve_validity("user", NOW, valid_for="16h")
    spec = make_spec("user", key, ["alice"], validity)
    cert = ca.signer("user").sign_certificate(spec)
    return ca, key, spec, cert


def ask(signed, now=NOW, policy="partial_idempotence", principals=("alice",), key=None, ca=None, **options):
    store, own_key, _spec, cert = signed
    validity = resolve_validity("user", now, valid_for=options.pop("valid_for", "16h"),
                                valid_from=options.pop("valid_from", None), valid_to=options.pop("valid_to", None))
    serial_given = "serial" in options
    spec = make_spec("user", key or own_key, list(principals), validity, serial=options.pop("serial", cert.serial),
                     **options)
    return decide(cert, spec, (ca or store).signer("user").public_key, validity, now, policy,
                  serial_given=serial_given)


def test_unchanged_certificate_is_kept(signed):
    decision = ask(signed, now=NOW + 3600)
    assert decision.resign is False and decision.reason == "certificate is up to date"


@pytest.mark.parametrize(("change", "reason"), [
    ({"principals": ("alice", "bob")}, "principals changed"),
    ({"key_id": "other"}, "key id changed"),
    ({"critical_options": {"force-command": "/bin/true"}}, "critical options changed"),
    ({"extensions": ["permit-pty"]}, "extensions changed"),
    ({"valid_to": "2030-01-01T00:00:00Z"}, "valid_to changed"),
    ({"serial": 1}, "serial changed"),
])
def test_each_change_triggers_a_re_sign(signed, change, reason):
    options = dict(change)
    if "valid_to" in options:
        options["valid_for"] = None
    decision = ask(signed, **options)
    assert decision.resign is True and reason in decision.reason


def test_new_public_key_triggers_a_re_sign(signed, tmp_path):
    other = parse_public_key(make_keypair(tmp_path, "other").public_text)
    assert "public key changed" in ask(signed, key=other).reason


def test_other_ca_triggers_a_re_sign(signed, tmp_path):
    other = FileCA(str(tmp_path / "other-ca"), allow_unencrypted=True)
    other.ensure()
    assert "signed by a different CA" in ask(signed, ca=other).reason


def test_less_than_a_third_of_life_left_renews(signed):
    life = 16 * 3600  # the validity asked for
    end = NOW + 16 * 3600
    just_enough = end - life // 3 - 1  # a third left, plus a second: keep
    assert ask(signed, now=just_enough).resign is False
    decision = ask(signed, now=end - life // 3 + 60)
    assert decision.resign is True and "less than a third of its life left" in decision.reason


@pytest.mark.parametrize("policy", ["partial_idempotence", "full_idempotence"])
def test_fixed_start_with_relative_end_is_not_re_signed_every_run(signed, policy):
    store, key, _spec, _cert = signed
    validity = resolve_validity("user", NOW, valid_for="16h", valid_from="always")
    cert = store.signer("user").sign_certificate(make_spec("user", key, ["alice"], validity))
    later = NOW + 3600
    again = resolve_validity("user", later, valid_for="16h", valid_from="always")
    spec = make_spec("user", key, ["alice"], again, serial=cert.serial)
    decision = decide(cert, spec, store.signer("user").public_key, again, later, policy)
    assert decision.resign is False, decision.reason
    near_end = NOW + 16 * 3600 - 3600
    late = resolve_validity("user", near_end, valid_for="16h", valid_from="always")
    spec = make_spec("user", key, ["alice"], late, serial=cert.serial)
    assert decide(cert, spec, store.signer("user").public_key, late, near_end, policy).resign is True


def test_reordered_principals_keep_the_certificate(signed):
    store, key, _spec, _cert = signed
    validity = resolve_validity("user", NOW, valid_for="16h")
    cert = store.signer("user").sign_certificate(make_spec("user", key, ["alice", "bob"], validity))
    spec = make_spec("user", key, ["bob", "alice"], validity, serial=cert.serial)
    assert decide(cert, spec, store.signer("user").public_key, validity, NOW).resign is False


def test_expired_certificate_is_renewed(signed):
    decision = ask(signed, now=NOW + 17 * 3600)
    assert decision.resign is True and "expired" in decision.reason


def test_full_idempotence_also_compares_the_lifetime(signed):
    assert ask(signed, valid_for="8h").resign is False
    decision = ask(signed, valid_for="8h", policy="full_idempotence")
    assert decision.resign is True and "lifetime changed" in decision.reason


def test_never_keeps_and_always_re_signs(signed):
    assert ask(signed, principals=("bob",), policy="never").resign is False
    assert ask(signed, policy="always").resign is True


def test_fail_policy_names_the_difference(signed):
    with pytest.raises(CertificateError, match=r"principals changed.*regenerate=fail"):
        ask(signed, principals=("bob",), policy="fail")
    assert ask(signed, policy="fail").resign is False


def test_fixed_window_is_not_renewed_in_a_loop(signed):
    """Absolute times give the same window on every run: re-signing would change nothing."""
    _ca, _key, _spec, cert = signed
    window = {"valid_from": f"@{cert.valid_after}", "valid_to": f"@{cert.valid_before}", "valid_for": None}
    assert ask(signed, now=NOW + 20 * 3600, **window).resign is False


# --- several certificates in one call (ssh_cert's certificates option) ------------------------

HOST_PRINCIPALS = ["vm1.example", "127.0.0.9"]


@pytest.fixture(scope="module")
def host_keys(tmp_path_factory) -> dict:
    """A host CA (encrypted, as in production) and a host's three host keys, made once."""
    root = tmp_path_factory.mktemp("host")
    FileCA(str(root / "ca"), passphrase="ca-pass", kinds=("host",)).ensure()
    pairs = [make_keypair(root, f"ssh_host_{kind}_key", kind) for kind in ("ed25519", "ecdsa", "rsa")]
    return {"ca_path": str(root / "ca"), "keys": [pair.public_text for pair in pairs]}


@pytest.fixture
def unlocks(monkeypatch) -> list:
    """Every CA private key opened (each open is a passphrase KDF)."""
    opened = []
    real = _ca_signers.load_private_key

    def counting(data, passphrase, source):
        opened.append(source)
        return real(data, passphrase, source)

    monkeypatch.setattr(_ca_signers, "load_private_key", counting)
    return opened


def sign_batch(host_keys, out: Path, items=None, check_mode=False, **options) -> dict:
    """certificate_task as ssh_cert runs it: a fresh CA backend per call, its issuance log attached."""
    params = {"type": "host", "principals": HOST_PRINCIPALS, "key_id": "host:vm1", "regenerate": "partial_idempotence"}
    params["certificates"] = items if items is not None else [
        {"public_key": key, "path": str(out / f"key{n}-cert.pub")} for n, key in enumerate(host_keys["keys"])]
    params.update(options)
    log = IssuanceLog(str(out / "issued.jsonl"))
    ca = FileCA(host_keys["ca_path"], passphrase="ca-pass", kinds=("host",), issuance_log=log)
    return certificate_task(params, ca, check_mode, now=NOW)


def test_one_call_signs_a_hosts_three_keys_with_one_unlock(host_keys, tmp_path, unlocks):
    checked = sign_batch(host_keys, tmp_path, check_mode=True)
    assert checked["changed"] and [entry["resigned"] for entry in checked["certificates"]] == [True] * 3
    assert not list(tmp_path.iterdir()), "check mode wrote something"
    assert len(unlocks) == 1, "check mode opens the CA once, to prove the passphrase"

    applied = sign_batch(host_keys, tmp_path)
    assert applied["changed"] and len(unlocks) == 2, "the three certificates took more than one unlock"
    entries = applied["certificates"]
    assert [entry["path"] for entry in entries] == [str(tmp_path / f"key{n}-cert.pub") for n in range(3)]
    assert len({entry["serial"] for entry in entries}) == 3
    for entry, key in zip(entries, host_keys["keys"], strict=True):
        listing = keygen_list(Path(entry["path"]))
        assert "host certificate" in listing and 'Key ID: "host:vm1"' in listing
        assert f"Serial: {entry['serial']}" in listing
        assert re.search(r"Principals: \n\s+vm1\.example\n\s+127\.0\.0\.9\n", listing)
        assert parse_public_key(key).fingerprint() in listing  # each file certifies its own key
        assert Path(entry["path"]).read_text() == entry["certificate"] + "\n"
    logged = [json.loads(line) for line in (tmp_path / "issued.jsonl").read_text().splitlines()]
    fingerprints = [parse_public_key(key).fingerprint() for key in host_keys["keys"]]
    assert [(line["serial"], line["public_key_fingerprint"]) for line in logged] == [
        (entry["serial"], fingerprint) for entry, fingerprint in zip(entries, fingerprints, strict=True)]

    written = {path: path.read_bytes() for path in tmp_path.iterdir()}
    for check_mode in (True, False):
        again = sign_batch(host_keys, tmp_path, check_mode=check_mode)
        assert not again["changed"]
        assert [entry["serial"] for entry in again["certificates"]] == [entry["serial"] for entry in entries]
        assert [entry["reason"] for entry in again["certificates"]] == ["certificate is up to date"] * 3
    assert {path: path.read_bytes() for path in tmp_path.iterdir()} == written
    assert len(unlocks) == 2, "a run that signs nothing opened the CA"


def test_a_ca_without_its_public_key_file_is_still_unlocked_once(host_keys, tmp_path, unlocks):
    """Without host_ca.pub, deciding needs the private key too: the signer opened then is the one that signs."""
    ca_copy = tmp_path / "ca"
    ca_copy.mkdir()
    (ca_copy / "host_ca").write_bytes((Path(host_keys["ca_path"]) / "host_ca").read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    assert sign_batch(dict(host_keys, ca_path=str(ca_copy)), out)["changed"]
    assert unlocks == [str(ca_copy / "host_ca")]


def test_each_entry_has_the_fields_of_the_single_form(host_keys, tmp_path):
    single = certificate_task({"type": "host", "principals": HOST_PRINCIPALS, "key_id": "host:vm1",
                               "public_key": host_keys["keys"][0], "path": str(tmp_path / "single-cert.pub")},
                              FileCA(host_keys["ca_path"], passphrase="ca-pass", kinds=("host",)), False, now=NOW)
    batch = sign_batch(host_keys, tmp_path)
    assert sorted(batch) == ["certificates", "changed", "diff"]
    for entry in batch["certificates"]:
        assert sorted(entry) == sorted(set(single) - {"changed", "diff"})


def test_diff_mode_shows_one_diff_per_certificate_headed_by_its_path(host_keys, tmp_path):
    before = sign_batch(host_keys, tmp_path, check_mode=True)["diff"]
    assert [(d["before_header"], d["after_header"]) for d in before] == [
        (str(tmp_path / f"key{n}-cert.pub"),) * 2 for n in range(3)]
    assert all(d["before"] == "" and d["after"].endswith("(a new certificate)\n") for d in before)
    signed = sign_batch(host_keys, tmp_path)
    later = sign_batch(host_keys, tmp_path, principals=["vm1.example"])["diff"]
    for diff, entry in zip(later, signed["certificates"], strict=True):
        assert diff["before"].endswith(entry["certificate"] + "\n")
        assert "principals vm1.example," in diff["after"].splitlines()[0] + ","


@pytest.mark.parametrize(("third", "message"), [
    ({"public_key": "ssh-ed25519 AAAAnot-a-key"}, r"certificates\[2\]\.public_key: "),
    ({"path": "{out}/missing/key2-cert.pub"}, r"certificates\[2\]\.path: folder {out}/missing does not exist$"),
    ({"path": "{out}/key0-cert.pub"}, r"certificates\[2\]\.path: {out}/key0-cert.pub is also certificates\[0\]\.path"),
    ({"path": "{out}"}, r"certificates\[2\]\.path: {out} is a folder, not a file$"),
])
def test_a_bad_item_is_named_and_nothing_is_written(host_keys, tmp_path, unlocks, third, message):
    out = tmp_path / "out"
    out.mkdir()
    items = [{"public_key": key, "path": str(out / f"key{n}-cert.pub")} for n, key in enumerate(host_keys["keys"])]
    items[2].update({name: value.format(out=out) for name, value in third.items()})
    with pytest.raises(SSHKeyError, match="^" + message.format(out=re.escape(str(out)))) as failure:
        sign_batch(host_keys, out, items)
    assert "\n" not in str(failure.value)
    assert not list(out.iterdir()) and not unlocks


def test_one_serial_for_several_certificates_is_refused(host_keys, tmp_path, unlocks):
    with pytest.raises(CertificateError) as failure:
        sign_batch(host_keys, tmp_path, serial=7)
    assert str(failure.value) == ("serial: cannot be given for 3 certificates: they would share it, and a KRL "
                                  "revoking one by serial would revoke them all")
    assert not list(tmp_path.iterdir()) and not unlocks
    alone = sign_batch(host_keys, tmp_path, [{"public_key": host_keys["keys"][0], "path": str(tmp_path / "c.pub")}],
                       serial=7)
    assert alone["certificates"][0]["serial"] == 7


def run_ssh_cert(args: dict) -> dict:
    """ssh_cert's main() in this process, as Ansible runs it; its printed result."""
    printed = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        ssh_cert.main()
    return json.loads(printed.getvalue())


def test_the_module_signs_certificates_and_reports_the_ca_and_the_log(host_keys, tmp_path):
    args = {"type": "host", "ca_path": host_keys["ca_path"], "host_ca_passphrase": "ca-pass",
            "audit_log": str(tmp_path / "issued.jsonl"), "principals": HOST_PRINCIPALS, "_ansible_diff": True,
            "certificates": [{"public_key": key, "path": str(tmp_path / f"key{n}-cert.pub")}
                             for n, key in enumerate(host_keys["keys"][:2])]}
    first = run_ssh_cert(args)
    assert (first["changed"], first["ca"], first["ca_backend"], first["audit_log"]) == (
        True, "host", "file", str(tmp_path / "issued.jsonl"))
    assert [entry["path"] for entry in first["certificates"]] == [str(tmp_path / f"key{n}-cert.pub") for n in (0, 1)]
    assert len(first["diff"]) == 2 and "ca-pass" not in json.dumps(first)
    again = run_ssh_cert(args)
    assert not again["changed"] and "audit_log" not in again
    assert run_ssh_cert(dict(args, path=str(tmp_path / "c.pub")))["msg"] == \
        "parameters are mutually exclusive: path|certificates"
    assert run_ssh_cert({k: v for k, v in args.items() if k != "certificates"} | {"public_key": host_keys["keys"][0]}
                        )["msg"] == "one of the following is required: path, certificates"
