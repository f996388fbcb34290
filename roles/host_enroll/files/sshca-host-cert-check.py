# Managed by sshca.azure host_enroll. Do not edit.
#
# Reads the host certificates sshd serves (the paths given as arguments) with the host's own
# `ssh-keygen -L`, and reports each: one journal line (priority info, warning when less than a third
# of its life is left, err when expired, not yet valid or unreadable) and a status file for machines.
# It only reads and reports: it never signs anything, since the host CA key never sits on a host.
# Renewal runs from the controller (playbooks/renew.yml). Exits 1 when any certificate is unusable.
import calendar
import json
import os
import subprocess
import sys
import time

STATUS_FILE = "/var/lib/sshca/host-cert-status.json"
# sd-daemon(3) priority prefixes, which systemd reads from a service's output.
PRIORITY = {"ok": 6, "renewal-due": 4, "expired": 3, "not-yet-valid": 3, "unreadable": 3}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def utc(text):
    return calendar.timegm(time.strptime(text, TIME_FORMAT))


def iso(seconds):
    return time.strftime(TIME_FORMAT + "Z", time.gmtime(seconds))


def check(path, now):
    """The status of one certificate, as ssh-keygen -L reads it (times printed in UTC)."""
    status = {"path": path}
    proc = subprocess.run(["ssh-keygen", "-L", "-f", path], capture_output=True, text=True, check=False,
                          env=dict(os.environ, TZ="UTC", LC_ALL="C"))
    fields = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.strip().partition(": ")
        if sep:
            fields.setdefault(name, value.strip())
    valid = fields.get("Valid", "").split()
    if proc.returncode != 0 or "Serial" not in fields or not valid:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return dict(status, state="unreadable", error=lines[-1] if lines else "no output")
    # "forever", "from A to B", "after A" or "before B"
    after = utc(valid[1]) if valid[0] in ("from", "after") else 0
    before = utc(valid[-1]) if valid[0] in ("from", "before") else None
    status.update(serial=int(fields["Serial"]), key_id=fields.get("Key ID", "").strip('"'),
                  valid_after=iso(after), valid_before=iso(before) if before is not None else "forever")
    if before is None:
        return dict(status, seconds_left=None, state="ok")
    left = before - now
    status["seconds_left"] = max(0, left)
    if now < after:
        status["state"] = "not-yet-valid"
    elif left <= 0:
        status["state"] = "expired"
    else:
        status["state"] = "renewal-due" if left * 3 < before - after else "ok"
    return status


def describe(status):
    if status["state"] == "unreadable":
        return f"host certificate {status['path']} is unreadable ({status['error']})"
    line = (f"host certificate {status['path']} (serial {status['serial']}, key id {status['key_id']}) "
            f"{status['state']}, valid {status['valid_after']} to {status['valid_before']}")
    if status["seconds_left"] is not None:
        line += f", {status['seconds_left']} s left"
    if status["state"] != "ok":
        line += "; renew it from the controller (playbooks/renew.yml)"
    return line


def main(paths):
    now = int(time.time())
    found = [check(path, now) for path in paths]
    for status in found:
        print(f"<{PRIORITY[status['state']]}>{describe(status)}", flush=True)
    worst = max([s["state"] for s in found] or ["ok"], key=lambda state: (-PRIORITY[state], state))
    report = {"checked_at": iso(now), "state": worst, "certificates": found}
    os.makedirs(os.path.dirname(STATUS_FILE), exist_ok=True)
    scratch = STATUS_FILE + ".tmp"
    with open(scratch, "w") as stream:
        json.dump(report, stream, indent=2, sort_keys=True)
        stream.write("\n")
        stream.flush()
        os.fsync(stream.fileno())
    os.chmod(scratch, 0o644)
    os.replace(scratch, STATUS_FILE)
    return 1 if PRIORITY[worst] <= 3 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
