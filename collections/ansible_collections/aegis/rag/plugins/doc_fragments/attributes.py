# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # What each attribute means; every module then states its own support level.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and predict whether something would change, without changing anything.
  diff_mode:
    description: Returns what changed (or would change in check mode) as before and after, when run with --diff.
"""

    # Use together with the standard fragment for modules that only read.
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This module only reads, so it runs normally in check mode.
  diff_mode:
    support: N/A
    details:
      - This module only reads; there is nothing to compare.
"""
