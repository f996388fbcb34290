# -*- coding: utf-8 -*-
# Copyright: sshca.azure contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # What check_mode, diff_mode and idempotent mean; each module states its own `support`. Every
    # module extends this fragment, so it also names the collection's authors once.
    DOCUMENTATION = r"""
author:
  - sshca.azure developers (@sshca)
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return a prediction of its changed status without modifying the target.
  diff_mode:
    description: Returns details on what has changed (or would change in check mode) when run in diff mode.
  idempotent:
    description:
      - When run twice in a row with the same arguments outside check mode, the second run reports no change
        and changes nothing.
      - In check mode, its prediction of C(changed) is the value a real run would report.
"""

    # For modules that only read: nothing to diff, always safe in check mode.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: This action does not modify state.
  diff_mode:
    support: N/A
    details: This action does not modify state.
  idempotent:
    support: full
"""

    # For modules that change things and fully support check mode, diff mode and idempotence; listed after
    # the plain fragment, whose descriptions it keeps. Each module adds its own `details`.
    FULL_SUPPORT = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
"""
