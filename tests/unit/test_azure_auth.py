"""Azure auth options, cloud endpoints and the retry policy every ARM client gets."""

from __future__ import annotations

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.sshca.azure.plugins.module_utils import _azure
from azure.core import PipelineClient
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest
from azure.identity import AzureCliCredential, ClientSecretCredential, ManagedIdentityCredential

LAB = {"arm_endpoint": "https://127.0.0.1:8443", "authority_host": "https://127.0.0.1:8443"}


def options(env=None, monkeypatch=None, **given):
    """The auth options as AnsibleModule would resolve them (env fallbacks included)."""
    for name in ("AZURE_SUBSCRIPTION_ID", "AZURE_TENANT", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_SECRET",
                 "AZURE_CLIENT_SECRET", "AZURE_CLOUD_ENVIRONMENT", "AZURE_AUTHORITY_HOST",
                 *_azure.ARM_ENDPOINT_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    result = ArgumentSpecValidator(_azure.AUTH_ARGUMENT_SPEC).validate(given)
    assert not result.error_messages
    return result.validated_parameters


@pytest.mark.parametrize(("cloud", "arm", "authority"), [
    ("AzureCloud", "https://management.azure.com", "https://login.microsoftonline.com"),
    ("AzureChinaCloud", "https://management.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
    ("AzureUSGovernment", "https://management.usgovcloudapi.net", "https://login.microsoftonline.us"),
])
def test_known_clouds(monkeypatch, cloud, arm, authority):
    resolved = _azure.resolve_cloud(options(monkeypatch=monkeypatch, cloud_environment=cloud))
    assert (resolved.arm_endpoint, resolved.authority_host, resolved.custom) == (arm, authority, False)
    assert resolved.scope == arm + "/.default"


def test_custom_endpoint_from_the_environment(monkeypatch):
    params = options({"AZURE_ARM_ENDPOINT": "https://127.0.0.1:8443/", "AZURE_AUTHORITY_HOST": "127.0.0.1:8443"},
                     monkeypatch)
    cloud = _azure.resolve_cloud(params)
    assert cloud.arm_endpoint == "https://127.0.0.1:8443"
    assert cloud.authority_host == "https://127.0.0.1:8443"
    assert cloud.scope == "https://127.0.0.1:8443/.default"
    assert cloud.custom


def test_cloud_environment_may_be_the_endpoint_url(monkeypatch):
    params = options(monkeypatch=monkeypatch, cloud_environment="https://127.0.0.1:9443",
                     authority_host="https://127.0.0.1:9443")
    assert _azure.resolve_cloud(params).arm_endpoint == "https://127.0.0.1:9443"


@pytest.mark.parametrize(("given", "message"), [
    ({"arm_endpoint": "https://127.0.0.1:8443"}, "authority_host is required with a custom ARM endpoint"),
    ({"cloud_environment": "AzureGermanCloud"}, "cloud_environment 'AzureGermanCloud' is not one of"),
    ({"arm_endpoint": "http://127.0.0.1:8443", "authority_host": "https://127.0.0.1"},
     "arm_endpoint must be an https URL"),
])
def test_endpoint_settings_that_cannot_work(monkeypatch, given, message):
    with pytest.raises(_azure.AzureConfigError, match=message):
        _azure.resolve_cloud(options(monkeypatch=monkeypatch, **given))


def test_azcollection_variable_names_are_read(monkeypatch):
    params = options({"AZURE_SECRET": "s1", "AZURE_TENANT": "t1", "AZURE_CLIENT_ID": "c1",
                      "AZURE_SUBSCRIPTION_ID": "sub"}, monkeypatch)
    assert (params["secret"], params["tenant"], params["client_id"], params["subscription_id"]) == \
        ("s1", "t1", "c1", "sub")


def test_azure_identity_variable_names_are_read(monkeypatch):
    params = options({"AZURE_CLIENT_SECRET": "s2", "AZURE_TENANT_ID": "t2"}, monkeypatch)
    assert (params["secret"], params["tenant"]) == ("s2", "t2")


def test_secret_is_no_log():
    assert _azure.AUTH_ARGUMENT_SPEC["secret"]["no_log"] is True


def test_service_principal_on_a_custom_authority_skips_instance_discovery(monkeypatch):
    params = options(monkeypatch=monkeypatch, tenant="t", client_id="c", secret="s", **LAB)  # noqa: S106
    credential = _azure.build_credential(params, _azure.resolve_cloud(params))
    assert isinstance(credential, ClientSecretCredential)
    # MSAL would otherwise ask a public host whether this authority is valid.
    assert credential._instance_discovery is False


@pytest.mark.parametrize(("source", "kind"), [("cli", AzureCliCredential), ("msi", ManagedIdentityCredential)])
def test_sources(monkeypatch, source, kind):
    params = options(monkeypatch=monkeypatch, auth_source=source)
    assert isinstance(_azure.build_credential(params, _azure.resolve_cloud(params)), kind)


def test_env_source_reads_the_environment_not_the_task(monkeypatch):
    params = options({"AZURE_TENANT": "env-tenant", "AZURE_CLIENT_ID": "env-client", "AZURE_SECRET": "env-secret"},
                     monkeypatch, auth_source="env", client_id="task-client", **LAB)
    credential = _azure.build_credential(params, _azure.resolve_cloud(params))
    assert isinstance(credential, ClientSecretCredential)
    assert (credential._tenant_id, credential._client_id) == ("env-tenant", "env-client")


def test_credential_source_names_what_is_missing(monkeypatch):
    params = options(monkeypatch=monkeypatch, auth_source="credential", client_id="c")
    with pytest.raises(_azure.AzureConfigError, match="needs tenant, secret"):
        _azure.build_credential(params, _azure.resolve_cloud(params))


def test_auto_on_a_custom_endpoint_never_falls_back_to_the_default_chain(monkeypatch):
    params = options(monkeypatch=monkeypatch, **LAB)
    with pytest.raises(_azure.AzureConfigError, match="needs tenant, client_id and secret"):
        _azure.build_credential(params, _azure.resolve_cloud(params))


class ScriptedTransport(HttpTransport):
    """Answers from a script of (status, headers); records each request's method."""

    def __init__(self, script):
        self.script = list(script)
        self.methods = []
        self.waits = []

    def send(self, request, **kwargs):
        import requests
        from azure.core.pipeline.transport._requests_basic import RequestsTransportResponse

        status, headers = self.script.pop(0)
        self.methods.append(request.method)
        raw = requests.Response()
        raw.status_code, raw._content = status, b"{}"
        raw.headers.update(headers)
        return RequestsTransportResponse(request, raw)

    def sleep(self, duration):
        self.waits.append(duration)

    def open(self):
        pass

    def close(self):
        pass

    def __exit__(self, *args):
        pass


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "GET"])
@pytest.mark.parametrize("status", [429, 503])
def test_throttled_writes_are_retried_after_the_servers_wait(method, status):
    transport = ScriptedTransport([(status, {"Retry-After": "7"}), (status, {"Retry-After": "3"}), (200, {})])
    policy = _azure.IdempotentRetryPolicy(retry_total=3)
    client = PipelineClient("https://127.0.0.1:1", transport=transport, policies=[policy])
    response = client.send_request(HttpRequest(method, "https://127.0.0.1:1/x"))
    assert response.status_code == 200
    assert transport.methods == [method] * 3
    assert transport.waits == [7, 3]  # the server's Retry-After, not a fixed interval


def test_a_throttled_spell_longer_than_three_answers_is_waited_out():
    transport = ScriptedTransport([(429, {"Retry-After": "1"})] * 6 + [(200, {})])
    client = PipelineClient("https://127.0.0.1:1", transport=transport, policies=[_azure.retry_policy()])
    assert client.send_request(HttpRequest("PUT", "https://127.0.0.1:1/x")).status_code == 200
    assert len(transport.methods) == 7


def test_waits_arm_asks_for_do_not_use_up_the_tries_but_server_errors_do():
    waited_out = ScriptedTransport([(429, {"Retry-After": "1"})] * 15 + [(200, {})])
    client = PipelineClient("https://127.0.0.1:1", transport=waited_out, policies=[_azure.retry_policy()])
    assert client.send_request(HttpRequest("PUT", "https://127.0.0.1:1/x")).status_code == 200
    failing = ScriptedTransport([(503, {"Retry-After": "1"})] * 15 + [(200, {})])
    client = PipelineClient("https://127.0.0.1:1", transport=failing, policies=[_azure.retry_policy()])
    assert client.send_request(HttpRequest("PUT", "https://127.0.0.1:1/x")).status_code == 503
    assert len(failing.methods) == 11  # the first try and ten retries


def test_throttling_waits_count_as_tries_beyond_the_patience():
    # 400 s asked: waited freely; at 800 s and 1,200 s in all, beyond the 600 s patience, each wait
    # uses up one of the two retries; the fourth 429 is the answer.
    transport = ScriptedTransport([(429, {"Retry-After": "400"})] * 4 + [(200, {})])
    client = PipelineClient("https://127.0.0.1:1", transport=transport,
                            policies=[_azure.IdempotentRetryPolicy(retry_total=2)])
    assert client.send_request(HttpRequest("GET", "https://127.0.0.1:1/x")).status_code == 429
    assert transport.waits == [400, 400, 400] and len(transport.methods) == 4


class Clock:
    """time.monotonic and time.sleep for _azure: sleeping moves the clock, and is recorded."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def test_a_429_pauses_every_client_for_that_operation_type_only(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(_azure, "time", clock)
    pacing = _azure.ThrottlePacing(jitter=lambda low, high: 0)  # the jitter has a test of its own

    def client(script):
        transport = ScriptedTransport(script)
        return transport, PipelineClient("https://127.0.0.1:1", transport=transport,
                                         policies=[_azure.retry_policy(), _azure.PacingPolicy(pacing)])

    first, throttled = client([(429, {"Retry-After": "3"}), (200, {})])
    assert throttled.send_request(HttpRequest("PUT", "https://127.0.0.1:1/a")).status_code == 200
    # Its retry waits the Retry-After (the transport's sleep, which this clock does not see), and the
    # pause holds that second try until the same moment: on a real clock, no wait is added.
    assert first.waits == [3] and clock.sleeps == [3]
    clock.sleeps.clear()
    clock.now -= 3  # another thread, sending while the pause still runs
    _reads, reader = client([(200, {})])
    _writes, writer = client([(200, {})])
    assert reader.send_request(HttpRequest("GET", "https://127.0.0.1:1/b")).status_code == 200
    assert clock.sleeps == []  # reads have their own bucket
    assert writer.send_request(HttpRequest("PUT", "https://127.0.0.1:1/c")).status_code == 200
    assert clock.sleeps == [3]  # held until the write pause ended, not sent to meet a 429 of its own


def test_threads_one_pause_releases_send_at_different_instants_within_the_jitter_bound(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(_azure, "time", clock)
    pacing = _azure.ThrottlePacing()  # the real random jitter: only the clock is a fake
    pacing.throttle("writes", 5)
    end = clock.now + 5
    released = []
    for _thread in range(8):  # each thread held from the same instant, on its own copy of the clock
        clock.now = end - 5
        pacing.hold("writes")
        released.append(clock.now)
    assert len(set(released)) == len(released)
    assert all(end <= moment <= end + _azure.ThrottlePacing.JITTER_SECONDS for moment in released)
    clock.sleeps.clear()
    pacing.hold("writes")  # no pause running: sent at once, no jitter
    pacing.hold("reads")
    assert clock.sleeps == []


class CountingCredential:
    """A credential whose token takes a while to come, as a real token endpoint's does."""

    def __init__(self, lifetime=3600):
        self.fetches = []
        self.lifetime = lifetime

    def get_token(self, *scopes, **kwargs):
        import time

        from azure.core.credentials import AccessToken

        self.fetches.append((scopes, kwargs))
        time.sleep(0.05)
        return AccessToken(f"token-{len(self.fetches)}", int(time.time()) + self.lifetime)


def test_one_token_for_every_thread_and_client():
    from concurrent.futures import ThreadPoolExecutor

    counting = CountingCredential()
    shared = _azure.SharedTokenCredential(counting)
    # 20 VM threads, each through the compute and the network client's policy at once.
    with ThreadPoolExecutor(max_workers=40) as pool:
        tokens = set(pool.map(lambda _n: shared.get_token("https://arm/.default").token, range(40)))
    assert tokens == {"token-1"} and len(counting.fetches) == 1


def test_a_token_about_to_expire_or_a_claims_challenge_fetches_anew():
    counting = CountingCredential(lifetime=_azure.SharedTokenCredential.REFRESH_SECONDS - 10)
    shared = _azure.SharedTokenCredential(counting)
    tokens = [shared.get_token("s").token, shared.get_token("s").token,  # expiring soon: not from the cache
              shared.get_token("s", claims='{"access_token":{}}').token]
    assert tokens == ["token-1", "token-2", "token-3"]
    assert counting.fetches[-1] == (("s",), {"claims": '{"access_token":{}}'})


def test_each_client_sends_through_its_own_pipeline(monkeypatch):
    """azure-core chains a pipeline by setting each policy's `next`: a policy object shared by two
    clients would send the first client's requests down the second client's chain."""
    params = options(monkeypatch=monkeypatch, tenant="t", client_id="c", secret="s", subscription_id="sub",  # noqa: S106
                     **LAB)
    with _azure.AzureSession(params) as session:
        for client in (session.compute, session.network):
            chain = client._client._pipeline._impl_policies  # azure-core's policies, in order
            retry = next(p for p in chain if isinstance(p, _azure.IdempotentRetryPolicy))
            assert retry.next is chain[chain.index(retry) + 1]
