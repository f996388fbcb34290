"""labctl's emulator commands: up, env, status, stop, down (added to labkit/cli.py's parser)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import Client, EmulatorError, down, stop, up
from .store import DEFAULT_STATE_DIR

ERRORS = (EmulatorError,)


def cmd_up(args: argparse.Namespace) -> int:
    client = up(args.state_dir, args.port)
    print(f"emulator running at {client.base_url} (pid {client.pid}, state {client.state_dir})")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    if not stop(args.state_dir):
        print("labctl: the emulator was not running", file=sys.stderr)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    removed = down(args.state_dir)
    print(f"emulator stopped; removed {len(removed)} lab host(s){': ' + ' '.join(removed) if removed else ''}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = Client(args.state_dir)
    if not (client.pid and client.healthy()):
        print(f"emulator: stopped (state {client.state_dir})")
        return 3
    state = client.state()
    print(f"emulator: running at {client.base_url} (pid {client.pid}, state {client.state_dir})")
    print(f"resources: {len(state['resources'])}")
    for resource in state["resources"]:
        print(f"  {resource['provisioningState'] or '-':<10} {resource['id']}")
    lab_hosts = client.lab_hosts()
    print(f"lab hosts: {len(lab_hosts)}")
    for host in lab_hosts:
        print(f"  {host.name}\t{host.address}\t{host.admin_user}\t{host.hostname}\t{host.kind}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    client = Client(args.state_dir)
    if not (client.state_dir / "port").exists():
        print("labctl: the emulator has never run here; start it with `labctl up`", file=sys.stderr)
        return 1
    if not (client.pid and client.healthy()):
        print("labctl: warning: the emulator is not running (`labctl up`)", file=sys.stderr)
    for name, value in client.env().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def add_commands(sub) -> None:
    def command(name: str, func, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="emulator state directory")
        parser.set_defaults(func=func)
        return parser

    command("up", cmd_up, "start the Azure emulator in the background and wait until it answers").add_argument(
        "--port", type=int, help="port on 127.0.0.1 (default: the last one used, else any free one)")
    command("env", cmd_env, "print export lines for Azure SDK clients")
    command("status", cmd_status, "emulator process, resources and lab hosts")
    command("stop", cmd_stop, "stop the emulator process; its resources and lab hosts stay")
    command("down", cmd_down, "stop the emulator, remove its lab hosts, forget its resources")
