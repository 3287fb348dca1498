# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: remediation_plan
short_description: Which runbook repairs an alert, and on which inventory host
version_added: 0.1.0
description:
  - Maps an Alertmanager alert (as the C(aegis.rag.alertmanager) event source passes it) to its runbook with the
    first entry of O(runbooks) whose C(alert) and C(labels) equal the alert's labels.
  - The alert's C(instance) label names the host to limit the runbook to. It may be C(address:port), C(address) or
    a probed URL (C(http://address:port/path), the blackbox exporter's); the address is compared, ignoring case,
    with each host of the entry's C(tier) group by its inventory name, C(ansible_host) and
    C(monitoring_target_address). Hosts sharing an address are told apart by the port in the entry's C(port_var)
    host variable (else C(default_port)).
  - An alert without an C(instance) label (an aggregate, such as the error rate of all API hosts) is planned for
    the whole tier (the group).
  - Never fails on an alert it cannot plan; the plan's C(error) says why, and P(aegis.rag.remediation_guard#module)
    fails with it (after its off switches).
positional: _input, runbooks, hostvars, groups
options:
  _input:
    description: The alert, with C(status), C(labels) (C(alertname), C(instance), ...) and C(fingerprint).
    type: dict
    required: true
  runbooks:
    description:
      - The alert to runbook map, tried in order. Each entry has C(alert) (the alert name), C(runbook) (a playbook,
        by FQCN or path), C(tier) (the inventory group the runbook repairs) and optionally C(labels) (labels that
        must also be equal), C(port_var), C(default_port) and C(extra_vars) (given to the runbook).
    type: list
    elements: dict
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
  groups:
    description: The play's C(groups).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Plan the remediation of the alert the rulebook passed
  vars:
    runbooks:
      - {alert: AegisServiceDown, labels: {service: aegis-api}, runbook: aegis.rag.runbook_api_failure,
         tier: aegis_api, port_var: aegis_api_port, default_port: 8910}
  ansible.builtin.set_fact:
    plan: "{{ aegis_alert | aegis.rag.remediation_plan(runbooks, hostvars, groups) }}"
# {"alert": "AegisServiceDown", "instance": "10.0.0.11:8910", "host": "api-1", "limit": "api-1",
#  "runbook": "aegis.rag.runbook_api_failure", "tier": "aegis_api", "error": null, ...}
"""

RETURN = r"""
_value:
  description:
    - The plan. C(alert), C(status), C(fingerprint) (Alertmanager's, or one made from the labels), C(instance),
      C(labels), C(runbook), C(tier), C(host) (null for a tier-wide alert), C(limit) (the host, else the tier),
      C(extra_vars) and C(error) (null, or why the alert cannot be remediated).
  type: dict
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence
from ansible_collections.aegis.rag.plugins.module_utils.remediation import ADDRESS_VARS, plan_remediation


def _candidates(hostvars, groups):
    def group_hosts(tier, entry):
        if tier not in groups:
            return None
        hosts = []
        for name in groups[tier]:
            host = hostvars[name]
            addresses = [name] + [str(host[var]) for var in ADDRESS_VARS if host.get(var)]
            port = host.get(entry["port_var"]) if entry.get("port_var") else None
            hosts.append({"name": name, "addresses": addresses,
                          "port": port if port is not None else entry.get("default_port")})
        return hosts
    return group_hosts


def remediation_plan(alert, runbooks, hostvars, groups):
    if not isinstance(alert, dict):
        raise AnsibleFilterError("remediation_plan: the alert must be a dict, got %s" % type(alert).__name__)
    if not is_sequence(runbooks) or not all(isinstance(entry, dict) for entry in runbooks):
        raise AnsibleFilterError("remediation_plan: runbooks must be a list of dicts")
    return plan_remediation(alert, list(runbooks), _candidates(hostvars, groups))


class FilterModule(object):
    def filters(self):
        return {"remediation_plan": remediation_plan}
