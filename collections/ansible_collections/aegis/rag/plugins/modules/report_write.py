#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: report_write
short_description: Write a runbook's JSON and Markdown report on the controller
version_added: 0.1.0
description:
  - Writes O(document) as C(<dir>/<name>-<stamp>.json) and O(markdown) as C(<dir>/<name>-<stamp>.md) on the
    controller, creating O(dir) when missing. Each file is written to a temporary file in O(dir) and renamed, so a
    reader never sees half a report.
  - An action plugin, run in the controller's own process (no module is sent anywhere) whatever the task's host or
    C(delegate_to). The role P(aegis.rag.report#role) uses it.
  - A report is not a change of the fleet, so the task never reports C(changed).
author:
  - Aegis maintainers (@aegis-rag)
extends_documentation_fragment:
  - aegis.rag.attributes
attributes:
  check_mode:
    support: full
    details:
      - The report is written in check mode too; it then says what would be done. Skip the task to write none.
  diff_mode:
    support: none
options:
  dir:
    description: Directory of the reports; a relative path is relative to the directory ansible-playbook runs in.
    type: path
    required: true
  name:
    description: The runbook's name, the files' prefix; letters, digits, C(_) and C(-).
    type: str
    required: true
  stamp:
    description: The report's time, the files' suffix (C(YYYYMMDDTHHMMSSZ)); letters, digits, C(_) and C(-).
    type: str
    required: true
  document:
    description: The JSON report.
    type: dict
    required: true
  markdown:
    description: The Markdown report's text.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Write the report
  aegis.rag.report_write:
    dir: ./reports
    name: runbook_llm
    stamp: "{{ now(utc=true).strftime('%Y%m%dT%H%M%SZ') }}"
    document: "{{ report_doc }}"
    markdown: "{{ lookup('ansible.builtin.template', 'report.md.j2') }}"
"""

RETURN = r"""
files:
  description: The files written.
  returned: success
  type: dict
  contains:
    json:
      description: Path of the JSON report.
      type: str
      sample: ./reports/runbook_llm-20261206T031500Z.json
    markdown:
      description: Path of the Markdown report.
      type: str
      sample: ./reports/runbook_llm-20261206T031500Z.md
"""
