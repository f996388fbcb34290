# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key revocation lists (KRLs) for ssh_krl: what is revoked, a spec kept beside the KRL, and
the real ssh-keygen to build (`-k`) and check (`-Q`) the binary.

A KRL is binary and carries the time it was made, so it is never compared byte for byte: what
it revokes is read back with `ssh-keygen -Q -l` and compared, as a set, with what is asked for.
The spec (`<krl>.json`) keeps what the binary cannot give back: the CA public keys needed to
rebuild it and, per entry, a note of what it was (key id, principals, expiry, reason).

Revocations are never dropped silently: what the KRL holds counts as revoked even when the spec
lost it, and only `state=absent` or `exclusive` removes an entry.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from ansible_collections.sshca.azure.plugins.module_utils._ssh_certs import (
    CERT_SUFFIX,
    CertificateError,
    format_time,
    read_certificate,
)
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import (
    SSHKeyError,
    atomic_write,
    parse_openssh_public_key,
    parse_public_key,
)

SPEC_FORMAT = "sshca.azure KRL spec 1"
ISSUANCE_LOG = "issued.jsonl"  # written beside the CA keys by ssh_cert (_ca_signers.IssuanceLog)
CA_NAMES = ("host", "user", "admin")
KINDS = ("serial", "key_id", "key")
MAX_SERIAL = 2 ** 64 - 1
# A key id becomes one `id:` line of ssh-keygen's spec, which ends a line at `#` and trims spaces.
_KEY_ID_RE = re.compile(r"^[^\s#\x00-\x1f\x7f](?:[^#\x00-\x1f\x7f]*[^\s#\x00-\x1f\x7f])?$")
_FINGERPRINT_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
_INPUTS = ("serial", "key_id", "public_key", "public_key_path", "certificate", "certificate_path")


class KRLError(SSHKeyError):
    """Bad KRL input or a KRL that cannot be used; one line naming the input."""


# --- ssh-keygen ---------------------------------------------------------------------------------


class KeyGen:
    """The real ssh-keygen: `-k` builds a KRL, `-Q` queries it, `-Q -l` lists it."""

    def __init__(self, binary="ssh-keygen"):
        self.binary = binary

    def run(self, *args):
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, check=False,
                              env=dict(os.environ, LC_ALL="C"))
        return proc.returncode, proc.stdout, proc.stderr

    def listing(self, path, source):
        """What the KRL at `path` revokes (a Revocations), or KRLError naming `source`."""
        rc, out, err = self.run("-Q", "-l", "-f", path)
        if rc != 0:
            raise KRLError(source, "is not a valid KRL (%s)" % _last_line(err or out))
        return parse_listing(out, source)

    def revokes(self, krl, subject_file):
        """True when the KRL revokes the key or certificate in `subject_file`."""
        rc, out, err = self.run("-Q", "-f", krl, subject_file)
        if rc not in (0, 1) or (rc == 1 and "REVOKED" not in out):
            raise KRLError(krl, "ssh-keygen -Q failed (%s)" % _last_line(err or out))
        return rc == 1


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


# --- what is revoked ----------------------------------------------------------------------------


class Revocations:
    """Revoked key fingerprints, and per CA fingerprint its revoked serials and key ids."""

    def __init__(self):
        self.keys = set()
        self.serials = {}  # CA fingerprint -> set of ints
        self.key_ids = {}  # CA fingerprint -> set of str
        self.serial_ranges = {}  # CA fingerprint -> [(lo, hi)] for ranges too big to expand

    def add(self, entry):
        kind, ca, value = entry
        if kind == "key":
            self.keys.add(value)
        elif kind == "serial":
            self.serials.setdefault(ca, set()).add(int(value))
        else:
            self.key_ids.setdefault(ca, set()).add(value)

    def entries(self):
        """Every entry as (kind, CA fingerprint or "", value), in a stable order."""
        found = [("key", "", fp) for fp in self.keys]
        for ca, serials in self.serials.items():
            found += [("serial", ca, serial) for serial in serials]
        for ca, ids in self.key_ids.items():
            found += [("key_id", ca, key_id) for key_id in ids]
        return sorted(found, key=entry_sort_key)

    def canonical(self):
        """A comparable form: serials as merged ranges, as ssh-keygen lists them."""
        cas = set(self.serials) | set(self.key_ids) | set(self.serial_ranges)
        return (
            sorted(self.keys),
            sorted((ca, _merge_ranges([(s, s) for s in self.serials.get(ca, ())] + self.serial_ranges.get(ca, [])),
                    sorted(self.key_ids.get(ca, ()))) for ca in cas
                   if self.serials.get(ca) or self.key_ids.get(ca) or self.serial_ranges.get(ca)),
        )


def entry_sort_key(entry):
    kind, ca, value = entry
    return (KINDS.index(kind), ca, value if kind == "serial" else 0, "" if kind == "serial" else value)


def _merge_ranges(ranges):
    merged = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


_EXPAND_LIMIT = 4096  # a range from elsewhere is kept as a range beyond this


def parse_listing(text, source):
    """Revocations from `ssh-keygen -Q -l` output (OpenSSH 7.9 and later)."""
    found = Revocations()
    ca = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("# CA key "):
            parts = line.split()
            ca = parts[-1]
            continue
        if line.startswith("# Wildcard CA"):
            raise KRLError(source, "revokes certificates of any CA (a wildcard section), which ssh_krl cannot rebuild")
        if line.startswith("#"):
            continue
        directive, _sep, value = line.partition(":")
        value = value.strip()
        if directive == "hash":
            found.keys.add(_fingerprint_b64(value.split("#", 1)[0].strip(), source))
        elif directive in ("serial", "id") and ca is None:
            raise KRLError(source, "lists %s outside a CA section" % directive)
        elif directive == "serial":
            lo, _sep, hi = value.partition("-")
            lo, hi = int(lo), int(hi or lo)
            if hi - lo < _EXPAND_LIMIT:
                found.serials.setdefault(ca, set()).update(range(lo, hi + 1))
            else:
                found.serial_ranges.setdefault(ca, []).append((lo, hi))
        elif directive == "id":
            found.key_ids.setdefault(ca, set()).add(value)
        else:
            raise KRLError(source, "lists %r, which ssh_krl does not know" % line[:60])
    return found


def _fingerprint_b64(value, source):
    """`SHA256:<base64>` whether ssh-keygen listed base64 (explicit keys) or hex (hashed keys)."""
    digest = value.split(":", 1)[1] if value.startswith("SHA256:") else None
    if digest is None:
        raise KRLError(source, "lists a key hash %r that is not SHA256" % value[:60])
    if re.match(r"^[0-9a-f]{64}$", digest):
        return "SHA256:" + base64.b64encode(binascii.unhexlify(digest)).decode("ascii").rstrip("=")
    return "SHA256:" + digest


# --- the spec beside the KRL --------------------------------------------------------------------


def read_spec(path):
    """(CA keys by fingerprint, notes by entry) from the spec, or empty ones when it is absent."""
    if not os.path.exists(path):
        return {}, {}
    try:
        with open(path, "r") as stream:
            data = json.load(stream)
    except (IOError, OSError) as exc:
        raise KRLError(path, "cannot be read: %s" % exc.strerror) from None
    except ValueError as exc:
        raise KRLError(path, "is not JSON (%s)" % str(exc).splitlines()[0]) from None
    if not isinstance(data, dict) or data.get("format") != SPEC_FORMAT:
        raise KRLError(path, "is not an ssh_krl spec (no format %r)" % SPEC_FORMAT)
    cas = {}
    for fingerprint, line in (data.get("cas") or {}).items():
        key = parse_openssh_public_key(line, "%s: CA %s" % (path, fingerprint), min_rsa_bits=1024)
        if key.fingerprint() != fingerprint:
            raise KRLError(path, "CA %s does not match its key" % fingerprint)
        cas[fingerprint] = key
    notes = {}
    for item in data.get("revoked") or []:
        try:
            entry = (item["kind"], item.get("ca", ""), int(item["value"]) if item["kind"] == "serial"
                     else item["value"])
        except (KeyError, TypeError, ValueError):
            raise KRLError(path, "has an unreadable entry %r" % (item,)) from None
        notes[entry] = item.get("note") or {}
    return cas, notes


def spec_text(cas, entries, notes):
    used = {ca for _kind, ca, _value in entries if ca}
    data = {
        "format": SPEC_FORMAT,
        "cas": {fp: cas[fp].openssh_no_comment() for fp in sorted(used)},
        "revoked": [dict({"kind": kind, "value": value}, **({"ca": ca} if ca else {}),
                         **({"note": notes[(kind, ca, value)]} if notes.get((kind, ca, value)) else {}))
                    for kind, ca, value in entries],
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


# --- the entries asked for ----------------------------------------------------------------------


class Request:
    """One item of `revoked`, resolved: its entry, note, CA key and (for the -Q check) its key text."""

    def __init__(self, entry, note, ca_key=None, subject=None, where="", proven=False):
        self.entry, self.note, self.ca_key, self.subject, self.where = entry, note, ca_key, subject, where
        self.proven = proven  # a certificate signed by its CA needs no issuance record


def _read_file(path, where):
    try:
        with open(os.path.expanduser(path), "rb") as stream:
            return stream.read()
    except (IOError, OSError) as exc:
        raise KRLError(where, "cannot read %s: %s" % (path, exc.strerror or exc)) from None


def named_cas(ca_path):
    """{"host": key, "user": key, "admin": key} of the CA folder made by ssh_ca (public keys only)."""
    found = {}
    if not ca_path:
        return found
    for kind in CA_NAMES:
        path = os.path.join(os.path.expanduser(ca_path), "%s_ca.pub" % kind)
        if os.path.exists(path):
            found[kind] = parse_openssh_public_key(_read_file(path, "ca_path"), path)
    return found


def _ca_of(item, where, cas_by_name):
    ca = item.get("ca")
    if not ca:
        raise KRLError(where + ".ca", "is required with serial or key_id: host, user, admin or a CA public key line")
    if ca in CA_NAMES:
        if ca not in cas_by_name:
            raise KRLError(where + ".ca", "the %s CA is unknown: give ca_path (the folder made by ssh_ca)" % ca)
        return cas_by_name[ca]
    return parse_openssh_public_key(ca, where + ".ca", min_rsa_bits=1024)


def resolve(items, cas_by_name):
    """Requests for the `revoked` option; every problem is a KRLError naming the item and field."""
    requests = []
    for index, item in enumerate(items or []):
        where = "revoked[%d]" % index
        if not isinstance(item, dict):
            raise KRLError(where, "must be a dict with one of %s" % ", ".join(_INPUTS))
        given = [name for name in _INPUTS if item.get(name) not in (None, "")]
        if len(given) != 1:
            raise KRLError(where, "give exactly one of %s (got %s)" % (", ".join(_INPUTS), ", ".join(given) or "none"))
        unknown = sorted(set(item) - set(_INPUTS) - {"ca", "reason"})
        if unknown:
            raise KRLError(where, "unknown field(s) %s" % ", ".join(unknown))
        note = {"reason": str(item["reason"])} if item.get("reason") else {}
        name = given[0]
        if name == "serial":
            try:
                serial = int(item["serial"])
            except (TypeError, ValueError):
                raise KRLError(where + ".serial", "%r is not a number" % (item["serial"],)) from None
            if not 0 < serial <= MAX_SERIAL:
                raise KRLError(where + ".serial", "must be 1 to 2^64-1 (serial 0 cannot be revoked by serial; "
                                                  "revoke the key id or key)")
            ca = _ca_of(item, where, cas_by_name)
            requests.append(Request(("serial", ca.fingerprint(), serial), note, ca, where=where + ".serial"))
        elif name == "key_id":
            key_id = str(item["key_id"])
            if not _KEY_ID_RE.match(key_id):
                raise KRLError(where + ".key_id", "%r cannot be revoked as a key id (one line, no '#', no "
                                                  "leading or trailing spaces)" % key_id)
            ca = _ca_of(item, where, cas_by_name)
            requests.append(Request(("key_id", ca.fingerprint(), key_id), note, ca, where=where + ".key_id"))
        elif name in ("public_key", "public_key_path"):
            source = where + "." + name
            data = item[name] if name == "public_key" else _read_file(item[name], source)
            key = parse_public_key(data, source if name == "public_key" else "%s (%s)" % (source, item[name]),
                                   min_rsa_bits=1024)
            note = dict(note, public_key=key.openssh_no_comment())
            requests.append(Request(("key", "", key.fingerprint()), note, subject=key.openssh_no_comment(),
                                    where=source))
        elif name == "certificate":
            requests.append(_certificate_request(item[name], where + ".certificate", note))
        else:
            source = where + ".certificate_path"
            path = os.path.expanduser(item[name])
            files = _certificate_files(path) if os.path.isdir(path) else [path]
            if not files:
                raise KRLError(source, "%s holds no certificate (*-cert.pub)" % path)
            for cert_file in files:
                requests.append(_certificate_request(_read_file(cert_file, source), "%s (%s)" % (source, cert_file),
                                                     note))
    return requests


def _certificate_request(data, source, note):
    try:
        cert = read_certificate(data, source)
    except CertificateError as exc:
        raise KRLError(str(exc)) from None
    note = dict(note, key_id=cert.key_id, type=cert.cert_type, principals=list(cert.principals),
                valid_before=format_time(cert.valid_before))
    ca = cert.signing_ca
    # As ssh-keygen -k does: by serial, or by key id when the serial is 0.
    entry = ("serial", ca.fingerprint(), cert.serial) if cert.serial else ("key_id", ca.fingerprint(), cert.key_id)
    return Request(entry, note, ca, subject=cert.openssh(), where=source, proven=True)


# --- was this serial issued? ---------------------------------------------------------------------


class IssuedSerials:
    """The serials the CA is known to have issued: its issuance log, then certificates on disk."""

    def __init__(self, ca_path, search_paths):
        self.sources = []
        self.by_ca = {}  # CA fingerprint -> {serial: note}
        log = os.path.join(os.path.expanduser(ca_path), ISSUANCE_LOG) if ca_path else None
        if log and os.path.exists(log):
            self.sources.append(log)
            for record in read_issued(log):
                if isinstance(record.get("serial"), int) and record.get("ca_fingerprint"):
                    self.by_ca.setdefault(record["ca_fingerprint"], {})[record["serial"]] = _note_of(record)
        for path in search_paths or []:
            path = os.path.expanduser(path)
            self.sources.append(path)
            for cert_file in _certificate_files(path):
                try:
                    with open(cert_file, "rb") as stream:
                        cert = read_certificate(stream.read(), cert_file)
                except (IOError, OSError, SSHKeyError):
                    continue  # not a certificate of ours to judge
                self.by_ca.setdefault(cert.signing_ca.fingerprint(), {})[cert.serial] = _note_of({
                    "key_id": cert.key_id, "type": cert.cert_type, "principals": list(cert.principals),
                    "valid_before": format_time(cert.valid_before)})

    def check(self, request):
        """The note of what the serial was issued as; KRLError when it was not issued."""
        _kind, ca, serial = request.entry
        if not self.sources:
            raise KRLError(request.where, "cannot tell whether %d was issued: the CA has no issuance log and no "
                                          "issued_certificates were given (or set require_issued=false)" % serial)
        if serial not in self.by_ca.get(ca, {}):
            raise KRLError(request.where, "%d was not issued by CA %s (looked in %s); check the number"
                                          % (serial, ca, ", ".join(self.sources)))
        return self.by_ca[ca][serial]


def read_issued(path):
    """The records of an issuance log; an unreadable line (a torn write after a crash) is skipped."""
    records = []
    with open(path, "r") as stream:
        for line in stream:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _note_of(record):
    return {k: record[k] for k in ("key_id", "type", "principals", "valid_before") if record.get(k)}


def _certificate_files(path):
    if os.path.isfile(path):
        return [path]
    found = []
    for folder, _dirs, files in os.walk(path):
        found += [os.path.join(folder, name) for name in files if name.endswith("-cert.pub")]
    return sorted(found)


# --- what must stay admitted -------------------------------------------------------------------


class Admitted:
    """A certificate or key the KRL must never revoke (one item of keep_admitted), e.g. the automation's
    own admin certificate: a KRL revoking it would lock the automation out of every host it is pushed to."""

    def __init__(self, path, where):
        self.path, self.where = os.path.expanduser(path), where
        data = _read_file(path, where)
        try:
            first = data.decode("utf-8").split(None, 1)[0] if data.strip() else ""
        except UnicodeDecodeError:
            first = ""
        if first.endswith(CERT_SUFFIX):
            try:
                cert = read_certificate(data, "%s (%s)" % (where, path))
            except CertificateError as exc:
                raise KRLError(str(exc)) from None
            self.subject = cert.openssh()
            ca = cert.signing_ca.fingerprint()
            # What ssh-keygen -Q and sshd test for a certificate: its key, its signing CA's key, and
            # under that CA its serial and its key id.
            self.entries = {("key", "", cert.public_key.fingerprint()), ("key", "", ca), ("key_id", ca, cert.key_id)}
            if cert.serial:
                self.entries.add(("serial", ca, cert.serial))
            self.ca, self.serial = ca, cert.serial
            self.label = "%s (%s: key id %s, serial %d)" % (where, path, cert.key_id, cert.serial)
        else:
            key = parse_public_key(data, "%s (%s)" % (where, path), min_rsa_bits=1024)
            self.subject = key.openssh_no_comment()
            self.entries = {("key", "", key.fingerprint())}
            self.ca = self.serial = None
            self.label = "%s (%s: key %s)" % (where, path, key.fingerprint())

    def revoked_by(self, revocations):
        """The entries of `revocations` that revoke it, in a stable order."""
        found = [entry for entry in revocations.entries() if entry in self.entries]
        if self.serial:
            found += [("serial", self.ca, "%d-%d" % (lo, hi)) for lo, hi in revocations.serial_ranges.get(self.ca, [])
                      if lo <= self.serial <= hi]
        return found


def check_admitted(keygen, krl, admitted, desired, requests, in_place, scratch, ca_names):
    """KRLError naming the `revoked` item (or the KRL in place) when ssh-keygen -Q finds an admitted
    certificate or key revoked by `krl`, the KRL that would be written."""
    for number, keep in enumerate(admitted):
        subject_file = os.path.join(scratch, "admitted-%d.pub" % number)
        with open(subject_file, "w") as stream:
            stream.write(keep.subject + "\n")
        if not keygen.revokes(krl, subject_file):
            continue
        culprits = keep.revoked_by(desired)
        for request in requests:
            if request.entry in culprits:
                raise KRLError(request.where, "would revoke %s, which must stay admitted; nothing was written"
                               % keep.label)
        why = ", ".join(describe(e, ca_names) for e in culprits) or "as ssh-keygen -Q reports"
        raise KRLError("path", "the KRL in place (%s) already revokes %s by %s; remove that entry (ssh_krl with "
                               "state=absent) or put back an earlier KRL; nothing was written"
                       % (in_place, keep.label, why))


# --- the task -----------------------------------------------------------------------------------


def describe(entry, ca_names, note=None):
    kind, ca, value = entry
    what = {"serial": "serial %s" % value, "key_id": "key id %s" % value, "key": "key %s" % value}[kind]
    if ca:
        what += " of %s" % ca_names.get(ca, "CA %s" % ca)
    extra = [note[k] for k in ("key_id", "reason") if note and note.get(k) and not (k == "key_id" and kind == "key_id")]
    if note and note.get("valid_before"):
        extra.append("valid until %s" % note["valid_before"])
    return what + (" (%s)" % ", ".join(extra) if extra else "")


def _build(keygen, target, revocations, cas, scratch):
    """Write a KRL revoking exactly `revocations` to `target` with ssh-keygen -k, one CA at a time."""
    steps = []
    by_ca = {}
    for kind, ca, value in revocations.entries():
        if kind == "key":
            steps.append(("", "hash: %s" % value))
        else:
            by_ca.setdefault(ca, []).append("%s: %s" % ("serial" if kind == "serial" else "id", value))
    for ca, ranges in revocations.serial_ranges.items():
        by_ca.setdefault(ca, []).extend("serial: %d-%d" % r for r in ranges)
    groups = ([("", [line for _ca, line in steps])] if steps else []) + sorted(by_ca.items())
    if not groups:
        rc, out, err = keygen.run("-k", "-f", target)
        if rc != 0:
            raise KRLError(target, "ssh-keygen -k failed (%s)" % _last_line(err or out))
    for number, (ca, lines) in enumerate(groups):
        spec_file = os.path.join(scratch, "spec-%d" % number)
        with open(spec_file, "w") as stream:
            stream.write("\n".join(lines) + "\n")
        args = ["-k", "-f", target]
        if number:
            args.insert(1, "-u")  # later groups add to what the first one made
        if ca:
            if ca not in cas:
                raise KRLError(target, "revokes certificates of CA %s, whose public key is unknown (not in the "
                                       "spec, ca_path or any input), so it cannot be rebuilt" % ca)
            ca_file = os.path.join(scratch, "ca-%d.pub" % number)
            with open(ca_file, "w") as stream:
                stream.write(cas[ca].openssh_no_comment() + "\n")
            args += ["-s", ca_file]
        rc, out, err = keygen.run(*args, spec_file)
        if rc != 0:
            raise KRLError(target, "ssh-keygen -k failed (%s)" % _last_line(err or out))


def krl_task(params, check_mode, keygen=None, now=None):
    """Bring the KRL at `path` to what `params` (ssh_krl's options) ask; returns the module result.

    Everything is read and checked first; the KRL is built in a scratch folder, listed and queried
    with ssh-keygen, and only then are the spec and the KRL replaced (each atomically).
    """
    keygen = keygen or KeyGen()
    now = int(time.time()) if now is None else now
    path = os.path.abspath(os.path.expanduser(params["path"]))
    spec_path = os.path.abspath(os.path.expanduser(params.get("spec_path") or path + ".json"))
    state = params.get("state") or "present"
    exclusive = bool(params.get("exclusive"))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise KRLError("path", "folder %s does not exist" % folder)
    if os.path.isdir(path):
        raise KRLError("path", "%s is a folder, not a KRL file" % path)

    cas_by_name = named_cas(params.get("ca_path"))
    ca_names = {key.fingerprint(): "%s CA" % name for name, key in cas_by_name.items()}
    requests = resolve(params.get("revoked"), cas_by_name)
    admitted = [Admitted(p, "keep_admitted[%d]" % n) for n, p in enumerate(params.get("keep_admitted") or [])]

    spec_cas, notes = read_spec(spec_path)
    current = Revocations()
    for entry in notes:
        current.add(entry)
    if os.path.exists(path):
        if not os.access(path, os.R_OK):
            raise KRLError("path", "%s cannot be read" % path)
        listed = keygen.listing(path, path)
        for entry in listed.entries():
            current.add(entry)
        current.serial_ranges = listed.serial_ranges
    else:
        listed = None

    cas = dict(spec_cas)
    cas.update({key.fingerprint(): key for key in cas_by_name.values()})
    cas.update({r.ca_key.fingerprint(): r.ca_key for r in requests if r.ca_key is not None})

    wanted = {r.entry for r in requests}
    if state == "present":
        issued = None
        for request in requests:
            if request.entry[0] == "serial" and not request.proven and \
                    request.entry not in set(current.entries()) and params.get("require_issued", True):
                issued = issued or IssuedSerials(params.get("ca_path"), params.get("issued_certificates"))
                request.note = dict(issued.check(request), **request.note)
        target = set(wanted) if exclusive else set(current.entries()) | wanted
    else:
        target = set(current.entries()) - wanted
        if exclusive:
            raise KRLError("exclusive", "only goes with state=present")
    desired = Revocations()
    for entry in target:
        desired.add(entry)
    if not exclusive:
        desired.serial_ranges = {ca: list(r) for ca, r in current.serial_ranges.items()}

    new_notes = {entry: notes.get(entry, {}) for entry in target}
    for request in requests:
        if request.entry in target:
            new_notes[request.entry] = dict(new_notes[request.entry], **request.note)
    entries = desired.entries()
    text = spec_text(cas, entries, new_notes)
    old_text = _read_text(spec_path)
    added = sorted(set(entries) - set(current.entries()), key=entry_sort_key)
    removed = sorted(set(current.entries()) - set(entries), key=entry_sort_key)
    krl_stale = listed is None or listed.canonical() != desired.canonical()
    changed = krl_stale or text != old_text

    writing = changed and not check_mode
    if writing or admitted:
        # In check mode the KRL is still built (outside its folder) to be judged against keep_admitted.
        scratch = tempfile.mkdtemp(prefix=".krl-", dir=folder if writing else None)
        try:
            rebuild = writing or krl_stale
            built = os.path.join(scratch, "krl") if rebuild else path
            if rebuild:
                _build(keygen, built, desired, cas, scratch)
                check_built(keygen, built, desired, requests if state == "present" else [], scratch)
            check_admitted(keygen, built, admitted, desired, requests if state == "present" else [], path, scratch,
                           ca_names)
            if writing:
                with open(built, "rb") as stream:
                    data = stream.read()
                # The spec first: after a crash between the two, the next run sees the KRL behind the
                # spec and rebuilds; a KRL ahead of its spec would be read back all the same.
                atomic_write(spec_path, text, 0o644)
                atomic_write(path, data, 0o644)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def shown(items):
        return [dict(describe=describe(e, ca_names, new_notes.get(e) or notes.get(e)), kind=e[0], value=e[2],
                     **({"ca": e[1]} if e[1] else {})) for e in items]

    result = {
        "changed": changed,
        "path": path,
        "spec_path": spec_path,
        "revoked": shown(entries),
        "added": shown(added),
        "removed": shown(removed),
        "count": len(entries),
        "checked_at": format_time(now),
    }
    result["diff"] = {
        "before_header": path, "after_header": path,
        "before": "".join(describe(e, ca_names, notes.get(e)) + "\n" for e in current.entries()),
        "after": "".join(describe(e, ca_names, new_notes.get(e)) + "\n" for e in entries),
    }
    return result


def check_built(keygen, built, desired, requests, scratch):
    """The new KRL, read back by ssh-keygen, revokes exactly what was asked, and each key or
    certificate given is reported REVOKED by `ssh-keygen -Q`."""
    listed = keygen.listing(built, "the new KRL")
    if listed.canonical() != desired.canonical():
        raise KRLError(built, "ssh-keygen built a KRL that does not list what was asked (a bug): %r != %r"
                       % (listed.canonical(), desired.canonical()))
    for number, request in enumerate(r for r in requests if r.subject):
        subject_file = os.path.join(scratch, "subject-%d.pub" % number)
        with open(subject_file, "w") as stream:
            stream.write(request.subject + "\n")
        if not keygen.revokes(built, subject_file):
            raise KRLError(request.where, "ssh-keygen -Q does not find it revoked by the new KRL")


def _read_text(path):
    if not os.path.exists(path):
        return ""
    with open(path, "r") as stream:
        return stream.read()
