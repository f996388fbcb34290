# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure plumbing shared by every sshca.azure module that talks to Azure Resource Manager.

- AUTH_ARGUMENT_SPEC: the auth options (documented once in doc_fragments/_azure.py);
- resolve_cloud(): public, China, US Gov or a custom ARM endpoint and authority;
- build_credential(): azure-identity credential for `auth_source`;
- SharedTokenCredential: one token per scope for the whole run, whatever the threads and clients;
- AzureSession: compute and network clients over one connection pool, retrying 429/5xx on
  every idempotent verb (PATCH too: our PATCHes set absolute values) and honouring Retry-After,
  pacing every thread together once ARM throttles (ThrottlePacing), plus the record of every
  ARM write issued (or, in check mode, planned).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import random
import threading
import time
from urllib.parse import urlparse

from ansible.module_utils.basic import env_fallback
from ansible_collections.sshca.azure.plugins.module_utils._runner import InputError, Requirement, run_module

try:
    import requests
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.core.pipeline.policies import HTTPPolicy, RetryPolicy
    from azure.core.pipeline.transport import RequestsTransport
    from azure.identity import (
        AzureCliCredential,
        ClientSecretCredential,
        DefaultAzureCredential,
        EnvironmentCredential,
        ManagedIdentityCredential,
    )
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient
    HAS_AZURE = True
    AZURE_IMPORT_ERROR = None
except ImportError as exc:  # reported by the modules through missing_required_lib
    HAS_AZURE = False
    AZURE_IMPORT_ERROR = exc
    RetryPolicy = HTTPPolicy = object
    HttpResponseError = ResourceNotFoundError = Exception

AZURE_REQUIREMENTS = "azure-identity, azure-mgmt-compute and azure-mgmt-network"
AZURE_SDK = Requirement(AZURE_REQUIREMENTS, HAS_AZURE, AZURE_IMPORT_ERROR)

ARM_ENDPOINT_VARIABLES = ["AZURE_ARM_ENDPOINT", "AZURE_RESOURCE_MANAGER_ENDPOINT"]
# Variables azure.azcollection users already set come first, then azure-identity's own names.
AUTH_ARGUMENT_SPEC = {
    "auth_source": {"type": "str", "default": "auto", "choices": ["auto", "env", "cli", "msi", "credential"]},
    "subscription_id": {"type": "str", "fallback": (env_fallback, ["AZURE_SUBSCRIPTION_ID"])},
    "tenant": {"type": "str", "fallback": (env_fallback, ["AZURE_TENANT", "AZURE_TENANT_ID"])},
    "client_id": {"type": "str", "fallback": (env_fallback, ["AZURE_CLIENT_ID"])},
    "secret": {"type": "str", "no_log": True, "fallback": (env_fallback, ["AZURE_SECRET", "AZURE_CLIENT_SECRET"])},
    "cloud_environment": {"type": "str", "default": "AzureCloud",
                          "fallback": (env_fallback, ["AZURE_CLOUD_ENVIRONMENT"])},
    "arm_endpoint": {"type": "str", "fallback": (env_fallback, ARM_ENDPOINT_VARIABLES)},
    "authority_host": {"type": "str", "fallback": (env_fallback, ["AZURE_AUTHORITY_HOST"])},
}

# name: (ARM endpoint, Entra ID authority host)
CLOUDS = {
    "AzureCloud": ("https://management.azure.com", "login.microsoftonline.com"),
    "AzureChinaCloud": ("https://management.chinacloudapi.cn", "login.chinacloudapi.cn"),
    "AzureUSGovernment": ("https://management.usgovcloudapi.net", "login.microsoftonline.us"),
}
CLOUD_ALIASES = {"azurepubliccloud": "AzureCloud", "public": "AzureCloud", "china": "AzureChinaCloud",
                 "usgov": "AzureUSGovernment", "azureusgovernmentcloud": "AzureUSGovernment"}

# Fallback only: azure-mgmt-core's ARM poller waits for the server's Retry-After when it sends one.
POLLING_FALLBACK_SECONDS = 5


class AzureConfigError(InputError):
    """Auth or endpoint settings that cannot work; the message names the option."""


class Cloud:
    def __init__(self, name, arm_endpoint, authority_host, custom):
        """custom: the authority is not a public Entra ID host, so MSAL must not ask one about it."""
        self.name = name
        self.arm_endpoint = arm_endpoint.rstrip("/")
        self.authority_host = authority_host
        self.custom = custom

    @property
    def scope(self):
        return self.arm_endpoint + "/.default"


def _https_url(value, option):
    if "://" not in value:
        value = "https://" + value
    parsed = urlparse(value)
    if parsed.scheme != "https" or not parsed.hostname:
        raise AzureConfigError("%s must be an https URL, got %r" % (option, value))
    return value.rstrip("/")


def resolve_cloud(params):
    """The ARM endpoint and authority from cloud_environment, arm_endpoint and authority_host."""
    name = params.get("cloud_environment") or "AzureCloud"
    arm = params.get("arm_endpoint")
    authority = params.get("authority_host")
    if "://" in name:  # azure.azcollection lets AZURE_CLOUD_ENVIRONMENT be an endpoint URL
        arm, name = arm or name, "custom"
    else:
        name = CLOUD_ALIASES.get(name.lower().replace("_", ""), name)
        if name not in CLOUDS:
            raise AzureConfigError("cloud_environment %r is not one of %s or an https URL"
                                   % (name, ", ".join(sorted(CLOUDS))))
    known_arm, known_authority = CLOUDS.get(name, (None, None))
    arm = _https_url(arm, "arm_endpoint") if arm else known_arm
    if authority:
        authority = _https_url(authority, "authority_host")
    elif arm != known_arm:
        # Guessing a public authority for a private endpoint would send credentials elsewhere.
        raise AzureConfigError("authority_host is required with a custom ARM endpoint (arm_endpoint %s)" % arm)
    else:
        authority = "https://" + known_authority
    custom = urlparse(authority).hostname not in [host for _arm, host in CLOUDS.values()]
    return Cloud(name, arm, authority, custom)


def _from_environment(option):
    """An auth option from its environment variables only (auth_source=env ignores task options)."""
    for name in AUTH_ARGUMENT_SPEC[option]["fallback"][1]:
        if os.environ.get(name):
            return os.environ[name]
    return None


def build_credential(params, cloud):
    """An azure-identity credential for auth_source; no network traffic happens here."""
    source = params.get("auth_source") or "auto"
    kwargs = {"authority": cloud.authority_host}
    if cloud.custom:
        # MSAL would otherwise ask a public host to validate a private authority.
        kwargs["disable_instance_discovery"] = True
    principal = ("tenant", "client_id", "secret")
    if source == "env":
        values = {k: _from_environment(k) for k in principal}
        if all(values.values()):
            return ClientSecretCredential(values["tenant"], values["client_id"], values["secret"], **kwargs)
        return EnvironmentCredential(**kwargs)  # azure-identity's own variables (certificate, ...)
    has_secret = all(params.get(k) for k in principal)
    if source == "credential" or (source == "auto" and has_secret):
        if not has_secret:
            missing = [k for k in principal if not params.get(k)]
            raise AzureConfigError("auth_source=credential needs %s" % ", ".join(missing))
        return ClientSecretCredential(params["tenant"], params["client_id"], params["secret"], **kwargs)
    if source == "cli":
        return AzureCliCredential(tenant_id=params.get("tenant"))
    if source == "msi":
        return ManagedIdentityCredential(client_id=params.get("client_id"))
    if cloud.custom:
        # The default chain probes the instance metadata address, which is not ours to reach.
        raise AzureConfigError("auth_source=auto with a custom ARM endpoint needs tenant, client_id and secret")
    return DefaultAzureCredential(authority=cloud.authority_host, exclude_interactive_browser_credential=True,
                                  managed_identity_client_id=params.get("client_id"))


class SharedTokenCredential:
    """One token for every thread and every SDK client of a run.

    Each client's auth policy keeps its own token, and threads starting together each miss it:
    about two fetches per VM thread without this (with the CLI credential, each one an `az`
    subprocess). Here the first caller fetches under a lock and the others wait for that token;
    it is fetched again only when it is about to expire, or when ARM's claims challenge asks.
    """

    REFRESH_SECONDS = 300  # fetch anew this long before expiry, as azure-core's own policy does

    def __init__(self, credential):
        self._credential = credential
        self._lock = threading.Lock()
        self._tokens = {}

    def get_token(self, *scopes, **kwargs):
        if kwargs.get("claims"):  # a challenge asks for a token with these claims: never a cached one
            return self._credential.get_token(*scopes, **kwargs)
        key = (scopes, kwargs.get("tenant_id"), bool(kwargs.get("enable_cae")))
        with self._lock:
            token = self._tokens.get(key)
            if token is None or token.expires_on - time.time() < self.REFRESH_SECONDS:
                token = self._tokens[key] = self._credential.get_token(*scopes, **kwargs)
            return token

    def close(self):
        close = getattr(self._credential, "close", None)
        if close:
            close()


def arm_operation_type(method):
    """ARM's throttling bucket for a request: reads, deletes or writes (each refilled on its own)."""
    return {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(method.upper(), "writes")


class ThrottlePacing:
    """One pause per ARM operation type, shared by every thread and client of a run.

    ARM's buckets are per principal, so when one request hears 429 + Retry-After, every other
    thread's request of that type would hear it too: all of them hold until then instead of
    each spending a try (and a token refill) to learn it. A thread the pause held then waits a
    random part of JITTER_SECONDS more (full jitter), so the threads one pause releases do not
    all send at the same instant and drain the refilled bucket into the next 429.
    """

    JITTER_SECONDS = 1.0

    def __init__(self, jitter=random.uniform):
        self._lock = threading.Lock()
        self._until = {}
        self._jitter = jitter  # jitter(low, high): injectable, for tests
        self.throttled = 0  # 429s heard, for the record

    def hold(self, kind):
        held = False
        while True:
            with self._lock:
                delay = self._until.get(kind, 0) - time.monotonic()
            if delay > 0:
                held = True
                time.sleep(delay)
                continue
            if not held:
                return
            held = False  # a 429 heard during the jitter sets a new pause: looked at again above
            spread = self._jitter(0, self.JITTER_SECONDS)
            if spread > 0:
                time.sleep(spread)

    def throttle(self, kind, seconds):
        with self._lock:
            self.throttled += 1
            self._until[kind] = max(self._until.get(kind, 0), time.monotonic() + seconds)


class PacingPolicy(HTTPPolicy):
    """Every try of a request waits out the run's pause for its type, and a 429 sets that pause."""

    def __init__(self, pacing):
        super(PacingPolicy, self).__init__()
        self._pacing = pacing

    def send(self, request):
        kind = arm_operation_type(request.http_request.method)
        self._pacing.hold(kind)
        response = self.next.send(request)
        if response.http_response.status_code == 429:
            self._pacing.throttle(kind, retry_after_seconds(response.http_response.headers))
        return response


def retry_after_seconds(headers, default=1.0):
    try:
        return max(float(headers.get("Retry-After")), 0.0)
    except (TypeError, ValueError):
        return default


class IdempotentRetryPolicy(RetryPolicy):
    """azure-core's retry (Retry-After honoured, exponential back-off otherwise), PATCH included.

    A 429 that says when to come back is not a failure of the request: it does not use up one
    of the tries, until the waits it asked for add up to THROTTLE_PATIENCE seconds for one call.
    """

    THROTTLE_PATIENCE = 600

    def _is_method_retryable(self, settings, request, response=None):
        if request.method.upper() == "PATCH":
            return True
        return super(IdempotentRetryPolicy, self)._is_method_retryable(settings, request, response)

    def increment(self, settings, response=None, error=None):
        http_response = getattr(response, "http_response", None)
        if error is None and http_response is not None and http_response.status_code == 429 \
                and http_response.headers.get("Retry-After") is not None:
            waited = settings.get("throttled_seconds", 0) + retry_after_seconds(http_response.headers)
            settings["throttled_seconds"] = waited
            if waited <= self.THROTTLE_PATIENCE:
                settings["total"] += 1
                settings["status"] += 1
        return super(IdempotentRetryPolicy, self).increment(settings, response=response, error=error)


def retry_policy():
    """Ten tries for server errors (azure-core would give up after three statuses); throttling waits."""
    return IdempotentRetryPolicy(retry_total=10, retry_status=10, retry_backoff_factor=0.8, retry_backoff_max=60)


def arm_error(err):
    """One line from an ARM error: `Code: message`."""
    if isinstance(err, HttpResponseError):
        code = getattr(getattr(err, "error", None), "code", None)
        message = getattr(getattr(err, "error", None), "message", None) or err.message or str(err)
        message = " ".join(str(message).split())
        return "%s: %s" % (code, message) if code else message
    return " ".join(str(err).split())


def run_azure_module(module, name, task, on_failure=None):
    """_runner.run_module for the Azure modules: the SDK is required and ARM errors are worded by arm_error."""
    run_module(module, name, task, requirements=[AZURE_SDK], describe=arm_error, on_failure=on_failure)


def is_not_found(err):
    return isinstance(err, ResourceNotFoundError) or getattr(err, "status_code", None) == 404


def as_rest(model):
    """A REST-shaped dict (the ARM JSON) of an SDK model, or None."""
    if model is None:
        return None
    return model.as_dict() if hasattr(model, "as_dict") else dict(model)


class Operations:
    """Every ARM write, in the order issued; safe to use from worker threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.items = []

    def add(self, vm, method, resource_id, change):
        item = {"vm": vm, "method": method, "id": resource_id, "change": change}
        with self._lock:
            self.items.append(item)
        return item

    def for_vm(self, vm):
        with self._lock:
            return [op for op in self.items if op["vm"] == vm]


class AzureSession:
    """Compute and network clients for one subscription, sharing one connection pool."""

    def __init__(self, params, pool_size=10, operations=None):
        if not HAS_AZURE:
            raise AzureConfigError("the Azure SDK is missing (%s): %s" % (AZURE_REQUIREMENTS, AZURE_IMPORT_ERROR))
        self.cloud = resolve_cloud(params)
        self.subscription_id = params.get("subscription_id")
        if not self.subscription_id:
            raise AzureConfigError("subscription_id is required (or set AZURE_SUBSCRIPTION_ID)")
        self.credential = SharedTokenCredential(build_credential(params, self.cloud))
        self.operations = operations if operations is not None else Operations()
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 10) + 4)
        session.mount("https://", adapter)
        common = {
            "base_url": self.cloud.arm_endpoint,
            "credential_scopes": [self.cloud.scope],
            "polling_interval": POLLING_FALLBACK_SECONDS,
            "transport": RequestsTransport(session=session, session_owner=False),
        }
        self._session = session
        self.pacing = ThrottlePacing()
        # A policy is a link in one client's pipeline (azure-core sets its `next`): each client
        # gets its own policies, or the second client's pipeline would carry the first's requests.
        self.compute = ComputeManagementClient(self.credential, self.subscription_id, retry_policy=retry_policy(),
                                               per_retry_policies=[PacingPolicy(self.pacing)], **common)
        self.network = NetworkManagementClient(self.credential, self.subscription_id, retry_policy=retry_policy(),
                                               per_retry_policies=[PacingPolicy(self.pacing)], **common)

    def close(self):
        self._session.close()
        self.credential.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def resource_id(self, resource_group, provider_type, name):
        return "/subscriptions/%s/resourceGroups/%s/providers/%s/%s" % (
            self.subscription_id, resource_group, provider_type, name)
