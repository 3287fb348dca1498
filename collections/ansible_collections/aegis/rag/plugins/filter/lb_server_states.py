# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: lb_server_states
short_description: HAProxy's state of servers, from the loadbalancer role's tool
version_added: 0.1.0
description:
  - Turns the results of a loop of C(aegis-haproxy-server show BACKEND SERVER) (the tool of the
    C(aegis.rag.loadbalancer) role, run with M(ansible.builtin.command)) into one state per server.
  - Each loop item names its server as C(backend/server), such as C(aegis_api/api-3); its state is the tool's
    C(after) (C(admin) V(ready), V(drain) or V(maint), C(status) from the health checks, C(sessions)).
  - A server HAProxy does not have in its running configuration (the tool's exit status 2) is C(admin) V(absent).
  - Skipped items are left out. Any other exit status fails, with the tool's message.
positional: _input
options:
  _input:
    description: The loop's results (the C(results) of the registered variable), each with C(item), C(rc), C(stdout).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Ask HAProxy about each new server
  ansible.builtin.command:
    argv: [/usr/local/sbin/aegis-haproxy-server, show, "{{ item.split('/')[0] }}", "{{ item.split('/')[1] }}"]
  loop: [aegis_api/api-3, ollama/gpu-2]
  changed_when: false
  failed_when: false
  register: shown

- name: Keep the servers that are not in the pool
  ansible.builtin.set_fact:
    held_out: >-
      {{ shown.results | aegis.rag.lb_server_states | dict2items
         | rejectattr('value.admin', 'eq', 'ready') | map(attribute='key') | list }}
"""

RETURN = r"""
_value:
  description: Per server (C(backend/server)), its C(admin) state (V(ready), V(drain), V(maint) or V(absent)), its
    health-check C(status) (V(UP), V(DOWN), V(MAINT), ...; V(-) when absent) and its current C(sessions).
  type: dict
  sample:
    aegis_api/api-3: {admin: absent, status: "-", sessions: 0}
    ollama/gpu-2: {admin: maint, status: MAINT, sessions: 0}
"""

import json

from ansible.errors import AnsibleFilterError

ABSENT = {"admin": "absent", "status": "-", "sessions": 0}  # the tool's exit status 2: no such server


def lb_server_states(results):
    if not isinstance(results, list):
        raise AnsibleFilterError("lb_server_states expects a loop's results (a list), got %s" % type(results).__name__)
    states = {}
    for result in results:
        if not isinstance(result, dict) or result.get("skipped") or "rc" not in result:
            continue
        server = str(result.get("item"))
        if result["rc"] == 2:
            states[server] = dict(ABSENT)
        elif result["rc"] == 0:
            after = json.loads(result.get("stdout") or "{}").get("after") or {}
            states[server] = {"admin": after.get("admin", "?"), "status": after.get("status", "?"),
                              "sessions": after.get("sessions", 0)}
        else:
            raise AnsibleFilterError("HAProxy did not answer about %s (exit status %s): %s" % (
                server, result["rc"], (result.get("stderr") or result.get("msg") or "no output").strip()))
    return states


class FilterModule(object):
    def filters(self):
        return {"lb_server_states": lb_server_states}
