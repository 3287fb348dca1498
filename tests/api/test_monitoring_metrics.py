"""The metrics the monitoring rules need beyond the HTTP and stage ones: model load time from Ollama's
load_duration, and the API's connection pool to Qdrant (in use / max)."""

import threading

import pytest

from aegis_rag import metrics
from aegis_rag.errors import DependencyError
from aegis_rag.vectorstore import ConnectionPoolGauge

from .conftest import LLM_MODEL
from .test_health_metrics import samples

LOAD = "aegis_llm_load_duration_seconds"


def _load_series(client) -> tuple[float, float, float]:
    m = samples(client)
    backend = (("backend", "ollama"),)
    return (m[(f"{LOAD}_count", backend)], m[(f"{LOAD}_sum", backend)],
            m[(f"{LOAD}_bucket", (("backend", "ollama"), ("le", "30.0")))])


def test_ollama_load_duration_is_exported_as_a_histogram(server_client, ollama):
    ollama.install(LLM_MODEL, load_seconds=0.4)  # not loaded yet: the next generation loads it
    c = server_client()
    count, total, under_30s = _load_series(c)
    r = c.post("/chat", json={"question": "When are snapshots uploaded to S3?", "history": []})
    assert r.json()["mode"] == "generated"
    count2, total2, under_30s2 = _load_series(c)
    assert count2 == count + 1 and under_30s2 == under_30s + 1
    assert 0.3 <= total2 - total < 5  # seconds (Ollama reports ns); the double's 0.4 s sleep may end a little early


def test_load_duration_series_exist_before_any_generation(server_client):
    m = samples(server_client(corpus=None))
    buckets = {dict(k[1])["le"] for k in m if k[0] == f"{LOAD}_bucket"}
    assert {"30.0", "60.0"} <= buckets  # the manual's warning and critical thresholds are bucket edges


def test_pool_size_is_exported_for_a_qdrant_server(server_client):
    before = metrics.POOL_SIZE._value.get()
    c = server_client(corpus=None, qdrant_pool_size=7)
    m = samples(c)
    assert m[("aegis_vector_store_connections_max", ())] == before + 7
    assert m[("aegis_vector_store_connections_in_use", ())] == 0


def test_embedded_mode_exports_an_empty_pool(client):
    m = samples(client)
    assert ("aegis_vector_store_connections_in_use", ()) in m
    assert ("aegis_vector_store_pool_timeouts_total", ()) in m


def test_pool_slots_are_counted_and_released():
    pool = ConnectionPoolGauge(2, wait_s=5)
    in_use = metrics.POOL_IN_USE._value.get()
    try:
        with pool.slot("http://q"), pool.slot("http://q"):
            assert metrics.POOL_IN_USE._value.get() == in_use + 2
        assert metrics.POOL_IN_USE._value.get() == in_use
    finally:
        pool.close()


def test_exhausted_pool_fails_as_a_vector_store_error_and_counts_it():
    pool = ConnectionPoolGauge(1, wait_s=0.05)
    timeouts = metrics.POOL_WAIT_TIMEOUTS._value.get()
    held, release = threading.Event(), threading.Event()

    def hold():
        with pool.slot("http://q"):
            held.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert held.wait(5)
        with pytest.raises(DependencyError) as exc, pool.slot("http://q"):
            pass
        assert exc.value.dependency == "vector_store" and "busy" in str(exc.value)
        assert metrics.POOL_WAIT_TIMEOUTS._value.get() == timeouts + 1
    finally:
        release.set()
        worker.join(5)
        pool.close()
