"""The emulator's HTTPS front end: routing, bearer checks, faults, the request log and the
control API (`/_lab/...`, loopback only, no auth: the lab is a single-user machine).

Routes on one host:port:
  /{tenant}/v2.0/.well-known/openid-configuration, /{tenant}/oauth2/v2.0/token   Entra ID
  /subscriptions/...                                                            ARM
  /keys/..., /deletedkeys/...                                                   Key Vault
  /_lab/health, /_lab/faults (GET/PUT/PATCH), /_lab/requests, /_lab/reset-log, /_lab/state
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections import OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from . import tls
from .arm import Arm, ArmError, Reply
from .identity import Identity
from .keyvault import KEY_VAULT_SETTINGS, KeyVault
from .store import Store, load_config, write_atomic

DEFAULT_SETTINGS = {
    # Seconds in Retry-After. LRO answers round up to whole seconds (at least 1) as the SDKs
    # parse them as integers; 429/503 faults send it as given (azure-core's retry takes fractions).
    "retry_after": 1,
    # Minimum seconds an operation stays InProgress, by resource type ("virtualMachines", ...,
    # "resourceGroups") or "default". A VM also waits for its lab host.
    "lro_seconds": {"default": 0},
    # Seconds added before answering, by "METHOD type", "type", "METHOD" or "*"
    # (type: resourceGroups, virtualMachines, operations, keys, token, ...).
    "latency": {},
    # Random faults: a rule, or a list of rules tried in order. A request whose path matches
    # `paths` (and whose method is in `methods`, if given) gets one of `statuses` at `rate`;
    # `code`/`message` override the error body; `max_per_call` caps the faults one SDK call (one
    # x-ms-client-request-id) meets in a row (azure-core retries a status 3 times; null = no cap).
    "faults": {"rate": 0.0, "statuses": [429, 503], "paths": "^/subscriptions/", "methods": None,
               "max_per_call": None},
    # False: VMs get no lab host (benchmarks of ARM traffic alone); they still reserve their
    # public IP and report running once their operation's latency has passed.
    "lab_hosts": True,
    # ARM-like throttling: at most `limit` writes (or reads) per `window` seconds, then 429.
    "write_budget": None,
    "read_budget": None,
    # Key Vault: per-key permissions and a latency per sign (see keyvault.py).
    "key_vault": KEY_VAULT_SETTINGS,
}
WRITE_METHODS = {"PUT", "PATCH", "DELETE", "POST"}
FAULT_ERRORS = {
    400: ("BadRequest", "The request is invalid."),
    404: ("ResourceNotFound", "The resource was not found."),
    409: ("Conflict", "The request conflicts with the state of the resource."),
    429: ("TooManyRequests", "The request is being throttled as the limit has been reached for operation type."),
    500: ("InternalServerError", "Encountered internal server error."),
    502: ("BadGateway", "The gateway did not receive a response from the resource provider."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry the request."),
    504: ("GatewayTimeout", "The gateway did not receive a response from the resource provider in time."),
}
ARM_DEFAULT_REMAINING = {"reads": 11999, "writes": 1199}


def _arm_type(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    low = [p.lower() for p in parts]
    if "operations" in low or "operationresults" in low:
        return "operations"
    if "providers" in low:
        after = parts[low.index("providers") + 2:]
        if not after:
            return "providers"
        return after[-1] if len(after) % 2 else after[-2]
    if len(low) >= 3 and low[2] == "resourcegroups":
        return "resourceGroups"
    return "subscriptions"


class Emulator:
    def __init__(self, state_dir: Path, port: int | None = None):
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.config = load_config(state_dir)
        self.ca_path, cert, key = tls.ensure(state_dir)
        self.context = tls.server_context(cert, key)
        self.settings_path = state_dir / "faults.json"
        self.settings = json.loads(json.dumps(DEFAULT_SETTINGS))
        if self.settings_path.exists():
            self.settings.update(json.loads(self.settings_path.read_text()))
        self.log_path = state_dir / "requests.jsonl"
        self.log_lock = threading.Lock()
        self.budget_lock = threading.Lock()
        self.recent: dict[str, deque] = {"reads": deque(), "writes": deque()}
        self.random = random.Random()  # noqa: S311 (fault injection, not cryptography)
        self.faults_per_call: OrderedDict[str, int] = OrderedDict()
        self.httpd = self._bind(port)
        self.port = self.httpd.server_address[1]
        self.base_url = f"https://127.0.0.1:{self.port}"
        # Key Vault's challenge names a resource whose host is a dotted suffix of the vault's
        # authority (127.0.0.1:PORT ends with .0.0.1:PORT), so azure-keyvault-keys' own
        # challenge-resource check runs unchanged and passes without a DNS name for the vault.
        self.vault_resource = f"https://0.0.1:{self.port}"
        self.store = Store(state_dir)
        self.identity = Identity(self.config, self.base_url, bytes.fromhex(self.config["token_key"]), {
            "https://management.azure.com": "arm", "https://management.core.windows.net": "arm",
            self.base_url: "arm", self.vault_resource: "vault"})
        self.arm = Arm(self.store, self.config, self.base_url, lambda: self.settings)
        self.vault = KeyVault(self.store, self.base_url, lambda: self.settings, self.config)
        with self.store.lock:
            self.arm.resume()
            self.store.save()

    def _bind(self, port: int | None) -> ThreadingHTTPServer:
        emulator = self
        port_file = self.state_dir / "port"
        candidates = [port] if port else ([int(port_file.read_text())] if port_file.exists() else []) + [0]

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def finish_request(self, request, client_address):
                # The TLS handshake happens in the request's thread, not in the accept loop.
                try:
                    request = emulator.context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                super().finish_request(request, client_address)

        error: OSError | None = None
        for candidate in candidates:
            try:
                return Server(("127.0.0.1", candidate), _handler(emulator))
            except OSError as err:
                error = err
        raise error or OSError("could not bind")

    def serve_forever(self) -> None:
        write_atomic(self.state_dir / "port", str(self.port), 0o644)
        write_atomic(self.state_dir / "pid", str(os.getpid()), 0o644)
        ticker = threading.Thread(target=self._tick, daemon=True)
        ticker.start()
        self.httpd.serve_forever(poll_interval=0.2)

    def _tick(self) -> None:
        """Finish operations even when nobody polls, so GETs show fresh provisioning states."""
        while True:
            time.sleep(0.5)
            with self.store.lock:
                before = json.dumps(self.store.operations, sort_keys=True)
                self.arm.advance()
                if json.dumps(self.store.operations, sort_keys=True) != before:
                    self.store.save()

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- faults -------------------------------------------------------------------------

    def save_settings(self) -> None:
        write_atomic(self.settings_path, json.dumps(self.settings, indent=2), 0o644)

    def latency(self, method: str, op_type: str) -> float:
        table = self.settings.get("latency") or {}
        for key in (f"{method} {op_type}", op_type, method, "*"):
            if key in table:
                return float(table[key])
        return 0.0

    def budget(self, kind: str) -> tuple[int, int | None]:
        """(remaining, seconds to wait or None) for a request of kind reads/writes, counting it."""
        budget = self.settings.get(f"{kind[:-1]}_budget")
        if not budget:
            return ARM_DEFAULT_REMAINING[kind], None
        limit, window = int(budget["limit"]), float(budget["window"])
        now = time.monotonic()
        with self.budget_lock:
            seen = self.recent[kind]
            while seen and now - seen[0] >= window:
                seen.popleft()
            if len(seen) >= limit:
                return 0, max(1, math.ceil(window - (now - seen[0])))
            seen.append(now)
            return limit - len(seen), None

    def log(self, entry: dict) -> None:
        with self.log_lock, open(self.log_path, "a") as fh:
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")


def _handler(emulator: Emulator):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sshca-lab-emulator"
        sys_version = ""

        def log_message(self, format, *args):  # the JSON request log replaces stderr lines
            return

        def _send(self, status: int, body: dict | None, headers: dict[str, str] | None = None,
                  content_type: str = "application/json; charset=utf-8") -> None:
            data = b"" if body is None or status == 204 else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Pragma", "no-cache")
            self.send_header("Expires", "-1")
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            self.send_header("x-ms-correlation-request-id",
                             self.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4()))
            if data:
                self.send_header("Content-Type", content_type)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)
            self._status, self._headers = status, headers or {}

        def _dispatch(self) -> None:
            started = time.monotonic()
            self._status, self._headers, self._fault = 500, {}, None
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = re.sub(r"/{2,}", "/", url.path)
            op_type = self._op_type(path)
            try:
                delay = emulator.latency(self.command, op_type)
                if delay:
                    time.sleep(delay)
                self._route(path, query, raw, op_type)
            except Exception as err:  # a bug in the emulator must still answer like a service
                self._send(500, {"error": {"code": "InternalServerError", "message": f"emulator: {err!r}"}})
                raise
            finally:
                if not path.startswith("/_lab/"):
                    emulator.log({
                        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "t": round(time.time(), 4), "method": self.command, "path": path,
                        "api_version": query.get("api-version"), "op": f"{self.command} {op_type}",
                        "status": self._status, "duration_ms": round((time.monotonic() - started) * 1000, 1),
                        "write": self.command in WRITE_METHODS and not path.startswith(("/_lab/",)) and
                        op_type != "token", "fault": self._fault,
                        "retry_after": self._headers.get("Retry-After"),
                        "client_request_id": self.headers.get("x-ms-client-request-id"),
                    })

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _dispatch

        @staticmethod
        def _op_type(path: str) -> str:
            low = path.lower()
            if low.startswith("/subscriptions"):
                return _arm_type(path)
            if low.startswith(("/keys", "/deletedkeys")):
                return "keys"
            if low.endswith("/oauth2/v2.0/token"):
                return "token"
            if "/.well-known/" in low:
                return "openid-configuration"
            return "other"

        def _json(self, raw: bytes) -> dict | None:
            if not raw:
                return None
            try:
                body = json.loads(raw)
            except ValueError:
                raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                                                             "deserialized.") from None
            if not isinstance(body, dict):
                raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
            return body

        def _route(self, path: str, query: dict, raw: bytes, op_type: str) -> None:
            parts = [p for p in path.split("/") if p]
            if parts[:1] == ["_lab"]:
                return self._control(parts[1:], query, raw)
            if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"] and \
                    self.command == "GET":
                return self._send(*emulator.identity.openid_configuration(parts[0]))
            if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"] and self.command == "POST":
                form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
                return self._send(*emulator.identity.token(parts[0], form))
            if op_type == "keys":
                return self._vault(parts, query, raw)
            if path.lower().startswith("/subscriptions"):
                return self._arm(path, query, raw)
            return self._send(404, {"error": {"code": "NotFound", "message": f"No route for {path}."}})

        def _faults(self, path: str, kind: str) -> bool:
            """Inject configured faults; True if an error was sent instead of handling the request."""
            remaining, wait = emulator.budget(kind)
            header = f"x-ms-ratelimit-remaining-subscription-{kind}"
            self._limit_headers = {header: str(remaining)}
            if wait is not None:
                self._fault = "429-budget"
                self._send(429, {"error": {"code": "SubscriptionRequestsThrottled", "message": (
                    f"Number of '{kind[:-1]}' requests for subscription '{emulator.config['subscription_id']}' "
                    f"actor '{emulator.config['client_id']}' exceeded. Please try again after '{wait}' seconds "
                    "after the first request.")}},
                    {"Retry-After": str(wait), header: "0"})
                return True
            rules = emulator.settings.get("faults") or []
            rules = [rules] if isinstance(rules, dict) else rules
            call = self.headers.get("x-ms-client-request-id") or ""
            chosen = None
            with emulator.budget_lock:
                in_a_row = emulator.faults_per_call.get(call, 0) if call else 0
                for rule in rules:
                    rate = float(rule.get("rate") or 0)
                    cap = rule.get("max_per_call")
                    if not rate or (cap is not None and in_a_row >= int(cap)):
                        continue
                    if rule.get("methods") and self.command not in [m.upper() for m in rule["methods"]]:
                        continue
                    if re.search(rule.get("paths") or ".", path) and emulator.random.random() < rate:
                        chosen = rule
                        break
                if call:
                    emulator.faults_per_call[call] = in_a_row + 1 if chosen else 0
                    emulator.faults_per_call.move_to_end(call)
                    while len(emulator.faults_per_call) > 10000:
                        emulator.faults_per_call.popitem(last=False)
            if chosen is None:
                return False
            status = int(emulator.random.choice(chosen.get("statuses") or [503]))
            self._fault = str(status)
            code, message = FAULT_ERRORS.get(status, ("InternalServerError", "Encountered internal server error."))
            headers = {}
            if status in (429, 503):  # fractions allowed here: RetryPolicy parses them as floats
                headers["Retry-After"] = str(chosen.get("retry_after", emulator.settings.get("retry_after", 1)))
            if status == 429:
                headers[header] = "0"
            self._send(status, {"error": {"code": chosen.get("code") or code,
                                          "message": chosen.get("message") or f"{message} (lab fault injection)"}},
                       headers)
            return True

        def _arm(self, path: str, query: dict, raw: bytes) -> None:
            problem = emulator.identity.check(self.headers.get("Authorization"), "arm")
            if problem:
                code, message = problem
                return self._send(401, {"error": {"code": code, "message": message}}, {
                    "WWW-Authenticate": f'Bearer authorization_uri="{emulator.base_url}/{emulator.config["tenant_id"]}'
                                        f'", error="invalid_token", error_description="{message}"'})
            if "api-version" not in query:
                return self._send(400, {"error": {"code": "MissingApiVersionParameter", "message": (
                    "The api-version query parameter (?api-version=) is required for all requests.")}})
            kind = "writes" if self.command in WRITE_METHODS else "reads"
            if self._faults(path, kind):
                return None
            try:
                with emulator.store.lock:
                    reply = emulator.arm.handle(self.command, path, query, self._json(raw))
                    if self.command in WRITE_METHODS:
                        emulator.store.save()
            except ArmError as err:
                reply = Reply(err.status, err.body())
            return self._send(reply.status, reply.body, {**self._limit_headers, **reply.headers})

        def _vault(self, parts: list[str], query: dict, raw: bytes) -> None:
            problem = emulator.identity.check(self.headers.get("Authorization"), "vault")
            if problem:
                challenge = (f'Bearer authorization="{emulator.base_url}/{emulator.config["tenant_id"]}", '
                             f'resource="{emulator.vault_resource}"')
                message = ("AKV10000: Request is missing a Bearer or PoP token."
                           if problem[0] == "AuthenticationFailed" else f"AKV10022: {problem[1]}")
                return self._send(401, {"error": {"code": "Unauthorized", "message": message}},
                                  {"WWW-Authenticate": challenge})
            if "api-version" not in query:
                return self._send(400, {"error": {"code": "BadParameter", "message": "The api-version query "
                                                  "parameter is required."}})
            if self._faults("/" + "/".join(parts), "writes" if self.command in WRITE_METHODS else "reads"):
                return None
            try:  # Key Vault takes the state lock itself: signs run side by side
                reply = emulator.vault.handle(self.command, parts, self._json(raw))
            except ArmError as err:
                reply = Reply(err.status, err.body())
            return self._send(reply.status, reply.body, reply.headers)

        def _control(self, parts: list[str], query: dict, raw: bytes) -> None:
            what = parts[0] if parts else ""
            if what == "health" and self.command == "GET":
                return self._send(200, {"ok": True, "pid": os.getpid(), "port": emulator.port})
            if what == "faults":
                if self.command in ("PUT", "PATCH"):
                    try:
                        new = json.loads(raw or b"{}")
                    except ValueError:
                        return self._send(400, {"error": {"code": "BadRequest", "message": "body is not JSON"}})
                    unknown = set(new) - set(DEFAULT_SETTINGS)
                    if unknown or not isinstance(new, dict):
                        return self._send(400, {"error": {"code": "BadRequest",
                                                          "message": f"unknown settings: {sorted(unknown)}"}})
                    if self.command == "PUT":
                        emulator.settings = {**json.loads(json.dumps(DEFAULT_SETTINGS)), **new}
                    else:
                        emulator.settings.update(new)
                    emulator.save_settings()
                return self._send(200, emulator.settings)
            if what == "requests" and self.command == "GET":
                since = float(query.get("since", 0))
                entries = []
                if emulator.log_path.exists():
                    with emulator.log_lock:
                        lines = emulator.log_path.read_text().splitlines()
                    entries = [e for e in map(json.loads, lines) if e["t"] >= since]
                return self._send(200, {"value": entries})
            if what == "reset-log" and self.command == "POST":
                with emulator.log_lock:
                    emulator.log_path.write_text("")
                return self._send(204, None)
            if what == "state" and self.command == "GET":
                with emulator.store.lock:
                    return self._send(200, {"resources": [{"id": r["body"]["id"], "type": r["body"]["type"],
                                                           "provisioningState": r["body"].get("properties", {})
                                                           .get("provisioningState"), "lab": r["lab"]}
                                                          for r in emulator.store.resources.values()],
                                            "host_prefix": emulator.arm.lab_prefix()})
            return self._send(404, {"error": {"code": "NotFound", "message": f"no control route {'/'.join(parts)}"}})

    return Handler


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
