"""labctl: drive the sshca.azure lab (the Azure emulator and test hosts).

  labctl up | env | status | stop | down [--state-dir DIR]   the Azure emulator (labkit/emulator/cli.py)
  labctl host-up NAME --key FILE [--address 127.0.0.N] [--admin-user U] [--hostname H]
                [--suite bookworm|trixie] [--ssh-activation service|socket]
  labctl host-down NAME
  labctl hosts
  labctl image [--suite bookworm|trixie]...                  (default: every suite)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import hosts, image, podman
from labkit.emulator import cli as emulator_cli


def cmd_host_up(args: argparse.Namespace) -> int:
    keys = [Path(k).read_text() for k in args.key]
    host = hosts.start_host(args.name, keys, address=args.address, admin_user=args.admin_user,
                            hostname=args.hostname, suite=args.suite, ssh_activation=args.ssh_activation)
    print(f"{host.name}\t{host.address}\t{host.admin_user}\t{host.hostname}\t{host.kind}")
    return 0


def cmd_host_down(args: argparse.Namespace) -> int:
    for name in args.names:
        if not hosts.stop_host(name):
            print(f"labctl: no lab host named {name}", file=sys.stderr)
    return 0


def cmd_hosts(_args: argparse.Namespace) -> int:
    for host in hosts.list_hosts():
        print(f"{host.name}\t{host.address}\t{host.admin_user}\t{host.hostname}\t{host.kind}\t{host.owner}")
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    for suite in args.suite or image.SUITES:
        print(image.ensure(suite))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="labctl", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    emulator_cli.add_commands(sub)

    up = sub.add_parser("host-up", help="start a test host and wait for its sshd")
    up.add_argument("name")
    up.add_argument("--key", action="append", required=True, help="authorized public key file (repeatable)")
    up.add_argument("--address", help="loopback address 127.0.0.N (default: first free in the pool)")
    up.add_argument("--admin-user", default="azureuser")
    up.add_argument("--hostname")
    up.add_argument("--suite", default=image.DEFAULT_SUITE, help="Debian suite of the image (default: %(default)s)")
    up.add_argument("--ssh-activation", default="service",
                    help="how sshd starts: service (ssh.service) or socket (ssh.socket as on Ubuntu 24.04; trixie)")
    up.set_defaults(func=cmd_host_up)

    down = sub.add_parser("host-down", help="remove test hosts")
    down.add_argument("names", nargs="+")
    down.set_defaults(func=cmd_host_down)

    sub.add_parser("hosts", help="list test hosts: name, address, admin user, hostname, suite/activation, owner"
                   ).set_defaults(func=cmd_hosts)

    img = sub.add_parser("image", help="build host images whose recipe changed, one at a time; print their tags")
    img.add_argument("--suite", action="append", help="a Debian suite (repeatable; default: every suite the lab uses)")
    img.set_defaults(func=cmd_image)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (hosts.LabError, podman.PodmanError, *emulator_cli.ERRORS, OSError) as err:
        print(f"labctl: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
