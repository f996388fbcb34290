"""The emulator's HTTPS front end: routing, bearer checks, faults, the request log and the
control API (`/_lab/...`, loopback only, no auth: the lab is a single-user machine).

Routes on one host:port:
  /{tenant}/v2.0/.well-known/openid-configuration, /{tenant}/oauth2/v2.0/token   Entra ID
  /subscriptions/...                                                            ARM
  /keys/..., /deletedkeys/...                                                   Key Vault
  /metadata/endpoints                                                           ARM cloud metadata
  /_lab/health, /_lab/faults (GET/PUT/PATCH), /_lab/requests, /_lab/reset-log, /_lab/state
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from . import tls
from .arm import Arm, ArmError, Reply
from .identity import Identity
from .keyvault import KeyVault
from .store import Store, load_config, write_atomic
from .throttle import DEFAULT_SCALES, Throttle

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
    # `applied: true`: the request is carried out first, then the fault is answered (a write
    # that took effect although the caller saw it fail; ARM requests only).
    "faults": {"rate": 0.0, "statuses": [429, 503], "paths": "^/subscriptions/", "methods": None,
               "max_per_call": None, "applied": False},
    # False: VMs get no lab host (benchmarks of ARM traffic alone); they still reserve their
    # public IP and report running once their operation's latency has passed.
    "lab_hosts": True,
    # ARM's and Compute's throttling as documented token buckets (labkit.emulator.throttle), scaled
    # by these factors (size and refill alike); null: counted for the headers, never refused.
    "throttling": dict(DEFAULT_SCALES),
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
        self.faults_lock = threading.Lock()
        self.throttle = Throttle(self.settings.get("throttling"))
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
        self.vault = KeyVault(self.store, self.base_url)
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

    def cloud_metadata(self, api_version: str | None) -> tuple[int, dict | list]:
        """ARM's cloud metadata document (`GET /metadata/endpoints`), pointing at this emulator: how
        a client given only the ARM URL (azure.azcollection's URL `cloud_environment`) finds the
        authority and the token audience. Every other endpoint is this emulator too, never a
        public host. api-version 2015-01-01 has the old shape, 2019-05-01 a list of clouds, and
        2022-09-01 one cloud."""
        if not api_version:
            return 400, {"error": {"code": "MissingApiVersionParameter", "message": (
                "The api-version query parameter (?api-version=) is required for all requests.")}}
        url = self.base_url + "/"
        if api_version < "2019-05-01":
            return 200, {"galleryEndpoint": url, "graphEndpoint": url, "portalEndpoint": url,
                         "authentication": {"loginEndpoint": url, "audiences": [url]}}
        cloud = {"name": "SshcaLab", "resourceManager": url, "portal": url, "gallery": url, "graph": url,
                 "graphAudience": url, "microsoftGraphResourceId": url,
                 "authentication": {"loginEndpoint": url, "audiences": [url], "tenant": "common",
                                    "identityProvider": "AAD"},
                 "suffixes": {"keyVaultDns": f".0.0.1:{self.port}", "storage": "lab.local",
                              "acrLoginServer": "lab.local"}}
        return 200, [cloud] if api_version < "2022-09-01" else cloud

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
            self._status, self._headers, self._fault, self._log_extra = 500, {}, None, {}
            self._applied_fault = None
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
                        **self._log_extra,
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
            if path == "/metadata/endpoints" and self.command == "GET":
                return self._send(*emulator.cloud_metadata(query.get("api-version")))
            if path.lower().startswith("/subscriptions"):
                return self._arm(path, query, raw)
            return self._send(404, {"error": {"code": "NotFound", "message": f"No route for {path}."}})

        def _pick_fault(self, path: str) -> dict | None:
            """The configured fault rule this request meets, if any."""
            rules = emulator.settings.get("faults") or []
            rules = [rules] if isinstance(rules, dict) else rules
            call = self.headers.get("x-ms-client-request-id") or ""
            chosen = None
            with emulator.faults_lock:
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
            return chosen

        def _send_fault(self, rule: dict, headers: dict[str, str], applied: bool = False) -> None:
            status = int(emulator.random.choice(rule.get("statuses") or [503]))
            self._fault = f"{status}-applied" if applied else str(status)
            code, message = FAULT_ERRORS.get(status, ("InternalServerError", "Encountered internal server error."))
            headers = dict(headers)
            if status in (429, 503):  # fractions allowed here: RetryPolicy parses them as floats
                headers["Retry-After"] = str(rule.get("retry_after", emulator.settings.get("retry_after", 1)))
            if status == 429:
                headers.update({k: "0" for k in headers if k.startswith("x-ms-ratelimit-remaining-subscription")})
            self._send(status, {"error": {"code": rule.get("code") or code,
                                          "message": rule.get("message") or f"{message} (lab fault injection)"}},
                       headers)

        def _throttled(self, path: str) -> dict[str, str] | None:
            """Charge the request to ARM's (and Compute's) buckets; None if a 429 was sent, else
            the remaining-requests headers for the answer."""
            with emulator.store.lock:
                policy = emulator.arm.compute_policy(self.command, path)
            verdict = emulator.throttle.charge(emulator.identity.principal(self.headers["Authorization"]),
                                               self.command, policy)
            if verdict.wait is None:
                return verdict.headers
            self._fault = f"429-{verdict.refused_by}"
            headers = {**verdict.headers, "Retry-After": str(verdict.wait)}
            if verdict.refused_by == "arm":
                kind = verdict.policy.removeprefix("global-")[:-1]
                body = {"error": {"code": "SubscriptionRequestsThrottled", "message": (
                    f"Number of '{kind}' requests for subscription '{emulator.config['subscription_id']}' actor "
                    f"'{emulator.identity.principal(self.headers['Authorization'])}' exceeded. Please try again "
                    f"after '{verdict.wait}' seconds after additional tokens are available. Refer to "
                    "https://aka.ms/arm-throttling")}}
            else:  # Compute's own answer, its policy named in the details
                body = {"error": {"code": "OperationNotAllowed", "message": (
                    "The server rejected the request because too many requests have been received for this "
                    "subscription."), "details": [{"code": "TooManyRequests", "target": verdict.policy, "message": (
                        f'{{"operationGroup":"{verdict.policy}","allowedRequestCount":'
                        f'{emulator.throttle.size("compute", verdict.policy)}}}')}]}}
            self._send(429, body, headers)
            return None

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
            limits = self._throttled(path)
            if limits is None:
                return None
            fault = self._pick_fault(path)
            if fault and not fault.get("applied"):
                return self._send_fault(fault, limits)
            try:
                with emulator.store.lock:
                    reply = emulator.arm.handle(self.command, path, query, self._json(raw))
                    if self.command in WRITE_METHODS:
                        emulator.store.save()
            except ArmError as err:
                reply = Reply(err.status, err.body())
            self._log_extra = reply.log
            if fault:  # the request took effect; the caller hears it failed
                return self._send_fault(fault, limits, applied=True)
            return self._send(reply.status, reply.body, {**limits, **reply.headers})

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
            fault = self._pick_fault("/" + "/".join(parts))
            if fault:
                return self._send_fault(fault, {})
            try:
                with emulator.store.lock:
                    reply = emulator.vault.handle(self.command, parts, self._json(raw))
                    if self.command in WRITE_METHODS:
                        emulator.store.save()
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
                    emulator.throttle.reset(emulator.settings.get("throttling"))
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
