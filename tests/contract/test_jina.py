"""Jina contract: /v1/embeddings and /v1/rerank against the double, or api.jina.ai when JINA_API_KEY is set."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import pytest

EMBED = "jina-embeddings-v3"
RERANK = "jina-reranker-v2-base-multilingual"
DOCS = ["Ollama runs on hosts with NVIDIA GPUs.",
        "Snapshots of the collection are uploaded to the S3 bucket every night.",
        "The on-call engineer rotates every Monday."]


@pytest.fixture
def http(jina):
    with httpx.Client(base_url=jina.url, headers=jina.headers, timeout=60) as c:
        yield c


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_embeddings_shape_tasks_and_dimensions(http):
    r = http.post("/v1/embeddings", json={"model": EMBED, "input": ["where are snapshots stored?", DOCS[1]],
                                          "task": "retrieval.query"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"].startswith("jina-embeddings") and body["usage"]["total_tokens"] > 0
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 1024 and math.isclose(norm(d["embedding"]), 1.0, rel_tol=1e-3)
               for d in body["data"])
    small = http.post("/v1/embeddings", json={"model": EMBED, "input": [DOCS[0]], "task": "retrieval.passage",
                                              "dimensions": 64}).json()
    assert len(small["data"][0]["embedding"]) == 64


def test_embeddings_are_deterministic_and_task_aware(jina, http):
    def one(task):
        return http.post("/v1/embeddings", json={"model": EMBED, "input": [DOCS[1]], "task": task}).json()[
            "data"][0]["embedding"]
    q1, q2, p = one("retrieval.query"), one("retrieval.query"), one("retrieval.passage")
    cos = sum(a * b for a, b in zip(q1, p))
    assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(q1, q2))
    assert 0.5 < cos < 0.9999  # the same text: close, yet task-specific


def test_base64_embeddings(http):
    r = http.post("/v1/embeddings", json={"model": EMBED, "input": ["hello"], "embedding_type": "base64",
                                          "dimensions": 32}).json()
    raw = base64.b64decode(r["data"][0]["embedding"])
    values = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(values) == 32 and math.isclose(norm(values), 1.0, rel_tol=1e-3)


def test_rerank_sorted_top_n_and_documents(http):
    r = http.post("/v1/rerank", json={"model": RERANK, "query": "Where are snapshots uploaded?",
                                      "documents": DOCS, "top_n": 2})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 2 and results[0]["index"] == 1
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    assert results[0]["document"]["text"] == DOCS[1]
    bare = http.post("/v1/rerank", json={"model": RERANK, "query": "GPU hosts", "documents": DOCS,
                                         "return_documents": False}).json()["results"]
    assert len(bare) == 3 and "document" not in bare[0] and bare[0]["index"] == 0
    assert sorted(r["index"] for r in bare) == [0, 1, 2]


def test_bearer_auth(jina):
    body = {"model": EMBED, "input": ["x"]}
    assert httpx.post(jina.url + "/v1/embeddings", json=body, timeout=30).status_code == 401
    assert httpx.post(jina.url + "/v1/embeddings", json=body, timeout=30,
                      headers={"Authorization": "Bearer jina_wrong_key"}).status_code == 401
    assert httpx.post(jina.url + "/v1/rerank", json={"model": RERANK, "query": "q", "documents": ["d"]},
                      timeout=30).status_code == 401


def test_invalid_requests(http):
    assert http.post("/v1/embeddings", json={"model": EMBED}).status_code in (400, 422)
    assert http.post("/v1/embeddings", json={"model": EMBED, "input": ["x"], "task": "nope"}).status_code in (400, 422)
    assert http.post("/v1/embeddings", json={"model": "no-such-model", "input": ["x"]}).status_code in (400, 404, 422)
    assert http.post("/v1/rerank", json={"model": RERANK, "query": "q"}).status_code in (400, 422)


def test_faults_error_rate_and_latency(jina, http):
    jina.faults.add(path="^/v1/rerank$", status=429, error_rate=1.0, body={"detail": "rate limit"}, times=1)
    assert http.post("/v1/rerank", json={"model": RERANK, "query": "q", "documents": ["d"]}).status_code == 429
    assert http.post("/v1/rerank", json={"model": RERANK, "query": "q", "documents": ["d"]}).status_code == 200
    jina.faults.add(path="^/v1/embeddings$", garbage=True)
    r = http.post("/v1/embeddings", json={"model": EMBED, "input": ["x"]})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
