"""known_hosts and ssh_config entries per host: accumulate, rename, remove, parallel writers, bad input.

Real OpenSSH reads what we write: `ssh-keygen -F` finds the @cert-authority line for each name and
address, `ssh -G` resolves each Host entry.
"""

from __future__ import annotations

import multiprocessing
import subprocess
from pathlib import Path

import pytest
from ansible_collections.sshca.azure.plugins.module_utils._client_files import client_hosts_task
from ansible_collections.sshca.azure.plugins.module_utils._ssh_keys import KeyAction, KeypairFiles, SSHKeyError

from conftest import make_keypair


@pytest.fixture
def work(tmp_path) -> dict:
    ca = make_keypair(tmp_path, "host_ca")
    return {"known_hosts_path": str(tmp_path / "known_hosts"), "config_path": str(tmp_path / "ssh_config"),
            "host_ca_public_key": ca.public_text, "user": "azureuser",
            "identity_file": str(tmp_path / "admin" / "id_ed25519"),
            "certificate_file": str(tmp_path / "admin" / "id_ed25519-cert.pub")}


def run(work: dict, hosts: list[dict], state: str = "present", check: bool = False) -> dict:
    return client_hosts_task(dict(work, hosts=hosts, state=state), check)


def ca_lines_for(work: dict, name: str) -> list[str]:
    """The @cert-authority lines real ssh-keygen -F finds for a name or address."""
    proc = subprocess.run(["ssh-keygen", "-F", name, "-f", work["known_hosts_path"]], capture_output=True, text=True,
                          check=False)
    return [line for line in proc.stdout.splitlines() if line.startswith("@cert-authority")]


def resolved(work: dict, name: str) -> dict[str, str]:
    """What real ssh makes of `ssh -F ssh_config NAME`."""
    out = subprocess.run(["ssh", "-G", "-F", work["config_path"], name], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


PA = {"name": "pa", "address": "127.0.0.10", "private_ip": "10.0.1.4", "host_tags": {"role": "a"}}
PB = {"name": "pb", "address": "127.0.0.11", "private_ip": "10.0.1.5"}


def test_two_fleets_one_after_the_other_accumulate(work):
    first = run(work, [PA])
    assert first["changed"] and first["known_hosts"]["added"] == ["pa"]
    second = run(work, [PB])
    assert second["changed"] and second["hosts"] == ["pa", "pb"]
    for pattern in ("pa", "127.0.0.10", "10.0.1.4", "pb", "127.0.0.11"):
        assert len(ca_lines_for(work, pattern)) == 1, pattern
    assert resolved(work, "pa")["hostname"] == "127.0.0.10"
    assert resolved(work, "pb")["hostname"] == "127.0.0.11"
    conf = resolved(work, "pa")
    assert conf["user"] == "azureuser" and conf["stricthostkeychecking"] == "true"
    assert conf["userknownhostsfile"] == work["known_hosts_path"]
    assert conf["certificatefile"] == work["certificate_file"]
    for check in (True, False):
        assert not run(work, [PB, PA], check=check)["changed"]


def test_check_mode_writes_nothing_and_diff_shows_the_block(work):
    result = run(work, [PA], check=True)
    assert result["changed"] and not Path(work["known_hosts_path"]).exists()
    assert "sshca.azure:pa" in result["diff"][0]["after"] and result["diff"][0]["before"] == ""


def test_renamed_host_and_reused_address_replace_the_old_entry(work):
    run(work, [PA, PB])
    renamed = run(work, [dict(PA, name="pa-new")])
    assert renamed["known_hosts"]["removed"] == ["pa"] and renamed["known_hosts"]["added"] == ["pa-new"]
    assert renamed["ssh_config"]["removed"] == ["pa"]
    assert ca_lines_for(work, "pa") == [] and len(ca_lines_for(work, "127.0.0.10")) == 1
    moved = run(work, [dict(PB, address="127.0.0.12")])
    assert moved["known_hosts"]["updated"] == ["pb"]
    assert ca_lines_for(work, "127.0.0.11") == [] and resolved(work, "pb")["hostname"] == "127.0.0.12"


def test_absent_removes_only_the_named_hosts(work):
    run(work, [PA, PB])
    gone = run(work, [{"name": "pa"}], state="absent")
    assert gone["changed"] and gone["hosts"] == ["pb"]
    assert ca_lines_for(work, "pa") == [] and len(ca_lines_for(work, "pb")) == 1
    assert resolved(work, "pa")["hostname"] == "pa"  # no entry any more
    assert not run(work, [{"name": "pa"}], state="absent")["changed"]


def test_lines_outside_the_block_and_foreign_lines_in_it_are_kept(work):
    Path(work["known_hosts_path"]).write_text("github.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH1 x\n"
                                              "# BEGIN sshca.azure\n@cert-authority old,127.0.0.9 "
                                              + work["host_ca_public_key"].strip() + "\n# END sshca.azure\n")
    run(work, [PA])
    text = Path(work["known_hosts_path"]).read_text()
    assert text.startswith("github.example ssh-ed25519")
    assert len(ca_lines_for(work, "old")) == 1 and len(ca_lines_for(work, "pa")) == 1


def test_exclusive_keeps_the_listed_hosts_only_and_every_line_not_ours(work):
    Path(work["config_path"]).write_text("Host mine\n    HostName 127.0.0.9\n")
    run(work, [PA, PB])
    exclusive = dict(work, exclusive=True)
    for check in (True, False):
        pruned = run(exclusive, [PB], check=check)
        assert pruned["changed"] and pruned["known_hosts"]["removed"] == pruned["ssh_config"]["removed"] == ["pa"]
    assert ca_lines_for(work, "pa") == ca_lines_for(work, "10.0.1.4") == [] and len(ca_lines_for(work, "pb")) == 1
    assert resolved(work, "pa")["hostname"] == "pa" and resolved(work, "mine")["hostname"] == "127.0.0.9"
    assert not run(exclusive, [PB])["changed"]


def _add_one(args):
    work, index = args
    client_hosts_task(dict(work, hosts=[{"name": f"h{index}", "address": f"127.0.1.{index}"}], state="present"),
                      False)


def test_parallel_writers_lose_no_entry(work):
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pool.map(_add_one, [(work, i) for i in range(24)])
    result = run(work, [])
    assert result["hosts"] == sorted(f"h{i}" for i in range(24))
    assert not result["changed"]


def _make_key(path):
    return KeypairFiles(path, key_type="ed25519").apply({"key": KeyAction.CREATE}).openssh_no_comment()


def test_parallel_key_creation_agrees_on_one_key(tmp_path):
    path = str(tmp_path / "id_ed25519")
    with multiprocessing.get_context("fork").Pool(4) as pool:
        publics = pool.map(_make_key, [path] * 8)
    assert len(set(publics)) == 1
    assert Path(path + ".pub").read_text().startswith(publics[0])


@pytest.mark.parametrize(("hosts", "extra", "message"), [
    ([{"name": "bad name"}], {}, r"^hosts\[0\]\.name: 'bad name' is not a host name"),
    ([PA, dict(PB, name="pa")], {}, r"^hosts\[1\]\.name: pa is listed twice"),
    ([dict(PA, aliases=["a b"])], {}, r"^hosts\[0\]: 'a b' cannot be a known_hosts pattern"),
    ([PA], {"host_ca_public_key": None}, r"^host_ca_public_key: is required"),
    ([PA], {"host_ca_public_key": "ssh-ed25519 AAAA"}, r"^host_ca_public_key: "),
    ([PA], {"block_name": "a b"}, r"^block_name: "),
])
def test_bad_input_is_one_line_and_nothing_is_written(work, hosts, extra, message):
    run(work, [PB])
    before = {p: Path(work[p]).read_text() for p in ("known_hosts_path", "config_path")}
    with pytest.raises(SSHKeyError, match=message) as raised:
        run(dict(work, **extra), hosts)
    assert "\n" not in str(raised.value)
    assert {p: Path(work[p]).read_text() for p in before} == before


def test_a_ca_rotation_trusts_two_host_cas_for_every_host_then_one(work, tmp_path):
    run(work, [PA, PB])
    old, new = work["host_ca_public_key"], make_keypair(tmp_path, "next_host_ca").public_text
    both = dict(work, host_ca_public_key=old + new, all_hosts=True)
    for check, changed in ((True, True), (False, True), (True, False), (False, False)):
        result = run(both, [], check=check)
        assert result["changed"] is changed and result["known_hosts"]["updated"] == (["pa", "pb"] if changed else [])
    # Real ssh-keygen finds both CAs for each name and address the entry had (PA's private IP too).
    for pattern in ("pa", "127.0.0.10", "10.0.1.4", "pb", "127.0.0.11"):
        found = ca_lines_for(work, pattern)
        assert sorted(line.split()[2:4] for line in found) == sorted([old.split()[:2], new.split()[:2]]), pattern
    # A host enrolled during the overlap gets both too; retiring the old CA leaves the new one alone.
    PC = {"name": "pc", "address": "127.0.0.12"}
    run(dict(both, all_hosts=False), [PC])
    assert len(ca_lines_for(work, "pc")) == 2
    retired = run(dict(work, host_ca_public_key=new, all_hosts=True), [])
    assert retired["known_hosts"]["updated"] == ["pa", "pb", "pc"]
    for pattern in ("pa", "10.0.1.4", "pb", "pc"):
        assert [line.split()[2:4] for line in ca_lines_for(work, pattern)] == [new.split()[:2]], pattern
    assert resolved(work, "pb")["hostname"] == "127.0.0.11"  # the ssh_config is not touched
