# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: api_probe
short_description: One Aegis API host's state from aegis.rag.health_check's /health and /ready checks
version_added: 0.1.0
description:
  - Turns the C(checks) that M(aegis.rag.health_check) returns for O(aegis.checks=[health, ready]) into the API
    host's state, as C(runbook_api_failure) reports and decides on it.
  - V(ready) when C(/health) is ok and C(/ready) answers 200 (optional dependencies may fail); V(not ready) when only
    C(/health) is ok; V(down) otherwise.
positional: _input
options:
  _input:
    description: The C(checks) of a M(aegis.rag.health_check) result with C(aegis_health) and C(aegis_ready).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Ask /health and /ready
  aegis.rag.health_check:
    aegis: {url: "http://127.0.0.1:8910", checks: [health, ready]}
    fail_on_failure: false
  register: probe

- name: Keep the host's state
  ansible.builtin.set_fact:
    api_state: "{{ probe.checks | aegis.rag.api_probe }}"
"""

RETURN = r"""
_value:
  description:
    - "C(state) (V(ready), V(not ready), V(down)); C(health) (V(ok), C(HTTP <status>) or what failed); C(ready)
      (V(ready), C(HTTP 503: not ready), C(HTTP <status>) or what failed); C(ready_status) (the HTTP status of
      C(/ready), -1 when none came); C(dependencies) as C(/ready) reported them (name, status, required,
      latency_ms, detail); C(failing_required) and C(failing_optional), the dependencies not ok."
  type: dict
  sample:
    state: not ready
    health: ok
    ready: "HTTP 503: not ready"
    ready_status: 503
    dependencies:
      - {name: vector_store, status: failed, required: true, latency_ms: 2.5, detail: "Connection refused"}
    failing_required:
      - {name: vector_store, status: failed, required: true, latency_ms: 2.5, detail: "Connection refused"}
    failing_optional: []
"""

from ansible.errors import AnsibleFilterError


def _described(check, ok_word, not_ready_word=None):
    if check["status"] in ("ok", "warning"):
        return ok_word
    status = check.get("http_status")
    if status == 503 and not_ready_word:
        return "HTTP 503: %s" % not_ready_word
    return "HTTP %s" % status if status and status != 200 else check.get("detail") or "no answer"


def api_probe(checks):
    if not isinstance(checks, list):
        raise AnsibleFilterError("api_probe expects aegis.rag.health_check's checks (a list), got %s"
                                 % type(checks).__name__)
    by_name = {c.get("name"): c for c in checks if isinstance(c, dict)}
    missing = [name for name in ("aegis_health", "aegis_ready") if name not in by_name]
    if missing:
        raise AnsibleFilterError("api_probe needs the checks aegis_health and aegis_ready (missing: %s)"
                                 % ", ".join(missing))
    health, ready = by_name["aegis_health"], by_name["aegis_ready"]
    health_ok, ready_ok = health["status"] == "ok", ready["status"] in ("ok", "warning")
    dependencies = list(ready.get("dependencies") or [])
    failing = [dep for dep in dependencies if dep.get("status") != "ok"]
    return {
        "state": "ready" if health_ok and ready_ok else ("not ready" if health_ok else "down"),
        "health": _described(health, "ok"),
        "ready": _described(ready, "ready", "not ready"),
        "ready_status": ready.get("http_status") or -1,
        "dependencies": dependencies,
        "failing_required": [dep for dep in failing if dep.get("required", True)],
        "failing_optional": [dep for dep in failing if not dep.get("required", True)],
    }


class FilterModule(object):
    def filters(self):
        return {"api_probe": api_probe}
