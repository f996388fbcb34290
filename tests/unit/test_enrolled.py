"""Where a host certificate is in its life, from the registry tags: the rule renew.yml re-signs by."""

from __future__ import annotations

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._enrolled import cert_state, host_tags, registry_record

NOW = 1_800_000_000
DAY = 86400


@pytest.mark.parametrize(("after", "before", "state"), [
    (NOW - 10 * DAY, NOW + 20 * DAY, "valid"),
    (NOW - 19 * DAY, NOW + 11 * DAY, "valid"),        # 11 of 30 days left: more than a third
    (NOW - 21 * DAY, NOW + 9 * DAY, "renewal_due"),   # 9 of 30 days left
    (NOW - 30 * DAY, NOW, "expired"),
    (NOW - 31 * DAY, NOW - DAY, "expired"),
    ("2027-01-05T08:00:00Z", "2027-02-04T08:00:00Z", "valid"),
    ("not a time", "2027-02-04T08:00:00Z", "unknown"),
    (NOW, NOW - 1, "unknown"),
])
def test_cert_state(after, before, state):
    found = cert_state(after, before, NOW)
    assert found["state"] == state
    assert found["renewal_due"] == (state in ("renewal_due", "expired"))
    assert found["expired"] == (state == "expired")


def test_registry_record_needs_the_enrollment_tag():
    vm = {"name": "web-1", "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web-1",
          "public_ip": None, "private_ip": "10.0.0.4",
          "tags": {"role": "web", "sshca.azure.vm": "web-1", "sshca-enrolled": "2027-01-05T08:00:00Z",
                   "sshca-host-cert-serial": "42", "sshca-host-cert-expires": "2027-02-04T08:00:00Z"}}
    record = registry_record(vm, now=NOW)
    assert record["ansible_host"] == "10.0.0.4" and record["sshca_resource_group"] == "rg"
    assert record["sshca_host_cert_serial"] == 42 and record["sshca_host_tags"] == {"role": "web"}
    assert registry_record(dict(vm, tags=host_tags(vm["tags"])), now=NOW) is None
