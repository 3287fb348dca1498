"""Fault injection semantics (tests/doubles/faults.py), exercised on a live double."""

from __future__ import annotations

import httpx
import pytest

from tests import stack

RERANK = {"model": "jina-reranker-v2-base-multilingual", "query": "q", "documents": ["d"]}


@pytest.fixture
def jina_double(start_double):
    return start_double("jina")


def test_error_rate_is_a_fraction_and_reproducible(jina_double):
    jina_double.faults.add(path="^/v1/rerank$", error_rate=0.5, status=503)
    with httpx.Client(base_url=jina_double.url, headers=jina_double.headers) as c:
        codes = [c.post("/v1/rerank", json=RERANK).status_code for _ in range(200)]
    assert set(codes) == {200, 503} and 60 < codes.count(503) < 140


def test_rules_match_path_method_and_model_and_expire(jina_double):
    jina_double.faults.add(path="^/v1/embeddings$", method="POST", model="jina-embeddings-v3", status=500,
                           error_rate=1.0, times=2)
    with httpx.Client(base_url=jina_double.url, headers=jina_double.headers) as c:
        other_model = c.post("/v1/embeddings", json={"model": "jina-embeddings-v2-base-en", "input": ["x"]})
        assert other_model.status_code == 200
        assert c.post("/v1/rerank", json=RERANK).status_code == 200
        hits = [c.post("/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["x"]}).status_code
                for _ in range(3)]
    assert hits == [500, 500, 200]
    assert jina_double.faults.rules() == []


def test_invalid_rules_are_refused(jina_double):
    for bad in ({"bogus": 1}, {"error_rate": 2}, {"path": "("}):
        r = httpx.post(jina_double.url + "/_faults", json=bad)
        assert r.status_code == 400 and r.json()["error"]
    assert jina_double.faults.rules() == []


def test_control_path_needs_no_api_key(qdrant):
    if qdrant.real:
        pytest.skip("needs the double")
    assert httpx.get(qdrant.url + "/collections").status_code == 401
    r = httpx.post(qdrant.url + "/_faults", json={"path": "^/nothing$", "latency_ms": 1})
    assert r.status_code == 200 and isinstance(r.json()["id"], int)


def test_reset_restores_a_disturbed_double(start_double):
    """What the autouse fixture does after each test that used or disturbed a double."""
    q = start_double("qdrant")
    q.faults.add(path=".*", latency_ms=10)
    q.pause()
    q.reset()
    assert q.faults.rules() == [] and stack.http_ready(q.url + "/readyz")
    q.stop()
    assert not stack.http_ready(q.url + "/readyz")
    q.reset()
    assert stack.http_ready(q.url + "/readyz") and not q.dirty
