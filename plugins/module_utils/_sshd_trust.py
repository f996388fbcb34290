# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files a host's sshd reads for certificate logins, written in one pass (sshd_cert_trust).

Runs on the managed host's own python3, so it uses the standard library only. A plan is worked out
first (what each path holds and what it should hold); check mode stops there. Every write goes to a
temporary file in the target folder, is fsynced, given its owner and mode, and renamed over the
target, so sshd never reads a half-written file.

Extra files (the host certificate expiry check's script and systemd units) go through the same
writes, and a systemd timer is then enabled (or, before its files are removed, disabled) with
systemctl, which the module passes in as a runner.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import stat
import tempfile

from ansible_collections.sshca.azure.plugins.module_utils._runner import InputError

FILE_MODE = 0o644
COMMAND_MODE = 0o755
DIR_MODE = 0o755
NOT_SIGNED_YET = b"(a new certificate, signed when not in check mode)\n"
SYSTEMD_UNIT_FOLDERS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
TIMER_NAME = re.compile(r"[A-Za-z0-9_.:\\@-]+\.timer")
OCTAL_MODE = re.compile(r"[0-7]{3,4}")


class TrustFilesError(InputError):
    """Bad input or a failed write; one line naming the input or path."""


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TrustFilesError("%s: cannot be read: %s" % (path, exc.strerror)) from None


def _attributes_differ(path, mode, owner):
    info = os.lstat(path)
    if stat.S_IMODE(info.st_mode) != mode:
        return True
    return owner is not None and (info.st_uid, info.st_gid) != owner


def _text(data):
    return data.decode("utf-8", "replace") if data is not None else ""


class TrustFiles:
    """The plan for one call: folders, files and removals, each reported as one result."""

    def __init__(self, owner=None, make_empty_krl=None):
        # owner: (uid, gid) every folder and file gets, None to leave it (unit tests without root).
        # make_empty_krl(path): writes an empty KRL at path (the module runs ssh-keygen -k).
        self.owner = owner
        self.make_empty_krl = make_empty_krl
        self.steps = []  # (kind, path, content or None, mode); a folder's mode None: made if missing, else left

    def directory(self, path):
        self.steps.append(("directory", path, None, DIR_MODE))

    def parent_unless_present(self, path):
        """The folder of path, made (DIR_MODE) when missing; an existing one keeps its owner and mode."""
        folder = os.path.dirname(path)
        if ("directory", folder) not in [step[:2] for step in self.steps]:
            self.steps.append(("directory", folder, None, None))

    def file(self, path, content, mode=FILE_MODE):
        if not isinstance(content, bytes):
            content = content.encode("utf-8")
        self.steps.append(("file", path, content, mode))

    def krl_unless_present(self, path):
        self.steps.append(("krl", path, None, FILE_MODE))

    def exclusive_folder(self, path, files):
        """The folder holds exactly these files ({name: content}); any other file in it is removed."""
        self.directory(path)
        for name, content in sorted(files.items()):
            if not name or "/" in name or name.startswith("."):
                raise TrustFilesError("%s: %r cannot be a principals file name" % (path, name))
            self.file(os.path.join(path, name), content)
        try:
            present = sorted(os.listdir(path))
        except FileNotFoundError:
            present = []
        for name in present:
            stale = os.path.join(path, name)
            if name not in files and os.path.isfile(stale) and not os.path.islink(stale):
                self.remove(stale)

    def remove(self, path):
        self.steps.append(("absent", path, None, None))

    # --- working out what changes --------------------------------------------------------------

    def _pending(self, kind, path, content, mode):
        """The action a step needs ('create', 'update', 'remove' or None) and the diff's before text."""
        if kind == "absent":
            if not os.path.lexists(path):
                return None, ""
            if os.path.isdir(path) and not os.path.islink(path):
                return "remove", "folder %s: %s\n" % (path, ", ".join(sorted(os.listdir(path))) or "empty")
            return "remove", _text(_read(path))
        if kind == "directory":
            if not os.path.lexists(path):
                return "create", ""
            if mode is None and os.path.isdir(path):
                return None, ""  # a system folder (/etc/systemd/system) may be a link; never changed
            if not os.path.isdir(path) or os.path.islink(path):
                raise TrustFilesError("%s: is not a folder" % path)
            return ("update" if _attributes_differ(path, mode, self.owner) else None), ""
        if kind == "krl":
            # revoke.yml owns an existing KRL: never overwritten, whatever it holds.
            return (None if os.path.lexists(path) else "create"), ""
        if os.path.isdir(path):
            raise TrustFilesError("%s: is a folder, not a file" % path)
        before = _read(path)
        if before is None:
            return "create", ""
        if before != content or _attributes_differ(path, mode, self.owner):
            return "update", _text(before)
        return None, _text(before)

    def apply(self, check_mode=False, want_diff=False):
        """Carries out the plan (not in check mode); returns (results, diffs)."""
        results, diffs = [], []
        for kind, path, content, mode in self.steps:
            action, before = self._pending(kind, path, content, mode)
            results.append({"path": path, "kind": kind, "action": action or "unchanged"})
            if action is None:
                continue
            if want_diff:
                after = ("" if kind == "absent" else "(an empty key revocation list)\n" if kind == "krl"
                         else "folder %s\n" % path if kind == "directory" else _text(content))
                diffs.append({"before_header": path if action != "create" else "(absent)",
                              "after_header": path if action != "remove" else "(absent)",
                              "before": before, "after": after})
            if not check_mode:
                self._carry_out(kind, action, path, content, mode)
        return results, diffs

    # --- writing -----------------------------------------------------------------------------------

    def _set_attributes(self, path, mode):
        if self.owner is not None:
            os.chown(path, *self.owner)
        os.chmod(path, mode)

    def _carry_out(self, kind, action, path, content, mode):
        try:
            if kind == "absent":
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            elif kind == "directory":
                if action == "create":
                    os.makedirs(path, mode or DIR_MODE)
                self._set_attributes(path, mode or DIR_MODE)
            else:
                self._atomic_write(path, content, mode, krl=kind == "krl")
        except OSError as exc:
            raise TrustFilesError("%s: cannot be written: %s" % (path, exc.strerror or exc)) from None

    def _atomic_write(self, path, content, mode, krl=False):
        folder = os.path.dirname(path) or "."
        handle, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                if not krl:
                    out.write(content)
                    out.flush()
                    os.fsync(out.fileno())
            if krl:
                self.make_empty_krl(tmp)
            self._set_attributes(tmp, mode)
            os.rename(tmp, path)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise


def principals_file(account, ca, principals):
    """The principals file of one account for one signing CA, one principal a line."""
    if isinstance(principals, str) or not all(isinstance(p, str) and p.strip() and "\n" not in p
                                              for p in principals or []):
        raise TrustFilesError("principals: %s CA, account %r: give a list of principals, one name each" % (ca, account))
    return ("# Managed by sshca.azure host_enroll: principals that may log in as %s with a certificate from the"
            " %s CA.\n%s\n" % (account, ca, "\n".join(principals)))


def plan_trust_files(params, check_mode=False, owner=None, make_empty_krl=None):
    """The module's options as a plan, in the order sshd needs them; bad input fails before any write."""
    plan = TrustFiles(owner=owner, make_empty_krl=make_empty_krl)
    for path, text in sorted((params.get("host_certificates") or {}).items()):
        text = (text or "").strip()
        if not os.path.isabs(path) or "\n" in text or not (text or check_mode):
            raise TrustFilesError("host_certificates: %r needs an absolute path and one certificate line" % path)
        # In check mode a certificate not signed yet is empty: it would be written, whatever it will hold.
        plan.file(path, text + "\n" if text else NOT_SIGNED_YET)
    if params.get("trusted_ca_keys_path"):
        plan.directory(os.path.dirname(params["trusted_ca_keys_path"]))
        plan.file(params["trusted_ca_keys_path"], params.get("trusted_ca_keys") or "")
    if params.get("principals_command_path"):
        plan.directory(os.path.dirname(params["principals_command_path"]))
        plan.file(params["principals_command_path"], params.get("principals_command") or "", COMMAND_MODE)
    for folder in params.get("principals") or []:
        plan.exclusive_folder(folder["folder"], {
            account: principals_file(account, folder["ca"], principals)
            for account, principals in (folder.get("accounts") or {}).items()})
    if params.get("revoked_keys_path"):
        plan.krl_unless_present(params["revoked_keys_path"])
    for path, content, mode in extra_files(params.get("files") or []):
        plan.parent_unless_present(path)
        plan.file(path, content, mode)
    for path in params.get("remove") or []:
        plan.remove(path)
    return plan


def extra_files(files):
    """The files option as (path, content, mode) triples; a bad path or mode fails naming files[N]."""
    checked, seen = [], set()
    for index, entry in enumerate(files):
        path, mode = entry.get("path") or "", entry.get("mode", "0644")
        # normpath refuses "..", "//" and a trailing "/": the path written is the path given.
        if not os.path.isabs(path) or os.path.normpath(path) != path or path == "/" or "\n" in path:
            raise TrustFilesError("files[%d].path: %r must be an absolute, normalised path to a file" % (index, path))
        if path in seen:
            raise TrustFilesError("files[%d].path: %r is given twice" % (index, path))
        # A YAML 0644 arrives as the number 420; read as octal text it would be a wrong mode, so only text passes.
        if not isinstance(mode, str) or not OCTAL_MODE.fullmatch(mode):
            raise TrustFilesError("files[%d].mode: %r must be a quoted octal string such as '0644'" % (index, mode))
        seen.add(path)
        checked.append((path, entry.get("content") or "", int(mode, 8)))
    return checked


def _is_unit_file(path):
    return any(path.startswith(folder + "/") for folder in SYSTEMD_UNIT_FOLDERS)


class Timer:
    """A systemd timer kept enabled and active, or disabled and stopped, through systemctl.

    systemctl(args) runs systemctl with args and returns (rc, stdout, stderr); None when the host has no
    systemctl. Only is-enabled and is-active run in check mode.
    """

    def __init__(self, name, enabled, systemctl):
        if not isinstance(name, str) or not TIMER_NAME.fullmatch(name):
            raise TrustFilesError("timer.name: %r must be a systemd timer unit name such as 'daily-check.timer'" % name)
        if enabled and not systemctl:
            raise TrustFilesError("timer.name: %s: systemctl is not on this host" % name)
        self.name, self.enabled, self.systemctl = name, enabled, systemctl

    def _run(self, *args):
        rc, _out, err = self.systemctl(list(args))
        if rc != 0:
            last = (err or "").strip().splitlines()
            raise TrustFilesError("timer.name: %s: systemctl %s failed: %s" % (
                self.name, " ".join(args), last[-1] if last else "exit code %d" % rc))

    def _state(self):
        """(enabled, active) as systemctl reports them; a unit systemctl does not know is neither."""
        return tuple(self.systemctl([query, "--quiet", self.name])[0] == 0 for query in ("is-enabled", "is-active"))

    def _result(self, action, state, want_diff):
        """The timer's result and, when it changes, its diff; state is (enabled, active) or a text."""
        diff = []
        if action != "unchanged" and want_diff:
            before = state if isinstance(state, str) else "%s, %s\n" % (
                "enabled" if state[0] else "disabled", "active" if state[1] else "inactive")
            diff = [{"before_header": "timer " + self.name, "after_header": "timer " + self.name, "before": before,
                     "after": "enabled, active\n" if self.enabled else "disabled, inactive\n"}]
        return {"path": self.name, "kind": "timer", "action": action}, diff

    def stop(self, check_mode, want_diff):
        """Disables and stops the timer if systemctl knows it and it is enabled or active (before its files go)."""
        state = self._state() if self.systemctl else (False, False)
        if not any(state):
            return self._result("unchanged", state, want_diff)
        if not check_mode:
            self._run("disable", "--now", self.name)
        return self._result("disable", state, want_diff)

    def start(self, file_results, check_mode, want_diff):
        """After the files are written: reloads systemd if a unit file changed, then enables and starts the timer."""
        changed_units = [r for r in file_results if r["kind"] in ("file", "absent") and r["action"] != "unchanged"
                         and _is_unit_file(r["path"])]
        if check_mode and any(r["action"] == "create" and os.path.basename(r["path"]) == self.name
                              for r in changed_units):
            return self._result("enable", "not installed yet\n", want_diff)  # systemctl cannot be asked yet
        if changed_units and not check_mode:
            self._run("daemon-reload")
        state = self._state()
        if all(state):
            return self._result("unchanged", state, want_diff)
        if not check_mode:
            self._run("enable", "--now", self.name)
        return self._result("enable", state, want_diff)


def trust_files_task(params, check_mode, want_diff, owner=None, make_empty_krl=None, systemctl=None):
    """The module's result: changed, one result per folder, file, removal and timer, and the diffs.

    A timer to disable is stopped before any file is removed; one to enable is started after every write.
    """
    plan = plan_trust_files(params, check_mode, owner=owner, make_empty_krl=make_empty_krl)
    timer = Timer(params["timer"].get("name"), params["timer"].get("enabled"), systemctl) \
        if params.get("timer") else None
    results, diffs = [], []
    if timer and not timer.enabled:
        result, diff = timer.stop(check_mode, want_diff)
        results.append(result)
        diffs += diff
    file_results, file_diffs = plan.apply(check_mode=check_mode, want_diff=want_diff)
    results += file_results
    diffs += file_diffs
    if timer and timer.enabled:
        result, diff = timer.start(file_results, check_mode, want_diff)
        results.append(result)
        diffs += diff
    found = [path for path in params.get("look_for") or [] if os.path.lexists(path)]
    return {"changed": any(r["action"] != "unchanged" for r in results), "results": results, "found": found,
            "diff": diffs}
