"""The lab writes the Podman settings these machines need without losing a user's own."""

from __future__ import annotations

import tomllib

from labkit import podman


def test_settings_are_added_to_an_existing_file_and_kept(tmp_path):
    conf = tmp_path / "containers.conf"
    conf.write_text('# site settings\n[engine]\nruntime = "crun"\nevents_logger = "file"\n\n[network]\nx = 1\n')
    assert podman.configure(conf) is True
    parsed = tomllib.loads(conf.read_text())
    assert parsed["engine"] == {"runtime": "runc", "events_logger": "file"}
    assert parsed["network"] == {"x": 1}
    assert parsed["containers"]["default_ulimits"] == ["nofile=10000:10000", "nproc=1000:1000"]
    assert conf.read_text().startswith("# site settings\n")


def test_writing_twice_changes_nothing(tmp_path):
    conf = tmp_path / "containers.conf"
    assert podman.configure(conf) is True
    first = conf.read_text()
    assert podman.configure(conf) is False
    assert conf.read_text() == first
