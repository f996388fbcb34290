"""`make demo` keeps its promises: tests/lab/demo.py run in a fresh folder, every outcome judged by the real
commands it ran (real sshd refusing and accepting logins, ssh-keyscan's serials, the emulator's VMs)."""

from __future__ import annotations

import io
import re

import pytest

import demo
from labkit import emulator

pytestmark = pytest.mark.lab


def test_the_demo_shows_every_step_of_the_day_to_day_loop(tmp_path):
    out = io.StringIO()
    try:
        outcomes = demo.run_demo(tmp_path / "demo", out)
    finally:
        emulator.down(tmp_path / "demo" / "emulator")
    shown = out.getvalue()
    assert outcomes.playbooks.keys() == {"enroll", "user_cert-alice", "user_cert-bob", "revoke", "renew",
                                         "decommission", "status"}, shown[-3000:]
    broken = [promise for promise, held in demo.expected(outcomes).items() if not held]
    assert broken == [], shown[-4000:]
    # What the reader sees: each step's command and sshd's own words.
    assert len(re.findall(r"^    \$ ansible-playbook .*playbooks/\w+\.yml -e @", shown, re.M)) == 7
    assert f"$ ssh -F {tmp_path / 'demo' / 'people' / 'alice' / 'ssh_config'} {demo.DB}" in shown
    assert "exit 255: " in shown and "Permission denied (publickey)" in shown
