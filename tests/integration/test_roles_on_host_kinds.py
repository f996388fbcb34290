"""host_enroll and key_lockout, then renewal and revocation, on the three kinds of lab host, judged
by real sshd and real logins.

bookworm/service stands in for Ubuntu 22.04 (OpenSSH 9.2, ssh.service); trixie/service runs
OpenSSH 10.0 the same way; trixie/socket starts sshd as Ubuntu 24.04 does, from ssh.socket. None
of them is Ubuntu: tests/lab/README.md says how they differ. Each test drives one mixed fleet, a
host of every kind, through one ansible-playbook run, as a fleet of 22.04 and 24.04 VMs would be.

On the socket host two ways Ubuntu 24.04 hosts are known to lose SSH after configuration tools
ran are tried against the roles: "listening but refusing after reload", and "socket unit changed,
no open socket file descriptor left" (systemd's words; with some addresses still open it says
"some socket file descriptors have not been opened yet").
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_enroll_roles import host_keys, login, run_playbook, served_serials, user_cert

from conftest import collection_env, make_keypair

pytestmark = pytest.mark.lab

KINDS = [("bookworm", "service"), ("trixie", "service"), ("trixie", "socket")]


def systemctl_show(host, unit: str, *properties: str) -> dict[str, list[str]]:
    out = host.exec("systemctl", "show", unit, *(f"--property={p}" for p in properties)).stdout
    shown: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, value = line.split("=", 1) if "=" in line else (line, "")
        shown.setdefault(key, []).append(value)
    return shown


def journal(host, unit: str) -> str:
    return host.exec("journalctl", "--no-pager", "-o", "cat", "-u", unit).stdout


def assert_socket_serves_sshd(host) -> None:
    """sshd still starts the Ubuntu 24.04 way, ssh.socket listens on this host's address, and a
    fresh connection gets sshd's banner."""
    enabled = host.exec("systemctl", "is-enabled", "ssh.socket", "ssh.service", check=False).stdout.split()
    assert enabled == ["enabled", "disabled"]
    unit = systemctl_show(host, "ssh.socket", "Listen", "ActiveState", "NRefused")
    assert unit["Listen"] == [f"{host.address}:22 (Stream)"]
    assert unit["ActiveState"] == ["active"]
    assert unit["NRefused"] == ["0"]
    with socket.create_connection((host.address, 22), timeout=10) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0-OpenSSH_")
    # The first failure mode: sshd killed by a reload, while systemd still holds the socket.
    sshd_log = journal(host, "ssh.service")
    assert "Cannot bind any address" not in sshd_log
    assert "Reload failed" not in sshd_log


def test_enroll_locks_every_host_kind_to_certificates(lab_host_factory, tmp_path):
    """enroll.yml (host_enroll, then key_lockout) on a fresh host of each kind; then, on the same
    fleet, a forced renew.yml and a revoke.yml of a user certificate."""
    work = tmp_path / "sshca"
    bootstrap = make_keypair(tmp_path, "bootstrap", "rsa")
    fleet = {kind: lab_host_factory([bootstrap.public_text], suite=kind[0], ssh_activation=kind[1])
             for kind in KINDS}
    extra = {"sshca_work_dir": str(work), "sshca_bootstrap_key_path": str(bootstrap.private),
             "sshca_access_rules": [{"principal": "grp:ops", "accounts": ["azureuser"], "host_tags": {}}],
             "sshca_hosts": [{"name": host.name, "address": host.address, "host_keys": host_keys(host)}
                             for host in fleet.values()]}

    apply = run_playbook("enroll.yml", extra, tmp_path)
    assert apply.rc == 0, apply.output[-4000:]

    known_hosts = work / "known_hosts"
    admin_key = work / "admin" / "id_ed25519"
    for host in fleet.values():
        assert apply.changed(host.name) > 0, host.kind
        refused = login(host, bootstrap.private)
        assert refused.returncode == 255 and "Permission denied (publickey)." in refused.stderr, host.kind
        admin = login(host, admin_key, "sudo", "-n", "id", "-un", known_hosts=known_hosts)
        assert (admin.returncode, admin.stdout.strip()) == (0, "root"), f"{host.kind}: {admin.stderr}"
        assert "authorizedkeysfile none" in host.exec("sshd", "-T").stdout.splitlines(), host.kind

    socket_host = fleet["trixie", "socket"]
    assert_socket_serves_sshd(socket_host)
    # The second failure mode: anything that reloads systemd (a package upgrade does) makes the
    # generator derive ssh.socket again from sshd_config; the roles left nothing for it to change.
    socket_host.exec("systemctl", "daemon-reload")
    assert "configuration has changed while unit has been running" not in journal(socket_host, "ssh.socket")
    assert_socket_serves_sshd(socket_host)
    # With sshd stopped, the socket starts it again, with the lockout, for the next login.
    socket_host.exec("systemctl", "stop", "ssh.service")
    again = login(socket_host, admin_key, "true", known_hosts=known_hosts)
    assert again.returncode == 0, again.stderr
    assert login(socket_host, bootstrap.private).returncode == 255

    renew_and_revoke_on_every_kind(fleet, work, tmp_path)


def renew_and_revoke_on_every_kind(fleet: dict, work: Path, tmp_path: Path) -> None:
    """Day 2 on the enrolled fleet. renew.yml makes sshd serve new host certificates (a restart
    under socket activation, where a reload kills sshd); revoke.yml pushes a KRL that real sshd
    enforces against a user certificate it admitted before."""
    known_hosts = work / "known_hosts"
    admin_key = work / "admin" / "id_ed25519"
    alice = user_cert(work, "alice", ["grp:ops"])
    alice_serial = re.search(r"Serial: (\d+)", subprocess.run(
        ["ssh-keygen", "-L", "-f", f"{alice}-cert.pub"], capture_output=True, text=True, check=True).stdout).group(1)
    served = {}
    for host in fleet.values():
        admitted = login(host, alice, known_hosts=known_hosts)
        assert admitted.returncode == 0, f"{host.kind}: {admitted.stderr}"
        served[host.kind] = served_serials(host.address)

    # The hosts enrolled from this work folder, every certificate re-signed.
    renew = run_playbook("renew.yml", {"sshca_work_dir": str(work), "sshca_renew_force": True}, tmp_path)
    assert renew.rc == 0, renew.output[-4000:]
    for host in fleet.values():
        assert renew.changed(host.name) > 0, host.kind
        now = served_serials(host.address)
        assert now and now.isdisjoint(served[host.kind]), f"{host.kind}: served {now}, before {served[host.kind]}"
        admin = login(host, admin_key, known_hosts=known_hosts)
        assert admin.returncode == 0, f"{host.kind}: {admin.stderr}"
    assert_socket_serves_sshd(fleet["trixie", "socket"])
    # Renewed certificates are not due: a run without force changes nothing on any host.
    again = run_playbook("renew.yml", {"sshca_work_dir": str(work)}, tmp_path)
    assert again.rc == 0, again.output[-4000:]
    changed = {host.kind: again.changed(host.name) for host in fleet.values()}
    assert set(changed.values()) == {0}, changed

    revocation = {"sshca_work_dir": str(work),
                  "sshca_revoke": [{"serial": int(alice_serial), "ca": "user", "reason": "test: alice's laptop"}]}
    preview = run_playbook("revoke.yml", revocation, tmp_path, check=True)
    assert preview.rc == 0, preview.output[-4000:]
    assert all(login(host, alice, known_hosts=known_hosts).returncode == 0 for host in fleet.values())
    revoke = run_playbook("revoke.yml", revocation, tmp_path)
    assert revoke.rc == 0, revoke.output[-4000:]
    rerun = run_playbook("revoke.yml", revocation, tmp_path)
    assert rerun.rc == 0, rerun.output[-4000:]
    changed = {host.kind: rerun.changed(host.name) for host in fleet.values()}
    assert set(changed.values()) == {0}, changed
    for host in fleet.values():
        refused = login(host, alice, known_hosts=known_hosts)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, f"{host.kind}: {refused.stderr}"
        admin = login(host, admin_key, known_hosts=known_hosts)
        assert admin.returncode == 0, f"{host.kind}: {admin.stderr}"
    assert_socket_serves_sshd(fleet["trixie", "socket"])


LOCKOUT_PLAY = """\
- hosts: all
  gather_facts: false
  become: true
  pre_tasks:
    - name: Stop ssh.service, leaving ssh.socket alone to listen
      ansible.builtin.command: systemctl stop ssh.service
      when: sshd_before == 'inactive'
      changed_when: true
    - name: Read the state of ssh.service the role will find
      ansible.builtin.command: systemctl is-active ssh.service
      register: sshd_state
      changed_when: false
      failed_when: false
    - name: Check it is what this host is here for
      ansible.builtin.assert:
        that: sshd_state.stdout == sshd_before
  roles:
    - role: sshca.azure.key_lockout
      key_lockout_certificate_key: {certificate_key}
      key_lockout_bootstrap_key: {bootstrap_key}
      # Long enough that a loaded machine does not see the timer fire before the proofs.
      key_lockout_rollback_seconds: 60
"""

# (suite, ssh activation, state of ssh.service when key_lockout starts)
ROLLBACK_HOSTS = [("bookworm", "service", "active"), ("trixie", "socket", "active"),
                  ("trixie", "socket", "inactive")]


def test_failed_lockout_rolls_back_and_names_what_was_refused(lab_host_factory, tmp_path):
    """The lockout's proof fails: the hosts trust a user CA the controller's certificate is not
    from. The socket-activated host is tried twice: with ssh.service running, and with it stopped
    when the role starts (only ssh.socket listens, no sshd runs, and the stop removed /run/sshd,
    without which sshd -t fails)."""
    bootstrap = make_keypair(tmp_path, "bootstrap", "rsa")
    admin = make_keypair(tmp_path, "admin")
    other_ca = make_keypair(tmp_path, "other_ca")
    our_ca = make_keypair(tmp_path, "our_ca")
    subprocess.run(["ssh-keygen", "-q", "-s", str(our_ca.private), "-I", "admin", "-n", "sshca-admin",
                    "-V", "-5m:+1h", str(admin.public)], check=True)
    inventory = {}
    fleet = []
    for suite, activation, sshd_before in ROLLBACK_HOSTS:
        host = lab_host_factory([bootstrap.public_text], suite=suite, ssh_activation=activation)
        host.exec("sh", "-c", "mkdir -p /etc/ssh/sshca/principals"
                  " && echo sshca-admin > /etc/ssh/sshca/principals/azureuser"
                  f" && echo '{other_ca.public_text.strip()}' > /etc/ssh/sshca/user_ca.pub"
                  " && printf 'TrustedUserCAKeys /etc/ssh/sshca/user_ca.pub\\nAuthorizedPrincipalsFile"
                  " /etc/ssh/sshca/principals/%u\\n' > /etc/ssh/sshd_config.d/10-sshca-enroll.conf"
                  " && systemctl try-restart ssh.service")
        inventory[host.name] = {
            "ansible_host": host.address, "ansible_user": "azureuser", "sshd_before": sshd_before,
            "ansible_ssh_private_key_file": str(admin.private),
            "ansible_ssh_common_args": f"-o IdentitiesOnly=yes -o IdentityFile={bootstrap.private}"
                                       " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "auto_silent"}
        fleet.append((host, sshd_before))
    (tmp_path / "inventory.yml").write_text(json.dumps({"all": {"hosts": inventory}}))
    playbook = tmp_path / "lockout.yml"
    playbook.write_text(LOCKOUT_PLAY.replace("{certificate_key}", str(admin.private))
                        .replace("{bootstrap_key}", str(bootstrap.private)))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i",
                           str(tmp_path / "inventory.yml"), str(playbook)], capture_output=True, text=True,
                          env=collection_env(), cwd=tmp_path, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0

    for host, sshd_before in fleet:
        case = f"{host.kind}, ssh.service {sshd_before}"
        address = re.escape(host.address)
        assert re.search(rf"the certificate login as azureuser@{address} was refused \(azureuser@{address}: "
                         r"Permission denied \(publickey\)\.\); rolled back", out), f"{case}:\n{out[-4000:]}"
        assert login(host, bootstrap.private).returncode == 0, case
        assert host.exec("test", "-e", "/etc/ssh/sshd_config.d/10-sshca-lockout.conf",
                         check=False).returncode == 1, case
        assert "sshca-lockout-rollback" not in host.exec("systemctl", "list-timers", "--all",
                                                         "--no-legend").stdout, case
        if host.ssh_activation == "socket":
            assert_socket_serves_sshd(host)


PROOF_PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Only the lockout's proof, against the host as it stands
      ansible.builtin.include_role:
        name: sshca.azure.key_lockout
        tasks_from: prove.yml
      vars:
        key_lockout_certificate_key: {certificate_key}
        key_lockout_bootstrap_key: {bootstrap_key}
"""


def test_lockout_proof_refuses_a_host_that_still_takes_a_key_or_a_password(lab_host_factory, tmp_path):
    """The proof that confirms a lockout, attacked on its own: real sshd admitting the certificate
    is not enough while it still takes the bootstrap key, or still offers password logins. Only
    once both are closed does the one proving connection pass."""
    bootstrap = make_keypair(tmp_path, "bootstrap", "rsa")
    admin = make_keypair(tmp_path, "admin")
    ca = make_keypair(tmp_path, "ca")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca.private), "-I", "admin", "-n", "azureuser",
                    "-V", "-5m:+1h", str(admin.public)], check=True)
    host = lab_host_factory([bootstrap.public_text])
    host.exec("sh", "-c", f"echo '{ca.public_text.strip()}' > /etc/ssh/proof_ca.pub"
              " && echo 'TrustedUserCAKeys /etc/ssh/proof_ca.pub' > /etc/ssh/sshd_config.d/20-proof-ca.conf"
              " && systemctl reload ssh.service")
    (tmp_path / "inventory.yml").write_text(json.dumps({"all": {"hosts": {host.name: {
        "ansible_host": host.address, "ansible_connection": "local"}}}}))
    playbook = tmp_path / "prove.yml"
    playbook.write_text(PROOF_PLAY.replace("{certificate_key}", str(admin.private))
                        .replace("{bootstrap_key}", str(bootstrap.private)))
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(bootstrap.public)], capture_output=True, text=True,
                                 check=True).stdout.split()[1]

    def prove() -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i",
                               str(tmp_path / "inventory.yml"), str(playbook)], capture_output=True, text=True,
                              env=collection_env(), cwd=tmp_path, timeout=300, check=False)

    # Keys still open: sshd takes the bootstrap key, offered first, and never sees the certificate.
    run = prove()
    assert run.returncode != 0
    accepted = rf"\({re.escape(str(bootstrap.private))} RSA {re.escape(fingerprint)}.*\)"
    assert re.search(rf"key_lockout on {host.name}: a key was accepted without a certificate {accepted}: key logins"
                     " are still open", run.stdout), run.stdout[-3000:]

    # Keys closed, but passwords on (in a drop-in that sorts first, as a cloud image's might).
    host.exec("sh", "-c", "printf 'AuthorizedKeysFile none\\nPasswordAuthentication yes\\n'"
              " > /etc/ssh/sshd_config.d/01-passwords.conf && systemctl reload ssh.service")
    run = prove()
    assert run.returncode != 0
    assert f"key_lockout on {host.name}: sshd still offers password, not only publickey" in run.stdout, \
        run.stdout[-3000:]

    # Both closed: the bootstrap key refused, then the certificate admitted, in one connection.
    host.exec("sh", "-c", "sed -i 's/^PasswordAuthentication yes/PasswordAuthentication no/'"
              " /etc/ssh/sshd_config.d/01-passwords.conf && systemctl reload ssh.service")
    run = prove()
    assert run.returncode == 0, run.stdout[-3000:]
    assert login(host, bootstrap.private).returncode == 255
