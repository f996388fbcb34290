"""sshd_cert_trust's logic: one pass writes what sshd reads, check mode writes nothing, an existing
KRL is never overwritten, stale principals files go, bad input fails before any write."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils import _sshd_trust
from ansible_collections.sshca.azure.plugins.module_utils._sshd_trust import TrustFilesError, trust_files_task

from conftest import make_keypair

OWNER = (os.getuid(), os.getgid())
CERT = "ssh-ed25519-cert-v01@openssh.com AAAAfake host"


def empty_krl(path: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-k", "-f", path, "/dev/null"], check=True, capture_output=True)


def params(root: Path, **overrides) -> dict:
    config = root / "etc" / "sshca"
    value = {
        "host_certificates": {str(root / "etc" / "host-cert.pub"): CERT},
        "trusted_ca_keys_path": str(config / "trusted_user_ca_keys.pub"),
        "trusted_ca_keys": "ssh-ed25519 AAAAuser\nssh-ed25519 AAAAadmin\n",
        "principals_command_path": str(root / "libexec" / "sshca-principals"),
        "principals_command": "#!/bin/sh\nexit 0\n",
        "principals": [
            {"folder": str(config / "user_principals"), "ca": "user",
             "accounts": {"azureuser": ["grp:platform"], "ops": ["grp:platform", "grp:ops"]}},
            {"folder": str(config / "admin_principals"), "ca": "admin", "accounts": {"azureuser": ["sshca-admin"]}},
        ],
        "revoked_keys_path": str(config / "revoked_keys"),
        "remove": [],
    }
    value.update(overrides)
    return value


def run(root: Path, check_mode: bool = False, **overrides) -> dict:
    (root / "etc").mkdir(exist_ok=True)
    return trust_files_task(params(root, **overrides), check_mode, want_diff=True, owner=OWNER,
                            make_empty_krl=empty_krl)


def tree(root: Path) -> dict:
    """Every path under root with its mode and text (None for folders and the binary KRL)."""
    found = {}
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.stat().st_mode)
        found[str(path.relative_to(root))] = (oct(mode), path.read_text() if path.is_file()
                                              and path.name != "revoked_keys" else None)
    return found


def test_check_apply_idempotent_check_and_apply(tmp_path):
    predicted = run(tmp_path, check_mode=True)
    assert predicted["changed"] and tree(tmp_path) == {"etc": tree(tmp_path)["etc"]}  # nothing written
    applied = run(tmp_path)
    assert applied["changed"]
    assert [r["action"] for r in applied["results"]] == [r["action"] for r in predicted["results"]]
    files = tree(tmp_path)
    assert files["etc/host-cert.pub"] == ("0o644", CERT + "\n")
    assert files["libexec/sshca-principals"] == ("0o755", "#!/bin/sh\nexit 0\n")
    assert files["etc/sshca/user_principals"] == ("0o755", None)
    assert files["etc/sshca/user_principals/ops"][1].splitlines()[1:] == ["grp:platform", "grp:ops"]
    assert files["etc/sshca/admin_principals/azureuser"][1].endswith("from the admin CA.\nsshca-admin\n")
    assert not any(name.rsplit("/", 1)[-1].startswith(".") for name in files)  # no temporary file left
    assert run(tmp_path, check_mode=True)["changed"] is False
    again = run(tmp_path)
    assert again["changed"] is False and again["diff"] == [] and tree(tmp_path) == files


def test_the_empty_krl_is_real_and_an_existing_one_is_never_overwritten(tmp_path):
    run(tmp_path)
    krl = tmp_path / "etc" / "sshca" / "revoked_keys"
    key = make_keypair(tmp_path, "k")
    query = subprocess.run(["ssh-keygen", "-Q", "-f", str(krl), str(key.public)], capture_output=True, text=True,
                           check=False)
    assert query.returncode == 0, query.stderr  # a KRL ssh-keygen reads, revoking nothing
    subprocess.run(["ssh-keygen", "-q", "-k", "-f", str(krl), str(key.public)], check=True)
    revoked = krl.read_bytes()
    assert run(tmp_path)["changed"] is False
    assert krl.read_bytes() == revoked


def test_stale_principals_files_go_and_a_changed_mode_is_put_back(tmp_path):
    run(tmp_path)
    config = tmp_path / "etc" / "sshca"
    (config / "user_principals" / "gone").write_text("grp:old\n")
    os.chmod(config / "trusted_user_ca_keys.pub", 0o600)
    result = run(tmp_path)
    actions = {Path(r["path"]).name: r["action"] for r in result["results"] if r["action"] != "unchanged"}
    assert actions == {"gone": "remove", "trusted_user_ca_keys.pub": "update"}
    assert not (config / "user_principals" / "gone").exists()
    assert stat.S_IMODE((config / "trusted_user_ca_keys.pub").stat().st_mode) == 0o644


def test_look_for_only_reports_and_remove_takes_folders_and_files_and_diffs_them(tmp_path):
    old = tmp_path / "principals"
    old.mkdir()
    (old / "azureuser").write_text("sshca-admin\n")
    (tmp_path / "user_ca.pub").write_text("ssh-ed25519 AAAAold\n")
    looked = trust_files_task({"look_for": [str(old), str(tmp_path / "user_ca.pub"), str(tmp_path / "none")]},
                              False, True, owner=OWNER)
    assert looked["found"] == [str(old), str(tmp_path / "user_ca.pub")] and not looked["changed"] and old.exists()
    result = trust_files_task({"remove": [str(old), str(tmp_path / "user_ca.pub")]}, False, True, owner=OWNER)
    assert result["changed"] and not old.exists() and not (tmp_path / "user_ca.pub").exists()
    assert [d["after_header"] for d in result["diff"]] == ["(absent)", "(absent)"]
    assert trust_files_task({"remove": [str(old)]}, False, True, owner=OWNER)["changed"] is False


@pytest.mark.parametrize(("overrides", "named"), [
    ({"host_certificates": {"relative/cert.pub": CERT}}, "host_certificates: 'relative/cert.pub'"),
    ({"host_certificates": {"/x/cert.pub": ""}}, "host_certificates: '/x/cert.pub'"),
    ({"principals": [{"folder": "/x", "ca": "user", "accounts": {"../etc": ["a"]}}]}, "/x: '../etc'"),
    ({"principals": [{"folder": "/x", "ca": "user", "accounts": {"ops": "grp:ops"}}]}, "user CA, account 'ops'"),
    ({"files": [{"path": "usr/check.py", "content": ""}]}, "files[0].path: 'usr/check.py'"),
    ({"files": [{"path": "/usr/../check.py", "content": ""}]}, "files[0].path: '/usr/../check.py'"),
    ({"files": [{"path": "/x/a", "content": ""}, {"path": "/x/a", "content": ""}]}, "files[1].path: '/x/a' is given"),
    ({"files": [{"path": "/x/a", "content": "", "mode": 420}]}, "files[0].mode: 420"),  # an unquoted YAML 0644
    ({"files": [{"path": "/x/a", "content": "", "mode": "0648"}]}, "files[0].mode: '0648'"),
    ({"timer": {"name": "../evil.timer", "enabled": True}}, "timer.name: '../evil.timer'"),
    ({"timer": {"name": "sshca.service", "enabled": False}}, "timer.name: 'sshca.service'"),
    ({"timer": {"name": "sshca.timer", "enabled": True}}, "timer.name: sshca.timer: systemctl is not on this host"),
])
def test_bad_input_is_one_line_naming_it_and_nothing_is_written(tmp_path, overrides, named):
    with pytest.raises(TrustFilesError) as caught:
        run(tmp_path, **overrides)
    assert named in str(caught.value) and "\n" not in str(caught.value)
    assert tree(tmp_path) == {"etc": ("0o755", None)}


def test_check_mode_takes_a_certificate_not_signed_yet(tmp_path):
    result = run(tmp_path, check_mode=True, host_certificates={str(tmp_path / "etc" / "c.pub"): ""})
    assert result["results"][0]["action"] == "create" and not (tmp_path / "etc" / "c.pub").exists()


# --- files and the timer (the host certificate expiry check) ------------------------------------------------

TIMER = "sshca-check.timer"


class FakeSystemctl:
    """Stands in for systemctl: is-enabled and is-active answer from its state, the other verbs change it.

    It records every call, and whether the timer's unit file was still on disk when it was disabled."""

    def __init__(self, unit: Path, enabled=False, active=False, failing=None):
        self.unit, self.enabled, self.active, self.failing = unit, enabled, active, failing
        self.calls, self.unit_present_at_disable = [], []

    def __call__(self, args):
        self.calls.append(" ".join(args))
        verb = args[0]
        if verb in ("is-enabled", "is-active"):
            return (0 if (self.enabled if verb == "is-enabled" else self.active) else 3), "", ""
        if verb == self.failing:
            return 1, "", f"Created symlink x.\nFailed to enable unit: Unit file {TIMER} is masked.\n"
        if verb == "disable":
            self.unit_present_at_disable.append(self.unit.exists())
        if verb in ("enable", "disable"):
            self.enabled = self.active = verb == "enable"
        return 0, "", ""

    def changes(self):
        return [call for call in self.calls if not call.startswith("is-")]


@pytest.fixture
def units(tmp_path, monkeypatch):
    """An existing systemd unit folder (0700 here, to show it is never chmod'ed), taken as systemd's own."""
    folder = tmp_path / "etc" / "systemd" / "system"
    folder.mkdir(parents=True)
    folder.chmod(0o700)
    monkeypatch.setattr(_sshd_trust, "SYSTEMD_UNIT_FOLDERS", (str(folder),))
    return folder


def check_files(root: Path, units: Path) -> list:
    return [{"path": str(root / "usr" / "libexec" / "sshca" / "check.py"), "content": "print('ok')\n", "mode": "0644"},
            {"path": str(units / "sshca-check.service"), "content": "[Service]\n", "mode": "0640"},
            {"path": str(units / TIMER), "content": "[Timer]\nOnCalendar=daily\n", "mode": "0644"}]


def check_task(systemctl, check_mode=False, enabled=True, **params):
    return trust_files_task({"timer": {"name": TIMER, "enabled": enabled}, **params}, check_mode, True,
                            owner=OWNER, systemctl=systemctl)


def test_files_and_timer_check_apply_idempotent_check_and_apply(tmp_path, units):
    files = check_files(tmp_path, units)
    systemctl = FakeSystemctl(units / TIMER)
    predicted = check_task(systemctl, check_mode=True, files=files)
    assert predicted["changed"] and not (tmp_path / "usr").exists() and list(units.iterdir()) == []
    assert [(Path(r["path"]).name, r["kind"], r["action"]) for r in predicted["results"]] == [
        ("sshca", "directory", "create"), ("check.py", "file", "create"), ("system", "directory", "unchanged"),
        ("sshca-check.service", "file", "create"), (TIMER, "file", "create"), (TIMER, "timer", "enable")]
    assert [d["after"] for d in predicted["diff"]][1:] == [f["content"] for f in files] + ["enabled, active\n"]
    assert systemctl.calls == []  # a timer not written yet cannot be asked about, and nothing may change

    applied = check_task(systemctl, files=files)
    assert [r["action"] for r in applied["results"]] == [r["action"] for r in predicted["results"]]
    assert systemctl.changes() == ["daemon-reload", f"enable --now {TIMER}"]
    found = tree(tmp_path)
    assert found["usr/libexec/sshca"][0] == "0o755" and found["usr/libexec/sshca/check.py"][0] == "0o644"
    assert found["etc/systemd/system"] == ("0o700", None)  # an existing folder keeps its mode
    assert found["etc/systemd/system/sshca-check.service"] == ("0o640", "[Service]\n")

    for check_mode in (True, False):
        systemctl.calls = []
        again = check_task(systemctl, check_mode=check_mode, files=files)
        assert again["changed"] is False and again["diff"] == [] and systemctl.changes() == []
    assert tree(tmp_path) == found


@pytest.mark.parametrize(("changed_file", "enabled", "active", "expected"), [
    (None, True, True, []),
    (None, True, False, [f"enable --now {TIMER}"]),
    (None, False, True, [f"enable --now {TIMER}"]),
    ("check.py", True, True, []),  # not a unit file: systemd need not reload
    (TIMER, True, True, ["daemon-reload"]),
    ("sshca-check.service", False, False, ["daemon-reload", f"enable --now {TIMER}"]),
])
def test_daemon_reload_only_when_a_unit_file_changed_and_enable_only_when_needed(
        tmp_path, units, changed_file, enabled, active, expected):
    files = check_files(tmp_path, units)
    check_task(FakeSystemctl(units / TIMER), files=files)
    for entry in files:
        if Path(entry["path"]).name == changed_file:
            entry["content"] += "# changed\n"
    systemctl = FakeSystemctl(units / TIMER, enabled=enabled, active=active)
    result = check_task(systemctl, files=files)
    assert systemctl.changes() == expected
    assert result["results"][-1]["action"] == ("enable" if "enable --now " + TIMER in expected else "unchanged")
    assert result["changed"] is bool(changed_file or expected)


def test_a_timer_turned_off_is_disabled_before_its_files_are_removed(tmp_path, units):
    check_task(FakeSystemctl(units / TIMER), files=check_files(tmp_path, units))
    removals = [f["path"] for f in check_files(tmp_path, units)]
    systemctl = FakeSystemctl(units / TIMER, enabled=True, active=True)
    predicted = check_task(systemctl, check_mode=True, enabled=False, remove=removals)
    assert systemctl.changes() == [] and (units / TIMER).exists()
    assert [r["action"] for r in predicted["results"]] == ["disable", "remove", "remove", "remove"]
    applied = check_task(systemctl, enabled=False, remove=removals)
    assert systemctl.changes() == [f"disable --now {TIMER}"] and systemctl.unit_present_at_disable == [True]
    assert applied["results"] == predicted["results"] and not (units / TIMER).exists()
    systemctl.calls = []
    again = check_task(systemctl, enabled=False, remove=removals)  # systemd no longer knows it
    assert again["changed"] is False and systemctl.changes() == []
    # A host without systemctl has no timer to stop.
    assert check_task(None, enabled=False, remove=removals)["changed"] is False


@pytest.mark.parametrize(("failing", "expected"), [
    ("enable", f"timer.name: {TIMER}: systemctl enable --now {TIMER} failed: Failed to enable unit: "
               f"Unit file {TIMER} is masked."),
    ("daemon-reload", f"timer.name: {TIMER}: systemctl daemon-reload failed: Failed to enable unit"),
])
def test_a_failing_systemctl_is_one_line_naming_the_timer_and_its_last_error_line(tmp_path, units, failing, expected):
    with pytest.raises(TrustFilesError) as caught:
        check_task(FakeSystemctl(units / TIMER, failing=failing), files=check_files(tmp_path, units))
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def test_a_failing_disable_stops_the_call_before_anything_is_removed(tmp_path, units):
    check_task(FakeSystemctl(units / TIMER), files=check_files(tmp_path, units))
    systemctl = FakeSystemctl(units / TIMER, enabled=True, active=True, failing="disable")
    with pytest.raises(TrustFilesError, match=f"^timer.name: {TIMER}: systemctl disable --now {TIMER} failed: "):
        check_task(systemctl, enabled=False, remove=[str(units / TIMER)])
    assert (units / TIMER).exists()
