"""The emulator's HTTPS front end: one route table for Entra ID, ARM, Key Vault and the control
API, bearer checks, throttling, faults and the request log.

    GET  /{tenant}/v2.0/.well-known/openid-configuration, POST /{tenant}/oauth2/v2.0/token   Entra ID
    GET  /metadata/endpoints                                                      ARM cloud metadata
    *    /subscriptions/...                                                       ARM (arm.py)
    *    /keys/..., /deletedkeys/...                                              Key Vault (keyvault.py)
    /_lab/health, /_lab/faults (GET/PUT/PATCH), /_lab/requests, /_lab/reset-log, /_lab/state
                                             the control API: loopback only, no auth (a single-user lab)
"""

from __future__ import annotations

import json
import os
import random
import re
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
from .routing import match, route
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
    # that took effect although the caller saw it fail).
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
MISSING_API_VERSION = {
    "arm": {"error": {"code": "MissingApiVersionParameter",
                      "message": "The api-version query parameter (?api-version=) is required for all requests."}},
    "vault": {"error": {"code": "BadParameter", "message": "The api-version query parameter is required."}},
}


def _op_type(path: str) -> str:
    """What the request log and the latency settings call a request's target."""
    parts = [p for p in path.split("/") if p]
    low = [p.lower() for p in parts]
    if low[:1] in (["keys"], ["deletedkeys"]):
        return "keys"
    if low[-3:] == ["oauth2", "v2.0", "token"]:
        return "token"
    if ".well-known" in low:
        return "openid-configuration"
    if low[:1] != ["subscriptions"]:
        return "other"
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
    """Everything one emulator process holds: identities, state, settings, the request log."""

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

    def _bind(self, port: int | None) -> LabServer:
        port_file = self.state_dir / "port"
        candidates = [port] if port else ([int(port_file.read_text())] if port_file.exists() else []) + [0]
        error: OSError | None = None
        for candidate in candidates:
            try:
                return LabServer(("127.0.0.1", candidate), self)
            except OSError as err:
                error = err
        raise error or OSError("could not bind")

    def serve_forever(self) -> None:
        write_atomic(self.state_dir / "port", str(self.port), 0o644)
        write_atomic(self.state_dir / "pid", str(os.getpid()), 0o644)
        threading.Thread(target=self._tick, daemon=True).start()
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

    def latency(self, method: str, op_type: str) -> float:
        table = self.settings.get("latency") or {}
        for key in (f"{method} {op_type}", op_type, method, "*"):
            if key in table:
                return float(table[key])
        return 0.0

    def log(self, entry: dict) -> None:
        with self.log_lock, open(self.log_path, "a") as fh:
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def cloud_metadata(self, api_version: str | None) -> tuple[int, dict | list]:
        """ARM's cloud metadata document (`GET /metadata/endpoints`), pointing at this emulator: how
        a client given only the ARM URL (azure.azcollection's URL `cloud_environment`) finds the
        authority and the token audience. Every other endpoint is this emulator too, never a
        public host. api-version 2015-01-01 has the old shape, 2019-05-01 a list of clouds, and
        2022-09-01 one cloud."""
        if not api_version:
            return 400, MISSING_API_VERSION["arm"]
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

    # --- the control API ----------------------------------------------------------------------

    def health(self, method: str, query: dict, raw: bytes) -> tuple[int, dict | None]:
        return 200, {"ok": True, "pid": os.getpid(), "port": self.port}

    def faults(self, method: str, query: dict, raw: bytes) -> tuple[int, dict | None]:
        """GET the settings; PATCH merges into them; PUT replaces them (defaults for the rest)."""
        if method in ("PUT", "PATCH"):
            try:
                new = json.loads(raw or b"{}")
            except ValueError:
                return 400, {"error": {"code": "BadRequest", "message": "body is not JSON"}}
            unknown = set(new) - set(DEFAULT_SETTINGS) if isinstance(new, dict) else {"(not an object)"}
            if unknown:
                return 400, {"error": {"code": "BadRequest", "message": f"unknown settings: {sorted(unknown)}"}}
            if method == "PUT":
                self.settings = {**json.loads(json.dumps(DEFAULT_SETTINGS)), **new}
            else:
                self.settings.update(new)
            write_atomic(self.settings_path, json.dumps(self.settings, indent=2), 0o644)
            self.throttle.reset(self.settings.get("throttling"))
        return 200, self.settings

    def requests(self, method: str, query: dict, raw: bytes) -> tuple[int, dict | None]:
        since = float(query.get("since", 0))
        lines = []
        if self.log_path.exists():
            with self.log_lock:
                lines = self.log_path.read_text().splitlines()
        return 200, {"value": [e for e in map(json.loads, lines) if e["t"] >= since]}

    def reset_log(self, method: str, query: dict, raw: bytes) -> tuple[int, dict | None]:
        with self.log_lock:
            self.log_path.write_text("")
        return 204, None

    def state(self, method: str, query: dict, raw: bytes) -> tuple[int, dict | None]:
        with self.store.lock:
            return 200, {"resources": [{"id": r["body"]["id"], "type": r["body"]["type"],
                                        "provisioningState": r["body"].get("properties", {}).get("provisioningState"),
                                        "lab": r["lab"]} for r in self.store.resources.values()],
                         "host_prefix": self.arm.lab_prefix()}


class LabServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator):
        self.emulator = emulator
        super().__init__(address, Handler)

    def finish_request(self, request, client_address):
        # The TLS handshake happens in the request's thread, not in the accept loop.
        try:
            request = self.emulator.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """One request: routed by `ROUTES` (below), logged, with latency, throttling and faults applied."""

    protocol_version = "HTTP/1.1"
    server_version = "sshca-lab-emulator"
    sys_version = ""
    server: LabServer

    def log_message(self, format, *args):  # the JSON request log replaces stderr lines
        return

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator

    def _send(self, status: int, body: dict | list | None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None or status == 204 else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Pragma", "no-cache")
        self.send_header("Expires", "-1")
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("x-ms-correlation-request-id",
                         self.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4()))
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
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
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = re.sub(r"/{2,}", "/", url.path)
        op_type = _op_type(path)
        try:
            delay = self.emulator.latency(self.command, op_type)
            if delay:
                time.sleep(delay)
            found = match(ROUTES, self.command, path)
            if found is None or found.route is None:
                self._send(404, {"error": {"code": "NotFound", "message": f"No route for {self.command} {path}."}})
            else:
                found.route.handler(self, path, found.params, query, raw)
        except Exception as err:  # a bug in the emulator must still answer like a service
            self._send(500, {"error": {"code": "InternalServerError", "message": f"emulator: {err!r}"}})
            raise
        finally:
            if not path.startswith("/_lab/"):
                self.emulator.log({
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "t": round(time.time(), 4), "method": self.command, "path": path,
                    "api_version": query.get("api-version"), "op": f"{self.command} {op_type}",
                    "status": self._status, "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "write": self.command in WRITE_METHODS and op_type != "token", "fault": self._fault,
                    "retry_after": self._headers.get("Retry-After"),
                    "client_request_id": self.headers.get("x-ms-client-request-id"),
                    **self._log_extra,
                })

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _dispatch

    @staticmethod
    def _json(raw: bytes) -> dict | None:
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

    # --- Entra ID, cloud metadata and the control API ------------------------------------------

    def openid_configuration(self, path: str, params: dict, query: dict, raw: bytes) -> None:
        self._send(*self.emulator.identity.openid_configuration(params["tenant"]))

    def token(self, path: str, params: dict, query: dict, raw: bytes) -> None:
        form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        self._send(*self.emulator.identity.token(params["tenant"], form))

    def cloud_metadata(self, path: str, params: dict, query: dict, raw: bytes) -> None:
        self._send(*self.emulator.cloud_metadata(query.get("api-version")))

    def control(self, path: str, params: dict, query: dict, raw: bytes) -> None:
        """/_lab/NAME: the Emulator method of that name (the table above lists them)."""
        call = getattr(self.emulator, path.rstrip("/").rsplit("/", 1)[1].replace("-", "_"))
        self._send(*call(self.command, query, raw))

    # --- ARM and Key Vault: token, api-version, throttling, faults, then the service ------------

    def arm(self, path: str, params: dict, query: dict, raw: bytes) -> None:
        self._service("arm", path, query, lambda: self.emulator.arm.handle(self.command, path, query,
                                                                           self._json(raw)))

    def vault(self, path: str, params: dict, query: dict, raw: bytes) -> None:
        parts = [p for p in path.split("/") if p]
        self._service("vault", path, query, lambda: self.emulator.vault.handle(self.command, parts, self._json(raw)))

    def _service(self, service: str, path: str, query: dict, call) -> None:
        emulator = self.emulator
        problem = emulator.identity.check(self.headers.get("Authorization"), service)
        if problem:
            return self._send(*self._unauthorized(service, *problem))
        if "api-version" not in query:
            return self._send(400, MISSING_API_VERSION[service])
        limits = {}
        if service == "arm":
            limits = self._throttled(path)
            if limits is None:
                return None
        fault = self._pick_fault(path)
        if fault and not fault.get("applied"):
            return self._send_fault(fault, limits)
        try:
            with emulator.store.lock:
                reply = call()
                if self.command in WRITE_METHODS:
                    emulator.store.save()
        except ArmError as err:
            reply = Reply(err.status, err.body())
        self._log_extra = reply.log
        if fault:  # the request took effect; the caller hears it failed
            return self._send_fault(fault, limits, applied=True)
        return self._send(reply.status, reply.body, {**limits, **reply.headers})

    def _unauthorized(self, service: str, code: str, message: str) -> tuple[int, dict, dict]:
        emulator = self.emulator
        authority = f"{emulator.base_url}/{emulator.config['tenant_id']}"
        if service == "arm":
            return 401, {"error": {"code": code, "message": message}}, {
                "WWW-Authenticate": f'Bearer authorization_uri="{authority}", error="invalid_token", '
                                    f'error_description="{message}"'}
        message = "AKV10000: Request is missing a Bearer or PoP token." if code == "AuthenticationFailed" \
            else f"AKV10022: {message}"
        return 401, {"error": {"code": "Unauthorized", "message": message}}, {
            "WWW-Authenticate": f'Bearer authorization="{authority}", resource="{emulator.vault_resource}"'}

    def _throttled(self, path: str) -> dict[str, str] | None:
        """Charge the request to ARM's (and Compute's) buckets; None if a 429 was sent, else
        the remaining-requests headers for the answer."""
        emulator = self.emulator
        with emulator.store.lock:
            policy = emulator.arm.compute_policy(self.command, path)
        principal = emulator.identity.principal(self.headers["Authorization"])
        verdict = emulator.throttle.charge(principal, self.command, policy)
        if verdict.wait is None:
            return verdict.headers
        self._fault = f"429-{verdict.refused_by}"
        headers = {**verdict.headers, "Retry-After": str(verdict.wait)}
        if verdict.refused_by == "arm":
            kind = verdict.policy.removeprefix("global-")[:-1]
            body = {"error": {"code": "SubscriptionRequestsThrottled", "message": (
                f"Number of '{kind}' requests for subscription '{emulator.config['subscription_id']}' actor "
                f"'{principal}' exceeded. Please try again after '{verdict.wait}' seconds after additional tokens "
                "are available. Refer to https://aka.ms/arm-throttling")}}
        else:  # Compute's own answer, its policy named in the details
            body = {"error": {"code": "OperationNotAllowed", "message": (
                "The server rejected the request because too many requests have been received for this "
                "subscription."), "details": [{"code": "TooManyRequests", "target": verdict.policy, "message": (
                    f'{{"operationGroup":"{verdict.policy}","allowedRequestCount":'
                    f'{emulator.throttle.size("compute", verdict.policy)}}}')}]}}
        self._send(429, body, headers)
        return None

    def _pick_fault(self, path: str) -> dict | None:
        """The configured fault rule this request meets, if any."""
        emulator = self.emulator
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
        status = int(self.emulator.random.choice(rule.get("statuses") or [503]))
        self._fault = f"{status}-applied" if applied else str(status)
        code, message = FAULT_ERRORS.get(status, ("InternalServerError", "Encountered internal server error."))
        headers = dict(headers)
        if status in (429, 503):  # fractions allowed here: RetryPolicy parses them as floats
            headers["Retry-After"] = str(rule.get("retry_after", self.emulator.settings.get("retry_after", 1)))
        if status == 429:
            headers.update({k: "0" for k in headers if k.startswith("x-ms-ratelimit-remaining-subscription")})
        self._send(status, {"error": {"code": rule.get("code") or code,
                                      "message": rule.get("message") or f"{message} (lab fault injection)"}}, headers)


ANY = "GET PUT POST PATCH DELETE HEAD"
ROUTES = [
    route("GET", "/{tenant}/v2.0/.well-known/openid-configuration", Handler.openid_configuration),
    route("POST", "/{tenant}/oauth2/v2.0/token", Handler.token),
    route("GET", "/metadata/endpoints", Handler.cloud_metadata),
    route(ANY, "/subscriptions/{rest*}", Handler.arm),
    route(ANY, "/keys/{rest*}", Handler.vault),
    route(ANY, "/deletedkeys/{rest*}", Handler.vault),
    route("GET", "/_lab/health", Handler.control),
    route("GET PUT PATCH", "/_lab/faults", Handler.control),
    route("GET", "/_lab/requests", Handler.control),
    route("POST", "/_lab/reset-log", Handler.control),
    route("GET", "/_lab/state", Handler.control),
]
