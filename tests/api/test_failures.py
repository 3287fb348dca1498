"""Each dependency down, slow or answering garbage gives the documented behaviour:
- vector store or embedder: 503 {"error", "detail", "dependency"} within the configured timeout;
- LLM: an extractive answer with "degraded": true (or 503 with AEGIS_LLM_ON_FAILURE=fail);
- reranker: the fused order is used; cache: a miss. Never a 500 or a traceback.
Fault injection needs the doubles; these tests skip against real servers.
"""

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

Q = {"question": "When are snapshots uploaded to S3?", "history": []}


def chat(client, **extra):
    t = time.monotonic()
    r = client.post("/chat", json={**Q, **extra})
    return r, time.monotonic() - t


def assert_503(r, dependency):
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"] == "dependency unavailable" and body["dependency"] == dependency and body["detail"]
    assert "Traceback" not in r.text


def metric(client, name, **labels):
    for fam in text_string_to_metric_families(client.get("/metrics").text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


# --- LLM
@pytest.mark.parametrize("fault", ["down", "slow", "garbage", "error", "queue_full", "error_mid_stream"])
def test_llm_failure_degrades_to_an_extractive_answer(server_client, ollama, fault):
    c = server_client(llm_timeout_s=1.5, embedder="jina", embed_model=None)  # Ollama serves only the LLM here
    if fault == "down":
        ollama.stop()
    elif fault == "slow":
        ollama.faults.add(path="^/api/chat$", latency_ms=4000)
    elif fault == "garbage":
        ollama.faults.add(path="^/api/chat$", garbage=True)
    elif fault == "error":
        ollama.faults.add(path="^/api/chat$", error_rate=1.0, status=500, body={"error": "model crashed"})
    elif fault == "queue_full":
        ollama.configure(num_parallel=1, max_queue=0, token_delay_ms=0)
        ollama.faults.add(path="^/api/chat$", error_rate=1.0, status=503,
                          body={"error": "server busy, please try again.  maximum pending requests exceeded"})
    else:
        ollama.install("deepseek-r1:7b", fail_generate="CUDA error: out of memory")
    r, took = chat(c)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["degraded"] is True and body["mode"] == "extractive" and body["model"] == "extractive"
    assert "02:00" in body["answer"] and body["sources"][0]["document"] == "backup.md"
    assert took < 1.5 + 3  # bounded by the LLM timeout, not by the fault
    assert metric(c, "aegis_degraded_answers_total") >= 1
    reason = "timeout" if fault == "slow" else "error"
    assert metric(c, "aegis_generation_failures_total", backend="ollama", reason=reason) >= 1


def test_llm_failure_gives_503_when_configured_to_fail(server_client, ollama):
    c = server_client(llm_on_failure="fail", embedder="jina", embed_model=None)
    ollama.stop()
    r, _ = chat(c)
    assert_503(r, "llm")
    ready = c.get("/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["llm"]["required"] is True


def test_llm_down_keeps_ready_when_degrading(server_client, ollama):
    c = server_client(corpus=None)
    ollama.faults.add(path="^/api/(tags|chat)$", error_rate=1.0, status=500)
    body = c.get("/ready").json()
    assert body["status"] == "ready"
    assert body["checks"]["llm"]["status"] == "failed" and body["checks"]["llm"]["required"] is False


def test_llm_failure_after_first_token_ends_the_stream_with_an_error_event(server_client, ollama):
    c = server_client()
    ollama.install("deepseek-r1:7b", fail_generate="connection reset")
    with c.stream("POST", "/chat", json={**Q, "stream": True}) as r:
        raw = r.read().decode()
    names = [b.split("\n")[0].removeprefix("event: ") for b in raw.strip().split("\n\n")]
    assert "token" in names and names[-1] == "error" and "sources" not in names


def test_model_not_pulled_is_reported_by_ready(server_client):
    c = server_client(corpus=None, llm_model="llama3.2:1b")
    detail = c.get("/ready").json()["checks"]["llm"]["detail"]
    assert "llama3.2:1b" in detail and "not pulled" in detail


# --- vector store
@pytest.mark.parametrize("fault", ["down", "slow", "garbage", "hung"])
def test_vector_store_failure_gives_503(server_client, qdrant, fault):
    c = server_client(qdrant_timeout_s=1.0)
    if fault == "down":
        qdrant.stop()
    elif fault == "slow":
        qdrant.faults.add(path="/points/query$", latency_ms=3000)
    elif fault == "garbage":
        qdrant.faults.add(path="/points/query$", garbage=True)
    else:
        qdrant.pause()
    r, took = chat(c)
    assert_503(r, "vector_store")
    assert took < 1.0 * 4 + 3  # qdrant-client may retry once per call; bounded by the timeout
    assert metric(c, "aegis_vector_search_failures_total") >= 1
    if fault in ("down", "hung"):
        ready = c.get("/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["vector_store"]["status"] == "failed"


def test_vector_store_down_at_start_recovers_when_it_returns(server_client, qdrant):
    qdrant.stop()
    c = server_client(corpus=None)
    assert c.get("/ready").status_code == 503
    assert c.get("/health").status_code == 200  # liveness never calls dependencies
    qdrant.start()
    assert c.get("/ready").status_code == 200
    assert chat(c)[0].status_code == 200


def test_upload_while_vector_store_is_down_loses_nothing(server_client, qdrant):
    c = server_client()
    before = c.get("/documents").json()
    qdrant.faults.add(path="/points", error_rate=1.0, status=500, body={"status": {"error": "disk full"}})
    r = c.post("/documents", files={"file": ("new.md", b"# New\n\nA new document.", "text/markdown")})
    assert_503(r, "vector_store")
    qdrant.faults.clear()
    assert c.get("/documents").json() == before


# --- embedder
@pytest.mark.parametrize("fault", ["down", "garbage", "wrong_shape"])
def test_embedder_failure_gives_503(server_client, ollama, fault):
    c = server_client(cache="none")
    if fault == "down":
        ollama.stop()
    elif fault == "garbage":
        ollama.faults.add(path="^/api/embed$", garbage=True)
    else:
        ollama.faults.add(path="^/api/embed$", error_rate=1.0, status=200, body={"embeddings": [[0.1, 0.2]]})
    r, _ = chat(c)
    assert_503(r, "embedder")


def test_slow_embedder_gives_503_within_its_timeout(server_client, ollama):
    c = server_client(cache="none", embed_timeout_s=1.0)
    ollama.faults.add(path="^/api/embed$", latency_ms=5000)
    r, took = chat(c)
    assert_503(r, "embedder")
    assert took < 1.0 + 3


# --- reranker and cache
@pytest.mark.parametrize("fault", ["down", "garbage", "unauthorised"])
def test_reranker_failure_falls_back_to_fused_order(server_client, jina, fault):
    c = server_client(rerank_timeout_s=1.0)
    if fault == "down":
        jina.stop()
    elif fault == "garbage":
        jina.faults.add(path="^/v1/rerank$", garbage=True)
    else:
        jina.faults.add(path="^/v1/rerank$", error_rate=1.0, status=401, body={"detail": "Unauthorized"})
    r, _ = chat(c)
    assert r.status_code == 200
    body = r.json()
    assert body["timings_ms"]["rerank_skipped"] is True and body["sources"][0]["document"] == "backup.md"
    assert metric(c, "aegis_rerank_failures_total") >= 1


@pytest.mark.parametrize("fault", ["down", "hung"])
def test_cache_failure_is_a_miss(server_client, redis_server, fault):
    c = server_client(redis_timeout_s=0.5)
    redis_server.stop() if fault == "down" else redis_server.pause()
    r, took = chat(c)
    assert r.status_code == 200 and r.json()["timings_ms"]["embed_cached"] is False
    assert took < 0.5 * 2 + 3  # get and put each bounded by the Redis timeout
    body = c.get("/ready").json()
    assert body["status"] == "ready" and body["checks"]["cache"]["status"] == "failed"
    assert metric(c, "aegis_embedding_cache_errors_total") >= 1
