"""The glue every module shares: a missing library is named, input errors are one line, the
unexpected comes with a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest
from ansible.module_utils._internal import _traceback
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sshca.azure.plugins.module_utils._runner import InputError, run_module

from tools.collection import collection_env, collections_root

# Each module, run the way Ansible runs it (main() with its arguments), in a Python that cannot
# import cryptography or the Azure SDK.
WITHOUT_LIBRARIES = r"""
import contextlib, importlib, io, json, sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cryptography", "bcrypt", "azure"):
            raise ImportError("No module named %r" % name)

sys.meta_path.insert(0, Missing())
from ansible.module_utils.testing import patch_module_args

results = {}
for module, args in json.loads(sys.argv[1]).items():
    printed = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(printed):
        try:
            importlib.import_module("ansible_collections.sshca.azure.plugins.modules." + module).main()
        except SystemExit:
            pass
    results[module] = json.loads(printed.getvalue())
print(json.dumps(results))
"""
MODULE_ARGS = {
    "ssh_keypair": {"path": "/nonexistent/k"},
    "ssh_ca": {"path": "/nonexistent/ca", "allow_unencrypted": True},
    "ssh_cert": {"type": "user", "ca_path": "/nonexistent/ca", "public_key": "x", "path": "/nonexistent/c",
                 "principals": ["a"]},
    "ssh_cert_info": {"content": "x"},
    "azure_vm": {"resource_group": "rg", "name": "web-1"},
    "azure_vm_info": {},
}
AZURE_SDK = "azure-identity, azure-mgmt-compute and azure-mgmt-network"
NEEDS = {"azure_vm": AZURE_SDK, "azure_vm_info": AZURE_SDK}


@pytest.fixture(scope="module")
def without_libraries():
    env = collection_env({"PYTHONPATH": str(collections_root())})
    proc = subprocess.run([sys.executable, "-c", WITHOUT_LIBRARIES, json.dumps(MODULE_ARGS)], capture_output=True,
                          text=True, env=env, check=True, timeout=120)
    return json.loads(proc.stdout)


@pytest.mark.parametrize("module", MODULE_ARGS)
def test_every_module_names_the_library_it_misses(without_libraries, module):
    result = without_libraries[module]
    assert result["failed"]
    needed = NEEDS.get(module, "cryptography")
    assert result["msg"].startswith(f"Failed to import the required Python library ({needed})")
    assert "is not defined" not in json.dumps(result)


def test_sshd_cert_trust_runs_on_a_host_python_without_cryptography(tmp_path):
    # It runs on the managed host's python3, where the collection's controller libraries are not.
    trusted = tmp_path / "sshca" / "trusted_user_ca_keys.pub"
    args = {"sshd_cert_trust": {"trusted_ca_keys_path": str(trusted), "trusted_ca_keys": "ssh-ed25519 AAAAuser\n"}}
    proc = subprocess.run([sys.executable, "-c", WITHOUT_LIBRARIES, json.dumps(args)], capture_output=True,
                          text=True, env=collection_env({"PYTHONPATH": str(collections_root())}), check=True,
                          timeout=120)
    result = json.loads(proc.stdout)["sshd_cert_trust"]
    assert result["changed"] and not result.get("failed"), result
    assert trusted.read_text() == "ssh-ed25519 AAAAuser\n"


@pytest.fixture(autouse=True)
def tracebacks_on(monkeypatch):
    """Tracebacks captured, as -vvv asks. Whether they are is decided once per process (or by the
    controller's display, once other tests import it), so each test says it here."""
    monkeypatch.setattr(_traceback, "_is_traceback_enabled", lambda event: True)


def run(task, **kwargs) -> dict:
    printed = io.StringIO()
    with patch_module_args({}), contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        run_module(AnsibleModule(argument_spec={}), "demo", task, **kwargs)
    return json.loads(printed.getvalue())


def test_an_input_error_is_its_one_line():
    def task():
        raise InputError("path: /x does not exist")
    result = run(task, on_failure=lambda: {"operations": ["PUT a"]})
    assert result["failed"] and result["msg"] == "path: /x does not exist"
    assert result["operations"] == ["PUT a"]


def test_the_unexpected_is_named_with_its_traceback():
    def task():
        raise KeyError("oops")
    result = run(task, describe=lambda err: f"described {err!r}")
    assert result["msg"] == "demo failed: described KeyError('oops')"
    assert "Traceback" in result["exception"] and "raise KeyError" in result["exception"]


def test_a_result_that_says_failed_fails_with_everything_it_holds():
    result = run(lambda: {"failed": True, "msg": "vm-2: refused", "vms": [1, 2], "changed": True})
    assert (result["failed"], result["msg"], result["vms"], result["changed"]) == (True, "vm-2: refused", [1, 2], True)


def test_success_exits_with_the_result():
    result = run(lambda: {"changed": False, "answer": 42})
    assert result["answer"] == 42 and not result.get("failed")
