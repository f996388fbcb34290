# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every sshca.azure module's main() shares: checking its libraries and reporting failures once.

    module = AnsibleModule(argument_spec=..., supports_check_mode=True)
    run_module(module, "ssh_cert", lambda: certificate_task(module.params, ...),
               requirements=[CRYPTOGRAPHY])

InputError is the base of every error a user fixes by changing an input (SSHKeyError,
AzureConfigError, AzureRuleError, VMInputError): its message is one line naming the input, and
it is reported as it is. Anything else is a bug or an outage: reported as "<module> failed: ...",
with the traceback for -vvv.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import missing_required_lib


class InputError(ValueError):
    """A problem with the task's input; the message is one line that names the input."""


class Requirement:
    """A library a module needs: its pip name, whether it imported, and the import error."""

    def __init__(self, name, available, import_error):
        self.name, self.available, self.import_error = name, available, import_error


def run_module(module, name, task, requirements=(), describe=str, on_failure=None):
    """Run `task()` and exit with the result dict it returns (fail_json when it says `failed`), its
    `diff` only in diff mode.

    describe(err) words an unexpected error in one line (arm_error for Azure's);
    on_failure() gives result keys a failure still reports (the writes already issued, say).
    """
    for requirement in requirements:
        if not requirement.available:
            error = requirement.import_error
            module.fail_json(msg=missing_required_lib(requirement.name), exception="".join(
                traceback.format_exception(type(error), error, error.__traceback__)))
    extra = on_failure or dict
    try:
        result = task()
    except InputError as err:
        module.fail_json(msg=str(err), **extra())
    except Exception as err:  # unexpected: one line, and the traceback for -vvv
        module.fail_json(msg="%s failed: %s" % (name, describe(err)), exception=traceback.format_exc(), **extra())
    if not module._diff:  # a task may always compute its diff; it is reported only in diff mode
        result.pop("diff", None)
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)
