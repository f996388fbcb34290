# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure's Run Command (POST .../virtualMachines/{vm}/runCommand, RunShellScript) on many VMs at once.

Azure runs the script as root through the VM agent, authenticates and audits the call, and
answers with one message: `Enable succeeded: \\n[stdout]\\n...\\n[stderr]\\n...` (the last 4,096
bytes of each stream), whatever the script's exit status. The script is therefore wrapped so
that its exit status comes back as a last stdout line.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.sshca.azure.plugins.module_utils._azure import arm_error
from ansible_collections.sshca.azure.plugins.module_utils._enrollment import (
    HOST_KEYS_SCRIPT,
    EnrollmentError,
    host_keys_from_run_command,
    run_command_stdout,
)
from ansible_collections.sshca.azure.plugins.module_utils._runner import InputError

try:
    from azure.mgmt.compute.models import RunCommandInput
except ImportError:  # reported by the module through missing_required_lib
    RunCommandInput = None

EXIT_MARKER = "sshca-run-command-exit="
VM_ID_RE = re.compile(r"(?i)^/subscriptions/[^/]+/resourceGroups/([^/]+)/providers/Microsoft\.Compute/"
                      r"virtualMachines/([^/]+)$")


class RunCommandInputError(InputError):
    """A VM reference that names no VM; the message names the entry."""


def vm_references(vms, default_resource_group):
    """[{id} | {name, resource_group?}] -> [(id or "", resource group, name)]."""
    refs = []
    for index, vm in enumerate(vms):
        where = "vms[%d]" % index
        if not isinstance(vm, dict):
            raise RunCommandInputError("%s must be a dict with id, or name and resource_group" % where)
        unknown = sorted(set(vm) - {"id", "name", "resource_group"})
        if unknown:
            raise RunCommandInputError("%s: unknown key %s (known: id, name, resource_group)" % (where, unknown[0]))
        if vm.get("id"):
            match = VM_ID_RE.match(vm["id"])
            if not match:
                raise RunCommandInputError("%s: id %r is not a VM resource id" % (where, vm["id"][:120]))
            refs.append((vm["id"], match.group(1), match.group(2)))
        else:
            group = vm.get("resource_group") or default_resource_group
            if not vm.get("name") or not group:
                raise RunCommandInputError("%s needs id, or name with resource_group" % where)
            refs.append(("", group, vm["name"]))
    return refs


def wrapped(script):
    """The script in a subshell, followed by a line carrying its exit status."""
    return ["(", *list(script), ")", 'echo "%s$?"' % EXIT_MARKER]


def split_output(message):
    """Message -> (stdout without the exit line, stderr, exit status or None)."""
    stdout = run_command_stdout(message)
    stderr = message.rsplit("\n[stderr]\n", 1)[1] if "\n[stderr]\n" in message else ""
    status = None
    lines = stdout.split("\n")
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(EXIT_MARKER):
            value = lines[index][len(EXIT_MARKER):].strip()
            status = int(value) if value.isdigit() else None
            del lines[index]
            break
    return "\n".join(lines).rstrip("\n"), stderr.rstrip("\n"), status


def _run_one(session, ref, script, deadline):
    vm_id, group, name = ref
    started = time.monotonic()
    poller = session.compute.virtual_machines.begin_run_command(
        group, name, RunCommandInput(command_id="RunShellScript", script=script))
    result = poller.result(timeout=max(1, deadline - time.monotonic()))
    if not poller.done():
        raise TimeoutError("Run Command did not finish in time")
    statuses = getattr(result, "value", None) or []
    message = "\n".join(s.message or "" for s in statuses)
    return {"id": vm_id or session.resource_id(group, "Microsoft.Compute/virtualMachines", name),
            "resource_group": group, "name": name, "message": message,
            "seconds": round(time.monotonic() - started, 2)}


def run(session, refs, script, concurrency=10, timeout=600, read_host_keys=False):
    """Run the script on every VM concurrently -> (results in input order, [failure lines])."""
    deadline = time.monotonic() + timeout
    lock = threading.Lock()
    failures = []
    script = wrapped(HOST_KEYS_SCRIPT if read_host_keys else script)

    def fail(ref, result, problem):
        with lock:
            failures.append("%s/%s: %s" % (ref[1], ref[2], problem))
        result.update(failed=True, msg=problem)
        return result

    def one(ref):
        try:
            result = _run_one(session, ref, script, deadline)
        except Exception as err:  # an ARM refusal or a timeout: reported per VM
            return fail(ref, {"id": ref[0], "resource_group": ref[1], "name": ref[2]}, arm_error(err))
        message = result.pop("message")
        result["stdout"], result["stderr"], result["exit_status"] = split_output(message)
        if result["exit_status"] not in (None, 0):
            return fail(ref, result, "the script exited %d: %s" % (
                result["exit_status"], (result["stderr"].strip().splitlines() or ["no error output"])[-1]))
        if read_host_keys:
            try:
                keys = host_keys_from_run_command(message, "VM %s" % ref[2])
            except EnrollmentError as err:
                return fail(ref, result, str(err))
            result["host_keys"] = [{"family": k.family, "key": k.key, "fingerprint": k.fingerprint} for k in keys]
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(refs) or 1))) as pool:
        results = list(pool.map(one, refs))
    return results, failures
