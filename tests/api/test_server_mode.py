"""Production shape: a Qdrant server, Ollama for embeddings and generation, Jina rerank, Redis cache.

The servers are the doubles of tests/doubles (or real ones: AEGIS_TEST_QDRANT_URL, AEGIS_TEST_OLLAMA_URL,
JINA_API_KEY); Redis is real. Tests that steer a double (think leakage) skip against a real server.
"""

import json

import redis

from aegis_rag.cache import cache_key

from .conftest import CORPUS

from .conftest import EMBED_MODEL, LLM_MODEL


def test_chat_is_generated_from_retrieved_context(server_client):
    body = server_client().post("/chat", json={"question": "When are snapshots uploaded to S3?",
                                               "history": []}).json()
    assert body["mode"] == "generated" and body["degraded"] is False and body["model"] == LLM_MODEL
    assert body["sources"][0]["document"] == "backup.md"
    # the Ollama double answers with the content words of the prompt's context: the passage reached it
    assert "aegis-backups" in body["answer"] and "night" in body["answer"]
    assert {"embed", "search", "rerank", "generate", "total"} <= set(body["timings_ms"])
    assert "rerank_skipped" not in body["timings_ms"]


def test_collection_is_created_with_hybrid_vectors_and_model_metadata(server_client, qdrant, collection_name):
    server_client()
    info = qdrant.client().get_collection(collection_name)
    assert info.config.metadata["embed_model"] == EMBED_MODEL
    assert info.config.params.vectors["dense"].size == info.config.metadata["embed_dim"] == 768
    assert "bm25" in info.config.params.sparse_vectors
    assert info.points_count >= 4


def test_documents_are_idempotent_and_replaced(server_client, qdrant, collection_name):
    c = server_client()
    again = c.post("/documents", files={"file": ("backup.md", CORPUS["backup.md"].encode(), "text/markdown")})
    assert again.json()["status"] == "unchanged"
    changed = c.post("/documents", files={"file": ("notes.txt", b"Rotation changes on Fridays.", "text/plain")})
    assert changed.json() == {**changed.json(), "status": "updated", "chunks": 1}
    docs = {d["document"]: d for d in c.get("/documents").json()["documents"]}
    assert docs["notes.txt"]["chunks"] == 1
    assert c.delete(f"/documents/{docs['gpu.md']['id']}").status_code == 200
    assert {d["document"] for d in c.get("/documents").json()["documents"]} == {"backup.md", "notes.txt"}
    assert qdrant.client().count(collection_name, exact=True).count == docs["backup.md"]["chunks"] + 1


def test_query_embeddings_are_cached_in_redis_with_a_ttl(server_client, redis_server):
    c = server_client(cache_ttl_s=120)
    q = {"question": "Which module reports GPU memory?", "history": []}
    assert c.post("/chat", json=q).json()["timings_ms"]["embed_cached"] is False
    assert c.post("/chat", json=q).json()["timings_ms"]["embed_cached"] is True
    key = cache_key(EMBED_MODEL, q["question"])
    assert 0 < redis.Redis.from_url(redis_server.url).ttl(key) <= 120


def test_streaming_from_ollama(server_client):
    c = server_client()
    with c.stream("POST", "/chat", json={"question": "Who is on call?", "history": [], "stream": True}) as r:
        raw = r.read().decode()
    events = [(b.split("\n")[0].removeprefix("event: "), json.loads(b.split("\n")[1].removeprefix("data: ")))
              for b in raw.strip().split("\n\n")]
    assert [e[0] for e in events].count("token") > 3 and events[-1][0] == "sources"
    assert "monday" in "".join(e[1]["text"] for e in events[:-1]).lower()
    assert events[-1][1]["mode"] == "generated" and events[-1][1]["sources"][0]["document"] == "notes.txt"


def test_leaked_think_blocks_are_stripped(server_client, ollama):
    ollama.install(LLM_MODEL, leak_think=True)
    c = server_client()
    answer = c.post("/chat", json={"question": "Who is on call?", "history": []}).json()["answer"]
    with c.stream("POST", "/chat", json={"question": "Who is on call?", "history": [], "stream": True}) as r:
        streamed = r.read().decode()
    assert "<think>" not in answer and "</think>" not in answer and "monday" in answer.lower()
    assert "think>" not in streamed


def test_embedding_model_mismatch_is_refused_with_reindex_advice(server_client):
    server_client()  # builds the collection with nomic-embed-text (768)
    other = server_client(corpus=None, embedder="local", embed_model=None)
    ready = other.get("/ready")
    assert ready.status_code == 503
    assert "reindex" in ready.json()["checks"]["vector_store"]["detail"]
    r = other.post("/chat", json={"question": "test query", "history": []})
    assert r.status_code == 503 and r.json()["error"] == "misconfigured"
    assert "AEGIS_COLLECTION" in r.json()["detail"]


def test_ready_checks_every_server_dependency(server_client):
    body = server_client(corpus=None).get("/ready").json()
    assert body["status"] == "ready"
    assert {k: v["status"] for k, v in body["checks"].items()} == {
        "vector_store": "ok", "embedder": "ok", "llm": "ok", "cache": "ok"}
    assert body["checks"]["cache"]["kind"] == "redis" and body["checks"]["llm"]["backend"] == "ollama"


def test_jina_embeddings_use_query_and_passage_tasks(server_client):
    c = server_client(embedder="jina", embed_model=None, jina_dimensions=256, reranker="none")
    body = c.post("/chat", json={"question": "When are snapshots uploaded to S3?", "history": []}).json()
    assert body.get("sources"), body  # once, under another job's load: an answer without sources (KeyError)
    assert body["sources"][0]["document"] == "backup.md"
