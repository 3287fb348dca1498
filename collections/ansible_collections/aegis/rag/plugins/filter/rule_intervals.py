# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: rule_intervals
short_description: Shorten the durations of a Prometheus rule file (a test fleet's alerts fire and resolve sooner)
version_added: 0.1.0
description:
  - Rewrites the text of a Prometheus rule file, comments kept. O(alert_for) replaces the C(for:) duration of every
    alert. O(rate_window) replaces every 5-minute range selector (C([5m]), the window of the rules' rates and
    ratios), so a fault that stopped leaves such a rate after O(rate_window), not after 5 minutes. Recording rules
    keep their names (C(..._rate5m)).
  - An empty value keeps the file's own durations. Both must be Prometheus durations (C(10s), C(1m), C(1h30m)).
positional: _input
options:
  _input:
    description: The rule file's text.
    type: str
    required: true
  alert_for:
    description: Duration for every alert's C(for:); empty keeps each rule's own.
    type: str
    default: ""
  rate_window:
    description: Range replacing every C([5m]); empty keeps 5 minutes.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Install the rules with a test fleet's short intervals
  ansible.builtin.copy:
    content: "{{ lookup('ansible.builtin.file', 'rules/aegis-alerts.yml') | aegis.rag.rule_intervals('10s', '1m') }}"
    dest: /etc/prometheus/rules/aegis-alerts.yml
    mode: "0644"
    validate: promtool check rules %s
"""

RETURN = r"""
_value:
  description: The rule file's text with the durations replaced.
  type: str
"""

import re

from ansible.errors import AnsibleFilterError

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
FOR_LINE = re.compile(r"(?m)^(\s+for:[ \t]*)\S.*$")
FIVE_MINUTES = re.compile(r"\[5m\]")


def _duration(name, value):
    value = "" if value is None else str(value).strip()
    if value and not DURATION.match(value):
        raise AnsibleFilterError("rule_intervals: %s must be a Prometheus duration such as 10s or 1m, got %r"
                                 % (name, value))
    return value


def rule_intervals(text, alert_for="", rate_window=""):
    if not isinstance(text, str):
        raise AnsibleFilterError("rule_intervals: expects the rule file's text, got %s" % type(text).__name__)
    alert_for, rate_window = _duration("alert_for", alert_for), _duration("rate_window", rate_window)
    if alert_for:
        text = FOR_LINE.sub(lambda m: m.group(1) + alert_for, text)
    if rate_window:
        text = FIVE_MINUTES.sub("[%s]" % rate_window, text)
    return text


class FilterModule(object):
    def filters(self):
        return {"rule_intervals": rule_intervals}
