"""The filter aegis.rag.api_probe: an API host's state from aegis.rag.health_check's /health and /ready checks (the
module's own output is tests/collection/test_health_check.py; runbook_api_failure reads it through this filter)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.aegis.rag.plugins.filter.api_probe import FilterModule, api_probe

STORE_DOWN = {"name": "vector_store", "status": "failed", "required": True, "latency_ms": 2.5, "detail": "refused"}
LLM_DOWN = {"name": "llm", "status": "failed", "required": False, "latency_ms": 1.0, "detail": "timed out"}
EMBEDDER = {"name": "embedder", "status": "ok", "required": True, "latency_ms": 3.0, "detail": ""}


def checks(health: tuple, ready: tuple, dependencies: list | None = None) -> list[dict]:
    """health and ready as (status, http_status, detail), as the module returns them."""
    return [{"name": "aegis_health", "status": health[0], "http_status": health[1], "detail": health[2]},
            {"name": "aegis_ready", "status": ready[0], "http_status": ready[1], "detail": ready[2],
             "dependencies": dependencies or []}]


def test_a_ready_host_with_an_optional_dependency_failing_is_ready():
    probe = api_probe(checks(("ok", 200, "status ok"), ("warning", 200, "ready; optional dependencies failing"),
                             [EMBEDDER, LLM_DOWN]))
    assert probe == {"state": "ready", "health": "ok", "ready": "ready", "ready_status": 200,
                     "dependencies": [EMBEDDER, LLM_DOWN], "failing_required": [], "failing_optional": [LLM_DOWN]}


def test_a_live_host_whose_required_dependency_fails_is_not_ready_and_names_it():
    probe = api_probe(checks(("ok", 200, "status ok"), ("failed", 503, "not ready: vector_store (refused)"),
                             [EMBEDDER, STORE_DOWN]))
    assert (probe["state"], probe["ready"], probe["ready_status"]) == ("not ready", "HTTP 503: not ready", 503)
    assert probe["failing_required"] == [STORE_DOWN] and probe["failing_optional"] == []


@pytest.mark.parametrize(("health", "ready", "said_health", "said_ready", "status"), [
    (("failed", None, "GET http://api:8910/health failed: [Errno 111] Connection refused"),
     ("failed", None, "GET http://api:8910/ready failed: [Errno 111] Connection refused"),
     "GET http://api:8910/health failed: [Errno 111] Connection refused",
     "GET http://api:8910/ready failed: [Errno 111] Connection refused", -1),
    (("failed", 502, "GET http://api:8910/health returned HTTP 502: Bad Gateway"),
     ("failed", 500, "GET http://api:8910/ready returned HTTP 500: Internal Server Error"), "HTTP 502", "HTTP 500", 500),
    (("failed", 200, "unexpected reply: {'status': 'starting'}"), ("failed", None, "no answer within 10.0s"),
     "unexpected reply: {'status': 'starting'}", "no answer within 10.0s", -1),
])
def test_a_host_without_a_live_health_is_down_with_what_failed(health, ready, said_health, said_ready, status):
    probe = api_probe(checks(health, ready))
    assert (probe["state"], probe["health"], probe["ready"], probe["ready_status"]) == (
        "down", said_health, said_ready, status)
    assert probe["dependencies"] == probe["failing_required"] == probe["failing_optional"] == []


def test_it_refuses_what_is_not_the_api_s_checks():
    with pytest.raises(AnsibleFilterError, match="expects aegis.rag.health_check's checks"):
        api_probe({"checks": []})
    with pytest.raises(AnsibleFilterError, match="missing: aegis_ready"):
        api_probe([{"name": "aegis_health", "status": "ok"}])
    assert FilterModule().filters() == {"api_probe": api_probe}
