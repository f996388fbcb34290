# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's known_hosts and ssh_config entries for enrolled hosts, one entry per host.

Each file holds one managed block (between `# BEGIN <block>` and `# END <block>` markers, as
blockinfile writes them) with one entry per host, tagged with the host's name:

    known_hosts:  @cert-authority web-1,127.0.0.10,10.0.1.4 ssh-ed25519 AAAA... sshca.azure:web-1
    ssh_config:   # sshca.azure:web-1
                  Host web-1 127.0.0.10
                      HostName 127.0.0.10 ...

A host has one such known_hosts line per trusted host CA: two while a CA rotation overlaps the old
and the new CA (`all_hosts` then sets the CA lines of every entry, keeping their patterns).

A run adds or updates the hosts it names and leaves every other entry alone, so fleets enrolled
one after the other accumulate; with `exclusive` the block holds exactly the hosts named (a person's
files follow the fleet as listed now), lines that are no entry of ours staying as they are.
An entry is replaced by a host of the same name, or by one that now holds its address (a renamed
VM, a reused public IP). Every read-modify-write happens under an exclusive lock (`<file>.lock`),
so parallel runs on one work folder never lose each other's entries, and each file is replaced
atomically.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import os
import re
import stat

from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (
    SSHKeyError,
    atomic_write,
    parse_openssh_public_key,
)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")
_PATTERN_RE = re.compile(r"^[^\s,#]+$")
DEFAULT_OPTIONS = (("IdentitiesOnly", "yes"), ("StrictHostKeyChecking", "yes"))


class ClientFilesError(SSHKeyError):
    """Bad input for the client files; one line naming the input."""


class HostEntry:
    """One host: its name, address, the known_hosts patterns the host CA answers for, and its login."""

    def __init__(self, name, address="", aliases=(), user="", where="hosts"):
        name = str(name or "")
        if not _NAME_RE.match(name):
            raise ClientFilesError(where + ".name", "%r is not a host name (letters, digits, '.', '-', '_', ':')"
                                   % name)
        self.name = name
        self.address = str(address or "")
        patterns = [name] + ([self.address] if self.address else []) + [str(a) for a in aliases or () if a]
        for pattern in patterns:
            if not _PATTERN_RE.match(pattern):
                raise ClientFilesError(where, "%r cannot be a known_hosts pattern (no spaces, commas or '#')" % pattern)
        self.patterns = list(dict.fromkeys(patterns))
        self.user = str(user or "")


# --- the managed block ---------------------------------------------------------------------------


def split_block(text, block):
    """(lines before, lines inside, lines after) the block's markers; inside is None without a block."""
    lines = text.splitlines()
    begin, end = "# BEGIN %s" % block, "# END %s" % block
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    if not starts:
        return lines, None, []
    start = starts[0]
    stops = [i for i, line in enumerate(lines) if line.strip() == end and i > start]
    if not stops:
        raise ClientFilesError(block, "the block has a BEGIN marker and no END marker; fix the file by hand")
    stop = stops[0]
    return lines[:start], lines[start + 1:stop], lines[stop + 1:]


def join_block(before, inside, after, block):
    lines = list(before)
    if inside:
        lines += ["# BEGIN %s" % block, *inside, "# END %s" % block]
    lines += after
    return "\n".join(lines) + "\n" if lines else ""


def tag(block, name):
    return "%s:%s" % (block, name)


class Entries:
    """Named entries of one block, plus lines that are no entry of ours (kept as they are)."""

    def __init__(self):
        self.named = {}  # name -> (addresses, first one the address ssh connects to; [lines])
        self.other = []

    def claimants(self, entry):
        """Names of other entries this host replaces: same name, or the address it now holds."""
        return sorted(name for name, (addresses, _lines) in self.named.items()
                      if name == entry.name or (entry.address and entry.address in addresses))


def parse_known_hosts(inside, block):
    found = Entries()
    marker = re.compile(r"\s%s:(\S+)\s*$" % re.escape(block))
    for line in inside or []:
        match = marker.search(line)
        words = line.split()
        if line.startswith("@cert-authority ") and match and len(words) >= 4:
            name = match.group(1)
            lines = found.named[name][1] if name in found.named else []
            found.named[name] = ([p for p in words[1].split(",") if p != name], [*lines, line])
        elif line.strip():
            found.other.append(line)
    return found


def parse_ssh_config(inside, block):
    found = Entries()
    name = None
    for line in inside or []:
        if line.startswith("# " + block + ":"):
            name = line[len("# " + block + ":"):].strip()
            found.named[name] = ([], [line])
            continue
        if name is None:
            if line.strip() and not line.startswith("# Ansible managed"):
                found.other.append(line)
            continue
        addresses, lines = found.named[name]
        words = line.split()
        if len(words) == 2 and words[0].lower() == "hostname":
            addresses = [words[1]]
        found.named[name] = (addresses, [*lines, line])
    return found


def known_hosts_lines(name, patterns, ca_keys, block):
    return ["@cert-authority %s %s %s" % (patterns, key.openssh_no_comment(), tag(block, name)) for key in ca_keys]


def known_hosts_entry(entry, ca_keys, block):
    return known_hosts_lines(entry.name, ",".join(entry.patterns), ca_keys, block)


def parse_ca_keys(text, option):
    """One or more OpenSSH public key lines (blank lines and comments skipped), at least one."""
    lines = [line for line in str(text or "").splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ClientFilesError(option, "is required to add hosts to known_hosts")
    keys = [parse_openssh_public_key(line, option, min_rsa_bits=1024) for line in lines]
    return list({key.openssh_no_comment(): key for key in keys}.values())


def ssh_config_entry(entry, block, options):
    hosts = " ".join(dict.fromkeys([entry.name] + ([entry.address] if entry.address else [])))
    lines = ["# %s" % tag(block, entry.name), "Host %s" % hosts]
    if entry.address and entry.address != entry.name:
        lines.append("    HostName %s" % entry.address)
    for key, value in options:
        if key == "User" and entry.user:
            value = entry.user
        lines.append("    %s %s" % (key, value))
    return lines


def render(entries, keep_other=True):
    lines = list(entries.other) if keep_other else []
    for name in sorted(entries.named):
        lines += entries.named[name][1]
    return lines


# --- the task ------------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(paths):
    """Exclusive locks on `<path>.lock` for each path, always taken in the same order."""
    handles = []
    try:
        for path in sorted(set(paths)):
            handle = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            handles.append(handle)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        for handle in reversed(handles):
            os.close(handle)  # closing releases the lock


def _read(path, option):
    if not os.path.exists(path):
        return ""
    if os.path.isdir(path):
        raise ClientFilesError(option, "%s is a folder" % path)
    try:
        with open(path, "r") as stream:
            return stream.read()
    except (IOError, OSError) as exc:
        raise ClientFilesError(option, "cannot read %s: %s" % (path, exc.strerror)) from None
    except UnicodeDecodeError:
        raise ClientFilesError(option, "%s is not UTF-8 text" % path) from None


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o600


class FilePlan:
    def __init__(self, option, path, parse, make_entry, rekey=None):
        self.option, self.path, self.parse, self.make_entry = option, path, parse, make_entry
        self.rekey = rekey  # (name, its lines) -> new lines, for every entry no host of the run replaces
        self.before = self.after = ""
        self.added, self.updated, self.removed = [], [], []
        self.names = []


def plan_file(plan, block, hosts, state, exclusive=False):
    text = _read(plan.path, plan.option)
    before, inside, after = split_block(text, block)
    entries = plan.parse(inside, block)
    old = {name: lines for name, (_address, lines) in entries.named.items()}
    if plan.rekey is not None and state == "present":
        for name, (addresses, lines) in list(entries.named.items()):
            entries.named[name] = (addresses, plan.rekey(name, lines))
    for entry in hosts:
        gone = entries.claimants(entry) if state == "present" else [n for n in entries.named if n == entry.name]
        for name in gone:
            del entries.named[name]
        if state == "present":
            entries.named[entry.name] = ([entry.address] if entry.address else [], plan.make_entry(entry))
    if exclusive and state == "present":
        for name in set(entries.named) - {entry.name for entry in hosts}:
            del entries.named[name]
    for name in sorted(set(old) | set(entries.named)):
        if name not in entries.named:
            plan.removed.append(name)
        elif name not in old:
            plan.added.append(name)
        elif old[name] != entries.named[name][1]:
            plan.updated.append(name)
    plan.names = sorted(entries.named)
    plan.entries = [{"name": name, "address": (entries.named[name][0] or [name])[0]} for name in plan.names]
    plan.before = "\n".join(inside or []) + ("\n" if inside else "")
    new_inside = render(entries)
    plan.after = "\n".join(new_inside) + ("\n" if new_inside else "")
    plan.text, plan.new_text = text, join_block(before, new_inside, after, block)
    return plan


def client_hosts_task(params, check_mode):
    """Add, update or remove the hosts' entries in known_hosts and ssh_config; the module result."""
    state = params.get("state") or "present"
    block = params.get("block_name") or "sshca.azure"
    if not re.match(r"^[A-Za-z0-9_.-]+$", block):
        raise ClientFilesError("block_name", "%r must be letters, digits, '.', '-' or '_'" % block)
    hosts = []
    seen = {}
    for index, item in enumerate(params.get("hosts") or []):
        where = "hosts[%d]" % index
        if not isinstance(item, dict):
            raise ClientFilesError(where, "must be a dict with at least a name")
        aliases = item.get("aliases") or []
        if not isinstance(aliases, list):
            raise ClientFilesError(where + ".aliases", "must be a list of names or addresses")
        entry = HostEntry(item.get("name"), item.get("address"), [item.get("private_ip"), *aliases],
                          item.get("user"), where)
        if entry.name in seen:
            raise ClientFilesError(where + ".name", "%s is listed twice (also %s)" % (entry.name, seen[entry.name]))
        seen[entry.name] = where
        hosts.append(entry)

    plans = []
    known_hosts = params.get("known_hosts_path")
    if known_hosts:
        if state == "present":
            ca_keys = parse_ca_keys(params.get("host_ca_public_key"), "host_ca_public_key")
        # Every entry's CA lines, for its patterns (those of its first line): a CA rotation's trust.
        rekey = ((lambda name, lines: known_hosts_lines(name, lines[0].split()[1], ca_keys, block))
                 if params.get("all_hosts") else None)
        plans.append(FilePlan("known_hosts_path", os.path.abspath(os.path.expanduser(known_hosts)), parse_known_hosts,
                              lambda e: known_hosts_entry(e, ca_keys, block), rekey))
    config = params.get("config_path")
    if config:
        options = [(k, v) for k, v in (("User", params.get("user")), ("IdentityFile", params.get("identity_file")),
                                       ("CertificateFile", params.get("certificate_file"))) if v]
        options += list(DEFAULT_OPTIONS)
        if known_hosts:
            options.append(("UserKnownHostsFile", os.path.abspath(os.path.expanduser(known_hosts))))
        options.sort(key=lambda kv: kv[0] != "User")  # User first, as people write it
        plans.append(FilePlan("config_path", os.path.abspath(os.path.expanduser(config)), parse_ssh_config,
                              lambda e: ssh_config_entry(e, block, options)))
    if not plans:
        raise ClientFilesError("known_hosts_path", "give known_hosts_path, config_path or both")
    for plan in plans:
        folder = os.path.dirname(plan.path)
        if not os.path.isdir(folder):
            raise ClientFilesError(plan.option, "folder %s does not exist" % folder)

    with locked([p.path for p in plans]):
        for plan in plans:
            plan_file(plan, block, hosts, state, params.get("exclusive"))
        changed = [p for p in plans if p.new_text != p.text]
        if not check_mode:
            for plan in changed:
                atomic_write(plan.path, plan.new_text, _mode(plan.path))

    # The ssh_config knows each address for sure (HostName); known_hosts has it second in its patterns.
    result = {"changed": bool(changed), "diff": [], "hosts": plans[0].names, "entries": plans[-1].entries}
    for plan in plans:
        key = "known_hosts" if plan.option == "known_hosts_path" else "ssh_config"
        result[key] = {"path": plan.path, "added": plan.added, "updated": plan.updated, "removed": plan.removed}
        result["diff"].append({"before_header": plan.path, "after_header": plan.path,
                               "before": plan.before, "after": plan.after})
    return result
