# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: unknown_variables
short_description: The variable names that are not declared, each with the closest declared name
version_added: 0.1.0
description:
  - Of the names in the input (e.g. those the C(ansible.builtin.varnames) lookup finds), returns those that are
    neither in O(declared) nor in O(ignored), sorted and without duplicates, each with the declared name closest to
    it (Python's C(difflib.get_close_matches)), so that a misspelt variable can be reported with the one meant.
  - The role C(aegis.rag.runbook_defaults) uses it to fail on a misspelt runbook variable.
positional: _input, declared
options:
  _input:
    description: The names to check.
    type: list
    elements: str
    required: true
  declared:
    description: The declared names (a list, or a dict whose keys are the names, such as an argument spec's options).
    type: raw
    required: true
  ignored:
    description: Names that are neither declared nor reported (variables of the same prefix that belong elsewhere).
    type: list
    elements: str
    default: []
  cutoff:
    description: How close (0 to 1, difflib's ratio) a declared name must be to be suggested.
    type: float
    default: 0.8
"""

EXAMPLES = r"""
- name: Fail on a runbook variable that is not declared
  vars:
    unknown: >-
      {{ query('ansible.builtin.varnames', '^aegis_runbook_')
         | aegis.rag.unknown_variables(['aegis_runbook_latency_window', 'aegis_runbook_delegate_to']) }}
  ansible.builtin.assert:
    that: unknown | length == 0
    fail_msg: >-
      {% for u in unknown %}{{ u.name }} is not a runbook variable{{ ('; did you mean ' ~ u.suggestion ~ '?')
      if u.suggestion else '.' }} {% endfor %}
"""

RETURN = r"""
_value:
  description: >-
    One entry per unknown name, sorted by name: C(name), and C(suggestion), the closest declared name (none when no
    declared name is close enough).
  type: list
  elements: dict
  sample: [{"name": "aegis_runbook_latncy_window", "suggestion": "aegis_runbook_latency_window"}]
"""

import difflib

from ansible.errors import AnsibleFilterError


def _names(value, what):
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise AnsibleFilterError("unknown_variables: %s must be a list of names, got %s" % (what, type(value).__name__))
    return [str(name) for name in value]


def unknown_variables(names, declared, ignored=None, cutoff=0.8):
    declared = sorted(set(_names(declared, "declared")))
    known = set(declared) | set(_names(ignored or [], "ignored"))
    return [
        {"name": name, "suggestion": next(iter(difflib.get_close_matches(name, declared, n=1, cutoff=float(cutoff))),
                                          None)}
        for name in sorted(set(_names(names, "the input")) - known)
    ]


class FilterModule(object):
    def filters(self):
        return {"unknown_variables": unknown_variables}
