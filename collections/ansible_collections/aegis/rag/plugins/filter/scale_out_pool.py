# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: scale_out_pool
short_description: Where a new host stands in each load balancer's pool, before and after a scale-out
version_added: 0.1.0
description:
  - For the playbook C(aegis.rag.scale_out). Given a new host's servers (C(backend/server)) and each load balancer's
    states of the new servers before and after the run (from P(aegis.rag.lb_server_states#filter)), one row per load
    balancer and server.
  - A server is C(held_out) when it was not in the pool before (C(admin) other than V(ready), that is V(absent),
    V(maint) or V(drain)), and C(joined) when it was held out and is V(ready) after.
  - A load balancer or server missing from O(before) or O(after) counts as V(unknown) (not read, such as a load
    balancer that failed first).
positional: _input, before, after
options:
  _input:
    description: The host's servers, C(backend/server) (C(aegis_api/api-3), C(ollama/api-3)).
    type: list
    elements: str
    required: true
  before:
    description: Per load balancer, its states of the new servers before the run, by server (each with C(admin) and
      C(status)).
    type: dict
    required: true
  after:
    description: The same after the run (equal to O(before) in check mode).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Where this host stands on every load balancer
  ansible.builtin.set_fact:
    pool: "{{ ['aegis_api/' ~ inventory_hostname] | aegis.rag.scale_out_pool(before_by_lb, after_by_lb) }}"
"""

RETURN = r"""
_value:
  description: One row per load balancer (in the order of O(before)) and server.
  type: list
  elements: dict
  sample:
    - {lb: lb-1, backend: aegis_api, server: api-3, before: absent, after: ready, status: UP, held_out: true,
       joined: true}
"""

from ansible.errors import AnsibleFilterError

UNKNOWN = {"admin": "unknown", "status": "?"}


def scale_out_pool(servers, before, after):
    if not isinstance(before, dict) or not isinstance(after, dict):
        raise AnsibleFilterError("scale_out_pool expects before and after as {load balancer: {server: state}}")
    rows = []
    for lb, states in before.items():
        for name in servers:
            was = (states or {}).get(name) or UNKNOWN
            now = (after.get(lb) or {}).get(name) or UNKNOWN
            backend, dummy, server = str(name).partition("/")
            held_out = was["admin"] != "ready"
            rows.append({"lb": lb, "backend": backend, "server": server, "before": was["admin"],
                         "after": now["admin"], "status": now.get("status", "?"), "held_out": held_out,
                         "joined": held_out and now["admin"] == "ready"})
    return rows


class FilterModule(object):
    def filters(self):
        return {"scale_out_pool": scale_out_pool}
