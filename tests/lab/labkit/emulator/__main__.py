"""python -m labkit.emulator --state-dir DIR [--port N]: run the emulator in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .server import Emulator
from .store import DEFAULT_STATE_DIR


def main() -> int:
    args = argparse.ArgumentParser(prog="labkit.emulator")
    args.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args.add_argument("--port", type=int)
    options = args.parse_args()
    emulator = Emulator(options.state_dir, options.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"emulator listening on {emulator.base_url}", flush=True)
    try:
        emulator.serve_forever()
    finally:
        (options.state_dir / "pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
