# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files a host's sshd reads for certificate logins, written in one pass (sshd_cert_trust).

Runs on the managed host's own python3, so it uses the standard library only. A plan is worked out
first (what each path holds and what it should hold); check mode stops there. Every write goes to a
temporary file in the target folder, is fsynced, given its owner and mode, and renamed over the
target, so sshd never reads a half-written file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import stat
import tempfile

from ansible_collections.sshca.azure.plugins.module_utils._runner import InputError

FILE_MODE = 0o644
COMMAND_MODE = 0o755
DIR_MODE = 0o755
NOT_SIGNED_YET = b"(a new certificate, signed when not in check mode)\n"


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
        self.steps = []  # (kind, path, content or None, mode)

    def directory(self, path):
        self.steps.append(("directory", path, None, DIR_MODE))

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
        """Carries out the plan (not in check mode); returns (changed, results, diffs)."""
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
        return any(r["action"] != "unchanged" for r in results), results, diffs

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
                    os.makedirs(path, mode)
                self._set_attributes(path, mode)
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
    for path in params.get("remove") or []:
        plan.remove(path)
    return plan


def trust_files_task(params, check_mode, want_diff, owner=None, make_empty_krl=None):
    """The module's result: changed, one result per folder, file and removal, and the diffs."""
    plan = plan_trust_files(params, check_mode, owner=owner, make_empty_krl=make_empty_krl)
    changed, results, diffs = plan.apply(check_mode=check_mode, want_diff=want_diff)
    found = [path for path in params.get("look_for") or [] if os.path.lexists(path)]
    return {"changed": changed, "results": results, "found": found, "diff": diffs}
