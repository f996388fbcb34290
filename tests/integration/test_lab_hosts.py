"""The lab's test hosts behave like the VMs the collection will manage."""

from __future__ import annotations

import subprocess

import pytest

from labkit import cli, hosts

pytestmark = pytest.mark.lab


def host_key_fingerprint(address: str) -> str:
    scan = subprocess.run(["ssh-keyscan", "-t", "ed25519", address], capture_output=True, text=True, check=True)
    return subprocess.run(["ssh-keygen", "-lf", "-"], input=scan.stdout, capture_output=True, text=True,
                          check=True).stdout.split()[1]


def test_bootstrap_key_logs_in_with_passwordless_sudo(lab_host, keypair):
    login = lab_host.ssh(keypair.private, "hostname; id -un; sudo -n id -un")
    assert login.returncode == 0, login.stderr
    assert login.stdout.split() == [lab_host.hostname, "azureuser", "root"]


def test_another_key_is_refused(lab_host, tmp_path):
    from conftest import make_keypair

    stranger = make_keypair(tmp_path, "stranger")
    login = lab_host.ssh(stranger.private, "true")
    assert login.returncode == 255
    assert "Permission denied (publickey)" in login.stderr


def test_sshd_listens_only_on_its_own_address_and_survives_restart(lab_host, keypair):
    effective = lab_host.exec("sshd", "-T").stdout
    assert [line for line in effective.splitlines() if line.startswith("listenaddress")] == [
        f"listenaddress {lab_host.address}:22"
    ]
    assert not hosts._port_open("127.0.0.1")
    before = host_key_fingerprint(lab_host.address)

    restart = lab_host.ssh(keypair.private, "sudo systemctl restart ssh")
    assert restart.returncode == 0, restart.stderr
    hosts.wait_for_ssh(lab_host.address, timeout=30)
    assert host_key_fingerprint(lab_host.address) == before
    assert lab_host.ssh(keypair.private, "true").returncode == 0


def test_socket_activated_host_starts_sshd_the_way_ubuntu_2404_does(lab_host_factory, keypair, capsys):
    host = lab_host_factory([keypair.public_text], suite="trixie", ssh_activation="socket")
    assert cli.main(["hosts"]) == 0
    assert f"{host.name}\t{host.address}\tazureuser\t{host.hostname}\ttrixie/socket\tpytest" in capsys.readouterr().out
    assert host.exec("systemctl", "is-enabled", "ssh.socket", "ssh.service", check=False).stdout.split() == [
        "enabled", "disabled"]
    # Built at boot from sshd_config's ListenAddress, as Ubuntu's sshd-socket-generator does.
    dropin = host.exec("cat", "/run/systemd/generator/ssh.socket.d/addresses.conf").stdout
    assert f"\nListenStream=\nListenStream={host.address}:22\nFreeBind=yes\n" in dropin
    shown = host.exec("systemctl", "show", "ssh.socket", "--property=Listen", "--property=FreeBind").stdout
    assert shown.splitlines() == ["FreeBind=yes", f"Listen={host.address}:22 (Stream)"]
    assert not hosts._port_open("127.0.0.1")
    # No sshd runs until a connection comes; the connection starts it.
    host.exec("systemctl", "stop", "ssh.service")
    assert host.exec("pgrep", "-x", "sshd", check=False).returncode == 1
    login = host.ssh(keypair.private, "systemctl is-active ssh.service")
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "active"
    assert host.exec("sshd", "-V", check=False).stderr.startswith("OpenSSH_10.0")
    # systemd 257's extra AF_UNIX listener for sshd is not there (Ubuntu 24.04's 255 has none).
    units = host.exec("systemctl", "list-units", "--all", "--no-legend", "--plain", "*ssh*").stdout
    assert "sshd-unix-local" not in units and "sshd-vsock" not in units
    assert host.exec("test", "-e", "/run/ssh-unix-local/socket", check=False).returncode == 1


def test_two_hosts_run_side_by_side(lab_host_factory, keypair):
    first = lab_host_factory([keypair.public_text], hostname="alpha")
    second = lab_host_factory([keypair.public_text], hostname="beta")
    assert first.address != second.address
    assert host_key_fingerprint(first.address) != host_key_fingerprint(second.address)
    assert first.ssh(keypair.private, "hostname").stdout.strip() == "alpha"
    assert second.ssh(keypair.private, "hostname").stdout.strip() == "beta"


def test_stopping_leaves_no_container(lab_host_factory, keypair):
    host = lab_host_factory([keypair.public_text])
    assert hosts.stop_host(host.name)
    left = subprocess.run(["podman", "ps", "-a", "--filter", f"name={host.container}", "--format", "{{.Names}}"],
                          capture_output=True, text=True, check=True).stdout
    assert left.strip() == ""
    assert host.name not in [h.name for h in hosts.list_hosts()]
    assert not hosts._port_open(host.address)


def test_leftover_container_of_a_crashed_run_is_replaced(lab_host_factory, keypair, tmp_path):
    from conftest import make_keypair

    crashed = lab_host_factory([keypair.public_text])
    newer = make_keypair(tmp_path, "newer")
    again = lab_host_factory([newer.public_text], name=crashed.name)
    assert [h.name for h in hosts.list_hosts()].count(crashed.name) == 1
    assert again.ssh(newer.private, "true").returncode == 0
    assert again.ssh(keypair.private, "true").returncode == 255


def test_an_address_held_by_another_host_is_refused(lab_host_factory, keypair):
    first = lab_host_factory([keypair.public_text])
    with pytest.raises(hosts.LabError, match=f"address {first.address} is already used by lab host {first.name}"):
        lab_host_factory([keypair.public_text], address=first.address)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad_Name"}, "host name 'Bad_Name'"),
        ({"address": "10.0.0.4"}, "address 10.0.0.4 must be a loopback address"),
        ({"address": "127.0.0.1"}, "address 127.0.0.1 must be a loopback address"),
        ({"address": "not-an-ip"}, "address 'not-an-ip' is not an IPv4 address"),
        ({"admin_user": "Root User"}, "admin user 'Root User'"),
        ({"suite": "focal"}, "suite 'focal' is not one of bookworm, trixie"),
        ({"suite": "trixie", "ssh_activation": "inetd"}, "ssh activation 'inetd' is not one of service, socket"),
        ({"suite": "bookworm", "ssh_activation": "socket"},
         "ssh activation 'socket' needs suite trixie: bookworm's sshd cannot take its socket from systemd"),
    ],
)
def test_bad_host_settings_are_refused_before_anything_starts(kwargs, message, keypair):
    name = kwargs.pop("name", "never-started")
    with pytest.raises(hosts.LabError, match=message):
        hosts.start_host(name, [keypair.public_text], **kwargs)
    assert name not in [h.name for h in hosts.list_hosts()]
