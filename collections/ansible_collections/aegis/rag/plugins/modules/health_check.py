#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: health_check
short_description: Check the Aegis stack (API, Qdrant, Ollama, Jina, any URL) concurrently
version_added: 0.1.0
description:
  - Runs the operations manual's health checks as one task. Every configured check runs at the same
    time in its own thread, each with its own timeout, so one hung endpoint costs one timeout, not the
    sum of all of them. The module returns within its longest timeout plus a fraction of a second.
  - "Checks: Aegis C(/health), C(/ready) and a C(/chat) probe (the manual's C(test query) must get an
    C(answer)); Qdrant C(/readyz); Ollama C(/api/tags) with the required models present; Jina (a one-item
    embeddings call, only when an API key is given); any extra URL with its expected status."
  - A check is configured by giving its section (O(aegis), O(qdrant), O(ollama), O(jina), O(urls)).
  - The module fails, listing what failed, when a required check fails. A check that is not required
    (Jina always, others with C(required=false)) reports V(warning) instead.
  - The module never changes anything; C(changed) is always V(false).
author:
  - Aegis maintainers (@aegis-rag)
extends_documentation_fragment:
  - aegis.rag.attributes
attributes:
  check_mode:
    support: full
    details:
      - The probes are read-only, so they run in check mode too. The C(/chat) probe asks one question
        (it may call the LLM) and stores nothing.
  diff_mode:
    support: N/A
    details:
      - This module only reads; there is nothing to compare.
options:
  timeout:
    description:
      - Default timeout in seconds of each check; a section's own C(timeout) overrides it.
    type: float
    default: 10.0
  validate_certs:
    description:
      - Verify TLS certificates of HTTPS endpoints.
    type: bool
    default: true
  fail_on_failure:
    description:
      - Fail the task when a required check fails. With V(false) the task succeeds and RV(failed_checks) lists
        the failed checks, so a playbook can print them before failing.
    type: bool
    default: true
  aegis:
    description:
      - Aegis API checks.
    type: dict
    suboptions:
      url:
        description: Base URL of the Aegis API, for example V(http://127.0.0.1:8910).
        type: str
        required: true
      api_key:
        description: "API key for C(/chat) (sent as C(Authorization: Bearer)), when the API requires one."
        type: str
      checks:
        description: Which endpoints to check.
        type: list
        elements: str
        choices: [health, ready, chat]
        default: [health, ready, chat]
      question:
        description: The question of the C(/chat) probe.
        type: str
        default: test query
      timeout:
        description: Timeout in seconds of each Aegis check (default O(timeout)).
        type: float
      required:
        description: Whether a failure fails the module.
        type: bool
        default: true
  qdrant:
    description:
      - Qdrant readiness check (C(GET /readyz), 503 while shards load).
    type: dict
    suboptions:
      url:
        description: Base URL of the Qdrant REST API.
        type: str
        required: true
      api_key:
        description: Qdrant API key (C(/readyz) skips authentication, a proxy in front may not).
        type: str
      timeout:
        description: Timeout in seconds (default O(timeout)).
        type: float
      required:
        description: Whether a failure fails the module.
        type: bool
        default: true
  ollama:
    description:
      - Ollama check (C(GET /api/tags)), optionally with models that must be installed.
    type: dict
    suboptions:
      url:
        description: Base URL of the Ollama API.
        type: str
        required: true
      models:
        description: Models that must be installed; a missing tag means C(:latest).
        type: list
        elements: str
        default: []
      timeout:
        description: Timeout in seconds (default O(timeout)).
        type: float
      required:
        description: Whether a failure fails the module.
        type: bool
        default: true
  jina:
    description:
      - Jina AI check, a one-item embeddings call. Skipped when no API key is given; a failure is a warning.
    type: dict
    suboptions:
      url:
        description: Base URL of the Jina API.
        type: str
        default: https://api.jina.ai
      api_key:
        description: Jina API key. When empty the check reports V(skipped).
        type: str
      model:
        description: Embedding model of the probe.
        type: str
        default: jina-embeddings-v3
      timeout:
        description: Timeout in seconds (default O(timeout)).
        type: float
  urls:
    description:
      - Extra URLs to check.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the check (reported as C(url:<name>)); default the URL.
        type: str
      url:
        description: The URL.
        type: str
        required: true
      method:
        description: HTTP method.
        type: str
        choices: [GET, HEAD]
        default: GET
      status:
        description: Expected HTTP status codes.
        type: list
        elements: int
        default: [200]
      headers:
        description:
          - Extra request headers, for example C(Authorization).
          - Their values are secrets to Ansible (C(no_log)), masked in all output, C(-vvv) included.
        type: dict
      timeout:
        description: Timeout in seconds (default O(timeout)).
        type: float
      required:
        description: Whether a failure fails the module.
        type: bool
        default: true
notes:
  - Qdrant has no C(/health) endpoint (the manual's call gets 404); C(/readyz) is the real one.
  - Each check makes a single attempt (no retries), since a health check reports the state now.
"""

EXAMPLES = r"""
- name: Check the whole stack, fail when a required check fails
  aegis.rag.health_check:
    timeout: 10
    aegis:
      url: http://127.0.0.1:8910
      api_key: "{{ aegis_api_key | default(omit) }}"
    qdrant:
      url: http://qdrant-1.internal:6333
      api_key: "{{ vault_qdrant_api_key }}"
    ollama:
      url: http://gpu-1.internal:11434
      models: [deepseek-r1:7b]
      timeout: 5
    jina:
      api_key: "{{ lookup('ansible.builtin.env', 'JINA_API_KEY') }}"
    urls:
      - name: prometheus
        url: http://127.0.0.1:9090/-/ready

- name: Only the API's liveness and readiness, report without failing
  aegis.rag.health_check:
    aegis:
      url: http://127.0.0.1:8910
      checks: [health, ready]
    fail_on_failure: false
  register: health

- name: Show what failed
  ansible.builtin.debug:
    var: health.failed_checks
"""

RETURN = r"""
checks:
  description: One entry per check, in a stable order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Check name (aegis_health, aegis_ready, aegis_chat, qdrant_ready, ollama_tags, jina_embeddings, url:NAME).
      type: str
    status:
      description: V(ok), V(failed), V(warning) (a problem in a check that is not required) or V(skipped).
      type: str
    latency_ms:
      description: Time the check took (its timeout when it timed out).
      type: float
    detail:
      description: What was seen.
      type: str
    required:
      description: Whether a failure of this check fails the module.
      type: bool
    url:
      description: The URL probed.
      type: str
    http_status:
      description:
        - The HTTP status of the answer; V(null) when none came (refused, timed out).
        - Returned by C(aegis_health) and C(aegis_ready) only.
      type: int
    dependencies:
      description:
        - The dependencies the API's C(/ready) reported, by name; empty when it gave none (down, or not JSON).
        - Returned by C(aegis_ready) only.
      type: list
      elements: dict
      contains:
        name:
          description: The dependency (V(vector_store), V(embedder), V(llm), V(cache)).
          type: str
        status:
          description: Its status as the API reported it (V(ok), V(failed), ...).
          type: str
        required:
          description: Whether the API needs it to be ready.
          type: bool
        latency_ms:
          description: The API's probe time of it.
          type: float
        detail:
          description: The API's detail on it, at most 300 characters.
          type: str
  sample:
    - name: aegis_health
      status: ok
      latency_ms: 3.1
      detail: "status ok"
      required: true
      url: http://127.0.0.1:8910/health
      http_status: 200
    - name: ollama_tags
      status: failed
      latency_ms: 5000.0
      detail: "no answer within 5.0s"
      required: true
      url: http://gpu-1.internal:11434/api/tags
summary:
  description: Counts per status and the wall time of the whole run.
  returned: always
  type: dict
  sample: {"total": 5, "ok": 3, "failed": 1, "warning": 0, "skipped": 1, "elapsed_ms": 5003.2}
failed_checks:
  description: Names of the required checks that failed.
  returned: always
  type: list
  elements: str
  sample: [ollama_tags]
"""

import threading
import time

from ansible_collections.aegis.rag.plugins.module_utils.base import AegisModule
from ansible_collections.aegis.rag.plugins.module_utils.http_client import HttpClient, HttpError, excerpt
from ansible_collections.aegis.rag.plugins.module_utils.ollama import find_model

OK = "ok"
FAILED = "failed"
WARNING = "warning"
SKIPPED = "skipped"
JOIN_GRACE_S = 0.2  # a check's thread may take this long past its timeout before it is called timed out


class CheckFailed(Exception):
    """A failed check; `fields` are returned with it (see Check's `returns`)."""

    def __init__(self, msg, **fields):
        super(CheckFailed, self).__init__(msg)
        self.fields = fields


class Check:
    """One probe: `probe()` returns (status, detail) or (status, detail, fields), or raises CheckFailed / HttpError.
    `returns`: the extra fields this check always reports, with their values when no answer came; a probe's fields
    (or an HttpError's http_status) fill them in."""

    def __init__(self, name, url, timeout, required, probe, returns=None):
        self.name = name
        self.url = url
        self.timeout = timeout
        self.required = required
        self.probe = probe
        self.returns = dict(returns or {})
        self.outcome = None
        self._lock = threading.Lock()
        self._thread = None
        self._started = None

    def start(self):
        if self.outcome is not None:  # decided without probing (skipped)
            return
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self):
        t0 = time.monotonic()
        fields = {}
        try:
            outcome = self.probe()
            status, detail = outcome[:2]
            fields = outcome[2] if len(outcome) > 2 else {}
        except CheckFailed as exc:
            status, detail, fields = FAILED, str(exc), exc.fields
        except HttpError as exc:
            status, detail, fields = FAILED, exc.msg, {"http_status": exc.status}
        except Exception as exc:  # a probe reports; it never takes the module down
            status, detail = FAILED, "%s: %s" % (type(exc).__name__, exc)
        self._settle(status, detail, (time.monotonic() - t0) * 1000, fields)

    def _settle(self, status, detail, latency_ms, fields=None):
        with self._lock:
            if self.outcome is None:  # the first word wins: a late thread cannot undo a timeout
                self.outcome = (status, detail, latency_ms, fields or {})

    def wait(self):
        """Join until this check's own deadline, never longer; a hung probe is reported as timed out."""
        if self._thread is None:
            return
        remaining = self._started + self.timeout + JOIN_GRACE_S - time.monotonic()
        self._thread.join(max(0.0, remaining))
        self._settle(FAILED, "no answer within %ss" % self.timeout, self.timeout * 1000)

    def report(self):
        status, detail, latency_ms, fields = self.outcome
        if status == FAILED and not self.required:
            status = WARNING
        report = {"name": self.name, "status": status, "latency_ms": round(latency_ms, 1), "detail": detail,
                  "required": self.required, "url": self.url}
        report.update(self.returns)
        report.update((key, value) for key, value in fields.items() if key in self.returns)
        return report


def run_checks(checks):
    for check in checks:
        check.start()
    for check in checks:
        check.wait()
    return [check.report() for check in checks]


def skipped(name, url, detail):
    check = Check(name, url, 0, False, None)
    check.outcome = (SKIPPED, detail, 0.0, {})
    return check


# -- probes

def _json(resp, **fields):
    try:
        return resp.json()
    except HttpError as exc:
        raise CheckFailed("%s: %s" % (exc.msg, exc.body_excerpt), **fields) from exc


def aegis_health(client):
    resp = client.get("/health")
    body = _json(resp, http_status=resp.status)
    if not isinstance(body, dict) or body.get("status") != "ok":
        raise CheckFailed("unexpected reply: %s" % excerpt(str(body), 200), http_status=resp.status)
    return OK, "status ok", {"http_status": resp.status}


def ready_dependencies(body):
    """The dependencies of an answer of /ready, by name: status, required (default true), latency, detail."""
    checks = body.get("checks") if isinstance(body, dict) else None
    if not isinstance(checks, dict):
        return []
    return [{"name": str(name), "status": str(dep.get("status", "unknown")), "required": bool(dep.get("required", True)),
             "latency_ms": dep.get("latency_ms"), "detail": str(dep.get("detail") or "")[:300]}
            for name, dep in sorted(checks.items()) if isinstance(dep, dict)]


def aegis_ready(client):
    resp = client.get("/ready", expect=(200, 503))
    body = _json(resp, http_status=resp.status)
    fields = {"http_status": resp.status, "dependencies": ready_dependencies(body)}
    broken = ["%s (%s)" % (dep["name"], dep["detail"] or dep["status"]) for dep in fields["dependencies"]
              if dep["status"] != "ok"]
    if resp.status == 503:
        raise CheckFailed("not ready: %s" % ("; ".join(broken) or excerpt(resp.body, 200)), **fields)
    if broken:
        return WARNING, "ready; optional dependencies failing: %s" % "; ".join(broken), fields
    names = ", ".join(dep["name"] for dep in fields["dependencies"])
    return OK, ("ready: %s" % names) if names else "ready", fields


def aegis_chat(client, question):
    body = _json(client.post("/chat", json={"question": question, "history": []}))
    answer = body.get("answer") if isinstance(body, dict) else None
    if not isinstance(answer, str) or not answer.strip():
        raise CheckFailed("reply has no answer: %s" % excerpt(str(body), 200))
    detail = "answered (%d chars, mode %s, %d sources)" % (len(answer), body.get("mode", "?"),
                                                           len(body.get("sources") or []))
    if body.get("degraded"):
        return WARNING, detail + "; degraded: the LLM failed and the answer is extractive"
    return OK, detail


def qdrant_ready(client):
    resp = client.get("/readyz", expect=(200,))
    return OK, excerpt(resp.body, 100) or "ready"


def ollama_tags(client, required_models):
    models = _json(client.get("/api/tags")).get("models") or []
    names = sorted(m.get("name") or m.get("model") or "?" for m in models)
    missing = [m for m in required_models if find_model(models, m) is None]
    if missing:
        raise CheckFailed("missing models: %s (installed: %s)" % (", ".join(missing), ", ".join(names) or "none"))
    return OK, "%d models installed%s" % (len(names), "; required present: " + ", ".join(required_models)
                                          if required_models else "")


def jina_embeddings(client, model):
    body = _json(client.post("/v1/embeddings", json={"model": model, "input": ["aegis health check"]}))
    data = body.get("data") if isinstance(body, dict) else None
    vector = data[0].get("embedding") if data and isinstance(data[0], dict) else None
    if not vector:
        raise CheckFailed("reply has no embedding: %s" % excerpt(str(body), 200))
    return OK, "embedding of %d dimensions" % len(vector)


def extra_url(client, method, expected):
    resp = client.request(method, "", expect=tuple(expected), headers={"Accept": "*/*"})
    return OK, "HTTP %s" % resp.status


# -- building the checks from the parameters

def build_checks(params):
    """The list of Check objects the parameters ask for (raises ValueError on contradictory input)."""
    default_timeout = params["timeout"]
    certs = params["validate_certs"]
    checks = []

    def client(url, timeout, headers=None):
        return HttpClient(url, headers=headers, timeout=timeout, validate_certs=certs, retries=0)

    def timeout_of(section):
        value = default_timeout if section.get("timeout") is None else section["timeout"]
        if value <= 0:
            raise ValueError("timeouts must be greater than 0")
        return value

    aegis = params.get("aegis")
    if aegis:
        t = timeout_of(aegis)
        headers = {"Authorization": "Bearer %s" % aegis["api_key"]} if aegis.get("api_key") else None
        api = client(aegis["url"], t, headers)
        probes = {"health": lambda: aegis_health(api), "ready": lambda: aegis_ready(api),
                  "chat": lambda: aegis_chat(api, aegis["question"])}
        paths = {"health": "/health", "ready": "/ready", "chat": "/chat"}
        returns = {"health": {"http_status": None}, "ready": {"http_status": None, "dependencies": []}}
        for name in ("health", "ready", "chat"):
            if name in aegis["checks"]:
                checks.append(Check("aegis_" + name, api.url(paths[name]), t, aegis["required"], probes[name],
                                    returns.get(name)))

    qdrant = params.get("qdrant")
    if qdrant:
        t = timeout_of(qdrant)
        qc = client(qdrant["url"], t, {"api-key": qdrant["api_key"]} if qdrant.get("api_key") else None)
        checks.append(Check("qdrant_ready", qc.url("/readyz"), t, qdrant["required"], lambda: qdrant_ready(qc)))

    ollama = params.get("ollama")
    if ollama:
        t = timeout_of(ollama)
        oc = client(ollama["url"], t)
        models = list(ollama.get("models") or [])
        checks.append(Check("ollama_tags", oc.url("/api/tags"), t, ollama["required"],
                            lambda: ollama_tags(oc, models)))

    jina = params.get("jina")
    if jina:
        t = timeout_of(jina)
        url = jina["url"].rstrip("/") + "/v1/embeddings"
        if not jina.get("api_key"):
            checks.append(skipped("jina_embeddings", url, "no API key given"))
        else:
            jc = client(jina["url"], t, {"Authorization": "Bearer %s" % jina["api_key"]})
            checks.append(Check("jina_embeddings", url, t, False, lambda: jina_embeddings(jc, jina["model"])))

    for entry in params.get("urls") or []:
        t = timeout_of(entry)
        uc = client(entry["url"], t, entry.get("headers"))
        method, expected = entry["method"], entry["status"]
        checks.append(Check("url:%s" % (entry.get("name") or entry["url"]), entry["url"], t, entry["required"],
                            lambda uc=uc, method=method, expected=expected: extra_url(uc, method, expected)))

    names = [c.name for c in checks]
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        raise ValueError("check names must be unique; repeated: %s" % ", ".join(duplicates))
    return checks


def summarize(reports, elapsed_ms):
    summary = {"total": len(reports), OK: 0, FAILED: 0, WARNING: 0, SKIPPED: 0, "elapsed_ms": round(elapsed_ms, 1)}
    for r in reports:
        summary[r["status"]] += 1
    return summary


def argument_spec():
    timeout = dict(type="float")
    required = dict(type="bool", default=True)
    return dict(
        timeout=dict(type="float", default=10.0),
        validate_certs=dict(type="bool", default=True),
        fail_on_failure=dict(type="bool", default=True),
        aegis=dict(type="dict", options=dict(
            url=dict(type="str", required=True),
            api_key=dict(type="str", no_log=True),
            checks=dict(type="list", elements="str", choices=["health", "ready", "chat"],
                        default=["health", "ready", "chat"]),
            question=dict(type="str", default="test query"),
            timeout=timeout, required=required)),
        qdrant=dict(type="dict", options=dict(
            url=dict(type="str", required=True),
            api_key=dict(type="str", no_log=True),
            timeout=timeout, required=required)),
        ollama=dict(type="dict", options=dict(
            url=dict(type="str", required=True),
            models=dict(type="list", elements="str", default=[]),
            timeout=timeout, required=required)),
        jina=dict(type="dict", options=dict(
            url=dict(type="str", default="https://api.jina.ai"),
            api_key=dict(type="str", no_log=True),
            model=dict(type="str", default="jina-embeddings-v3"),
            timeout=timeout)),
        urls=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str"),
            url=dict(type="str", required=True),
            method=dict(type="str", choices=["GET", "HEAD"], default="GET"),
            status=dict(type="list", elements="int", default=[200]),
            # header values are credentials as often as not (Authorization, X-API-Key)
            headers=dict(type="dict", no_log=True),
            timeout=timeout, required=required)),
    )


def main():
    module = AegisModule(argument_spec(), supports_check_mode=True)
    if module.params["timeout"] <= 0:
        module.fail("timeout must be greater than 0, got %s" % module.params["timeout"])
    try:
        checks = build_checks(module.params)
    except ValueError as exc:
        module.fail(str(exc))
    if not checks:
        module.fail("no checks configured: give at least one of aegis, qdrant, ollama, jina, urls")

    t0 = time.monotonic()
    reports = run_checks(checks)
    summary = summarize(reports, (time.monotonic() - t0) * 1000)
    failed = [r for r in reports if r["status"] == FAILED]
    module.result.update(checks=reports, summary=summary, failed_checks=[r["name"] for r in failed])
    if failed and module.params["fail_on_failure"]:
        module.fail("health check failed: %s" % "; ".join("%s: %s" % (r["name"], r["detail"]) for r in failed))
    module.exit(msg="%d of %d checks ok%s" % (summary[OK], summary["total"],
                                              ", %d failed" % len(failed) if failed else ""))


if __name__ == "__main__":
    main()
