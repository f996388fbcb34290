"""KRLs: what ssh_krl builds, judged by the real ssh-keygen -Q; updates, idempotency, bad input."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._ca_signers import FileCA, IssuanceLog
from ansible_collections.sshca.azure.plugins.module_utils._krl import KRLError, krl_task, read_issued
from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import certificate_task
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import SSHKeyError

from conftest import make_keypair


def keygen(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh-keygen", *args], capture_output=True, text=True, check=check)


def revoked_by(krl: Path, subject: Path) -> bool:
    """ssh-keygen's own verdict: exit 1 and REVOKED, or exit 0."""
    proc = keygen("-Q", "-f", str(krl), str(subject), check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 1 and "REVOKED" in proc.stdout


class World:
    """A file CA with its issuance log (as ssh_cert attaches it), certificates it issued, keys."""

    def __init__(self, root: Path):
        self.root = root
        self.ca = FileCA(str(root / "ca"), allow_unencrypted=True,
                         issuance_log=IssuanceLog(str(root / "ca" / "issued.jsonl")))
        self.ca.ensure()
        self.certs = root / "certs"
        self.certs.mkdir()
        self.krl = root / "krl" / "revoked_keys"
        self.krl.parent.mkdir()

    def issue(self, name: str, cert_type: str = "user", key_id: str | None = None) -> tuple[Path, int]:
        pair = make_keypair(self.certs, name)
        cert = self.certs / f"{name}-cert.pub"
        result = certificate_task({"type": cert_type, "public_key_path": str(pair.public), "path": str(cert),
                                   "principals": [name], "key_id": key_id or name, "ca": cert_type}, self.ca, False)
        return cert, result["serial"]

    def run(self, check: bool = False, **params) -> dict:
        params = {"path": str(self.krl), "ca_path": str(self.root / "ca")} | params
        return krl_task(params, check)

    def snapshot(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.krl.parent.iterdir()}


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def test_check_apply_idempotent_with_every_kind_of_entry(world):
    alice, alice_serial = world.issue("alice")
    bob = world.issue("bob")[0]
    carol = world.issue("carol")[0]
    host = world.issue("web-1", "host", key_id="host:web-1")[0]
    lost = make_keypair(world.root, "lost")
    revoked = [{"serial": alice_serial, "ca": "user", "reason": "laptop stolen"},
               {"key_id": "bob", "ca": "user"},
               {"public_key_path": str(lost.public)},
               {"certificate_path": str(host)}]

    check = world.run(check=True, revoked=revoked)
    assert check["changed"] and check["count"] == 4
    assert not world.krl.exists()

    apply = world.run(revoked=revoked)
    assert apply["changed"] and sorted(e["kind"] for e in apply["added"]) == ["key", "key_id", "serial", "serial"]
    for subject in (alice, bob, host, lost.public):
        assert revoked_by(world.krl, subject), subject
    assert not revoked_by(world.krl, carol)
    assert f"serial {alice_serial} of user CA (alice, laptop stolen" in apply["diff"]["after"]

    for check in (True, False):
        again = world.run(check=check, revoked=revoked)
        assert not again["changed"] and again["added"] == [] and again["removed"] == []


def test_updates_add_and_remove_one_entry_and_never_drop_one_silently(world):
    alice, alice_serial = world.issue("alice")
    bob, bob_serial = world.issue("bob")
    world.run(revoked=[{"serial": alice_serial, "ca": "user"}])
    # A later run names only bob: alice stays revoked.
    second = world.run(revoked=[{"serial": bob_serial, "ca": "user"}])
    assert second["changed"] and [e["value"] for e in second["added"]] == [bob_serial]
    assert revoked_by(world.krl, alice) and revoked_by(world.krl, bob)

    # The spec is lost: what the KRL itself revokes still counts, nothing is un-revoked.
    (world.krl.parent / "revoked_keys.json").unlink()
    rebuilt = world.run(revoked=[])
    assert rebuilt["changed"] and rebuilt["removed"] == [] and rebuilt["count"] == 2
    assert revoked_by(world.krl, alice) and revoked_by(world.krl, bob)

    # An entry added outside ssh_krl (ssh-keygen -k -u by hand) is kept too.
    outsider = make_keypair(world.root, "outsider")
    keygen("-k", "-u", "-f", str(world.krl), str(outsider.public))
    kept = world.run(revoked=[])
    assert kept["changed"] and kept["count"] == 3 and revoked_by(world.krl, outsider.public)

    removed = world.run(state="absent", revoked=[{"serial": alice_serial, "ca": "user"}])
    assert [e["value"] for e in removed["removed"]] == [alice_serial]
    assert not revoked_by(world.krl, alice) and revoked_by(world.krl, bob)
    assert f"serial {alice_serial}" in removed["diff"]["before"]
    assert f"serial {alice_serial}" not in removed["diff"]["after"]

    folder = world.run(revoked=[{"certificate_path": str(world.certs)}])
    assert {e["value"] for e in folder["added"]} == {alice_serial}  # bob is in already
    assert revoked_by(world.krl, alice)

    exact = world.run(exclusive=True, revoked=[{"certificate_path": str(alice)}])
    assert exact["count"] == 1 and len(exact["removed"]) == 2
    assert revoked_by(world.krl, alice) and not revoked_by(world.krl, bob)
    assert not revoked_by(world.krl, outsider.public)


def test_spec_ahead_of_the_krl_is_rebuilt(world):
    """A crash between writing the spec and the KRL: the next run finishes the job."""
    alice, alice_serial = world.issue("alice")
    world.run(revoked=[])
    empty_krl = world.krl.read_bytes()
    world.run(revoked=[{"serial": alice_serial, "ca": "user"}])
    world.krl.write_bytes(empty_krl)
    assert not revoked_by(world.krl, alice)
    again = world.run(revoked=[])
    assert again["changed"] and revoked_by(world.krl, alice)


def test_empty_krl_is_a_valid_krl(world):
    result = world.run(revoked=[])
    assert result["changed"] and result["count"] == 0
    assert keygen("-Q", "-l", "-f", str(world.krl)).returncode == 0
    assert not world.run(revoked=[])["changed"]


def test_reads_the_issuance_log_ssh_cert_writes(world):
    _cert, serial = world.issue("alice")
    records = read_issued(world.root / "ca" / "issued.jsonl")
    assert [(r["serial"], r["key_id"]) for r in records] == [(serial, "alice")]
    assert records[0]["ca_fingerprint"] == world.ca.public_key("user").fingerprint()


def test_serials_found_in_certificates_on_disk_when_there_is_no_log(world):
    alice, alice_serial = world.issue("alice")
    (world.root / "ca" / "issued.jsonl").unlink()
    entry = [{"serial": alice_serial, "ca": "user"}]
    with pytest.raises(KRLError, match="no issuance log and no issued_certificates"):
        world.run(revoked=entry)
    result = world.run(revoked=entry, issued_certificates=[str(world.certs)])
    assert result["changed"] and revoked_by(world.krl, alice)
    assert not world.run(revoked=entry, require_issued=False)["changed"]


def bad_cases(world: World) -> dict[str, tuple[dict, str]]:
    _alice, serial = world.issue("alice")
    unreadable = world.root / "unreadable.pub"
    unreadable.mkdir()  # unreadable as a file, even for root
    return {
        "unknown serial": ({"revoked": [{"serial": serial + 1, "ca": "user"}]},
                           rf"^revoked\[0\]\.serial: {serial + 1} was not issued by CA SHA256:\S+ \(looked in "
                           r".*issued\.jsonl\); check the number$"),
        "host serial under the user CA": ({"revoked": [{"serial": serial, "ca": "host"}]},
                                          rf"^revoked\[0\]\.serial: {serial} was not issued by CA"),
        "missing key file": ({"revoked": [{"serial": serial, "ca": "user"}, {"public_key_path": "/nonexistent.pub"}]},
                             r"^revoked\[1\]\.public_key_path: cannot read /nonexistent\.pub: No such file"),
        "unreadable key file": ({"revoked": [{"public_key_path": str(unreadable)}]},
                                r"^revoked\[0\]\.public_key_path: cannot read .*unreadable\.pub: Is a directory$"),
        "a private key as the key": ({"revoked": [{"public_key_path": str(world.certs / "alice")}]},
                                     r"is a private key"),
        "empty certificate folder": ({"revoked": [{"certificate_path": str(world.root / "krl")}]},
                                     r"^revoked\[0\]\.certificate_path: \S+ holds no certificate"),
        "not a certificate": ({"revoked": [{"certificate": "ssh-ed25519 AAAA"}]},
                              r"^revoked\[0\]\.certificate: is not an OpenSSH certificate"),
        "serial 0": ({"revoked": [{"serial": 0, "ca": "user"}]}, r"^revoked\[0\]\.serial: must be 1 to 2\^64-1"),
        "serial without CA": ({"revoked": [{"serial": serial}]}, r"^revoked\[0\]\.ca: is required"),
        "two fields": ({"revoked": [{"serial": serial, "key_id": "x", "ca": "user"}]},
                       r"^revoked\[0\]: give exactly one of"),
        "key id with #": ({"revoked": [{"key_id": "a#b", "ca": "user"}]}, r"^revoked\[0\]\.key_id: 'a#b' cannot"),
        "exclusive absent": ({"state": "absent", "exclusive": True}, r"^exclusive: only goes with state=present$"),
    }


@pytest.mark.parametrize("case", ["unknown serial", "host serial under the user CA", "missing key file",
                                  "unreadable key file", "a private key as the key", "not a certificate",
                                  "serial 0", "serial without CA", "empty certificate folder", "two fields",
                                  "key id with #", "exclusive absent"])
def test_bad_input_is_one_line_and_nothing_is_written(world, case):
    world.run(revoked=[])
    before = world.snapshot()
    params, message = bad_cases(world)[case]
    with pytest.raises(SSHKeyError) as raised:
        world.run(**params)
    assert "\n" not in str(raised.value)
    assert raised.match(message), str(raised.value)
    assert world.snapshot() == before


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_malformed_existing_krl_is_refused_and_left_alone(world, damage):
    _alice, serial = world.issue("alice")
    world.run(revoked=[{"serial": serial, "ca": "user"}])
    data = world.krl.read_bytes()
    world.krl.write_bytes({"truncated": data[:20], "garbage": b"not a KRL\n", "empty": b""}[damage])
    before = world.snapshot()
    for check in (True, False):
        with pytest.raises(KRLError, match=r"^\S+/revoked_keys: is not a valid KRL \(.+\)$"):
            world.run(check=check, revoked=[])
    assert world.snapshot() == before


def test_malformed_spec_is_refused(world):
    world.run(revoked=[])
    (world.krl.parent / "revoked_keys.json").write_text("{not json")
    with pytest.raises(KRLError, match=r"revoked_keys\.json: is not JSON"):
        world.run(revoked=[])


def test_spec_holds_ca_keys_and_notes_only(world):
    alice, serial = world.issue("alice")
    world.run(revoked=[{"certificate_path": str(alice), "reason": "left"}])
    spec = json.loads((world.krl.parent / "revoked_keys.json").read_text())
    assert list(spec["cas"]) == [world.ca.public_key("user").fingerprint()]
    [entry] = spec["revoked"]
    assert entry["kind"] == "serial" and entry["value"] == serial
    assert entry["note"]["reason"] == "left" and entry["note"]["key_id"] == "alice"


def admin_world(world: World) -> tuple[Path, int, Path]:
    """The automation's admin certificate (admin CA, key id sshca-enroll) and a KRL with one entry."""
    pair = make_keypair(world.certs, "admin")
    cert = world.certs / "admin-cert.pub"
    serial = certificate_task({"type": "user", "public_key_path": str(pair.public), "path": str(cert),
                               "principals": ["sshca-admin"], "key_id": "sshca-enroll", "ca": "admin"},
                              world.ca, False)["serial"]
    _alice, alice_serial = world.issue("alice")
    world.run(revoked=[{"serial": alice_serial, "ca": "user"}])
    return cert, serial, pair.public


# Each way a KRL can revoke a certificate, as ssh-keygen -Q (and sshd) test it.
LOCKOUTS = {
    "key id": lambda cert, serial, key, ca: {"key_id": "sshca-enroll", "ca": "admin"},
    "serial": lambda cert, serial, key, ca: {"serial": serial, "ca": "admin"},
    "its key": lambda cert, serial, key, ca: {"public_key_path": str(key)},
    "the admin CA's key": lambda cert, serial, key, ca: {"public_key_path": ca},
    "the certificate": lambda cert, serial, key, ca: {"certificate_path": str(cert)},
}


@pytest.mark.parametrize("form", list(LOCKOUTS))
def test_a_krl_revoking_a_kept_certificate_is_refused_and_nothing_written(world, form):
    cert, serial, key = admin_world(world)
    _bob, bob_serial = world.issue("bob")
    item = LOCKOUTS[form](cert, serial, key, str(world.root / "ca" / "admin_ca.pub"))
    before = world.snapshot()
    for check in (True, False):
        with pytest.raises(KRLError) as raised:
            world.run(check=check, keep_admitted=[str(cert)], revoked=[{"serial": bob_serial, "ca": "user"}, item])
        assert raised.match(rf"^revoked\[1\]\.\w+.*: would revoke keep_admitted\[0\] \({re.escape(str(cert))}: key id "
                            rf"sshca-enroll, serial {serial}\), which must stay admitted; nothing was written$")
        assert world.snapshot() == before
    assert not revoked_by(world.krl, cert)


def test_a_krl_in_place_revoking_a_kept_certificate_is_refused_until_the_entry_is_removed(world):
    cert, _serial, _key = admin_world(world)
    lockout = {"key_id": "sshca-enroll", "ca": "admin"}
    world.run(revoked=[lockout])  # as an earlier release let through
    before = world.snapshot()
    for check in (True, False):
        with pytest.raises(KRLError, match=r"^path: the KRL in place \(\S+/revoked_keys\) already revokes keep_admitted"
                                           r"\[0\] \(.*\) by key id sshca-enroll of admin CA; remove that entry "
                                           r"\(ssh_krl with state=absent\) .*; nothing was written$"):
            world.run(check=check, keep_admitted=[str(cert)], revoked=[])
        assert world.snapshot() == before
    fixed = world.run(keep_admitted=[str(cert)], state="absent", revoked=[lockout])
    assert fixed["changed"] and not revoked_by(world.krl, cert)


def test_a_kept_certificate_leaves_other_revocations_of_its_ca_alone(world):
    """The canary (admin CA, another key id) is revoked beside a kept admin certificate; idempotent."""
    cert, _serial, _key = admin_world(world)
    canary = [{"key_id": "sshca-krl-canary", "ca": "admin"}]
    assert world.run(keep_admitted=[str(cert)], revoked=canary)["changed"]
    for check in (True, False):
        assert not world.run(check=check, keep_admitted=[str(cert)], revoked=canary)["changed"]
    assert not revoked_by(world.krl, cert)


def test_an_unreadable_kept_certificate_is_one_line(world):
    with pytest.raises(KRLError, match=r"^keep_admitted\[0\]: cannot read /nonexistent-cert\.pub: No such file"):
        world.run(keep_admitted=["/nonexistent-cert.pub"], revoked=[])
    assert not world.krl.exists()
