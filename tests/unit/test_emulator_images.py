"""The emulator's choice of lab host kind for an Azure image reference (no lab host needed)."""

from __future__ import annotations

import pytest

from labkit.emulator.compute import lab_host_kind

NOBLE = {"suite": "trixie", "ssh_activation": "socket"}
BOOKWORM = {}  # hosts.start_host's default: bookworm with ssh.service


@pytest.mark.parametrize(("image", "kind"), [
    ({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}, NOBLE),
    ({"publisher": "canonical", "offer": "ubuntu-24_04-lts", "sku": "minimal", "version": "24.04.202501010"},
     NOBLE),
    ({"publisher": "Canonical", "offer": "0001-com-ubuntu-server-noble", "sku": "24_04-lts-gen2",
      "version": "latest"}, NOBLE),
    ({"publisher": "Canonical", "offer": "0001-com-ubuntu-server-noble-daily", "sku": "24_04-daily-lts",
      "version": "latest"}, NOBLE),
    ({"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2",
      "version": "latest"}, BOOKWORM),
    ({"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts", "version": "latest"},
     BOOKWORM),
    ({"publisher": "Canonical", "offer": "0001-com-ubuntu-server-focal", "sku": "20_04-lts-gen2",
      "version": "latest"}, BOOKWORM),
    ({"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"}, BOOKWORM),
    ({"publisher": "NotCanonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}, BOOKWORM),
    ({"id": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/images/golden"}, BOOKWORM),
])
def test_ubuntu_24_04_images_get_socket_activated_trixie_hosts_and_the_rest_bookworm(image, kind):
    assert lab_host_kind(image) == kind
