"""Aegis' own Prometheus metrics (the HTTP ones come from prometheus-fastapi-instrumentator).

With several uvicorn workers, `aegis-rag serve` sets PROMETHEUS_MULTIPROC_DIR before any worker
imports this module, so every worker writes to shared files and /metrics aggregates them.
"""

from prometheus_client import Counter, Gauge, Histogram

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)

EMBED_SECONDS = Histogram("aegis_embedding_duration_seconds", "Time to embed texts", ["kind"], buckets=_FAST)
SEARCH_SECONDS = Histogram("aegis_vector_search_duration_seconds", "Vector store query time", buckets=_FAST)
SEARCHES = Counter("aegis_vector_searches_total", "Vector store queries")
SEARCH_FAILURES = Counter("aegis_vector_search_failures_total", "Vector store queries that failed")
RERANK_SECONDS = Histogram("aegis_rerank_duration_seconds", "Rerank time", buckets=_SLOW)
RERANK_FAILURES = Counter("aegis_rerank_failures_total", "Reranks that failed (fused order used instead)")
GENERATION_SECONDS = Histogram("aegis_generation_duration_seconds", "LLM generation time", ["backend"], buckets=_SLOW)
GENERATIONS = Counter("aegis_generations_total", "LLM generations attempted", ["backend"])
GENERATION_FAILURES = Counter("aegis_generation_failures_total", "LLM generations that failed", ["backend", "reason"])
DEGRADED_ANSWERS = Counter("aegis_degraded_answers_total", "Answers given extractively because the LLM failed")
DEGENERATE_GENERATIONS = Counter("aegis_degenerate_generations_total",
                                 "LLM answers cut at their first repetition because the model looped", ["backend"])
# Ollama's own load_duration from the last line of every generation; buckets hold the manual's 30 s / 60 s
LLM_LOAD_SECONDS = Histogram("aegis_llm_load_duration_seconds", "Model load time the LLM server reported",
                             ["backend"], buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0))
# The API's connection pool to a Qdrant server: in use / size is the manual's connection-pool usage
POOL_IN_USE = Gauge("aegis_vector_store_connections_in_use", "Qdrant requests holding a pool slot",
                    multiprocess_mode="livesum")
POOL_SIZE = Gauge("aegis_vector_store_connections_max", "Qdrant connection pool size (0 in embedded mode)",
                  multiprocess_mode="livesum")
POOL_WAIT_TIMEOUTS = Counter("aegis_vector_store_pool_timeouts_total",
                             "Qdrant requests refused because every pool slot stayed busy")
CACHE_HITS = Counter("aegis_embedding_cache_hits_total", "Query embeddings served from the cache")
CACHE_MISSES = Counter("aegis_embedding_cache_misses_total", "Query embeddings computed")
CACHE_ERRORS = Counter("aegis_embedding_cache_errors_total", "Cache operations that failed (counted as misses)")
DOCUMENTS = Gauge("aegis_documents", "Documents in the collection", multiprocess_mode="mostrecent")
POINTS = Gauge("aegis_points", "Points (chunks) in the collection", multiprocess_mode="mostrecent")
CIRCUIT_STATE = Gauge("aegis_circuit_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open",
                      ["dependency"], multiprocess_mode="livemax")
CIRCUIT_OPENS = Counter("aegis_circuit_open_total", "Times a circuit breaker opened (also after a failed probe)",
                        ["dependency"])


def init_series(backend: str) -> None:
    """Create the labelled series at zero, so alert expressions see 0 instead of no data."""
    for kind in ("query", "passage"):
        EMBED_SECONDS.labels(kind)
    if backend != "extractive":
        GENERATION_SECONDS.labels(backend)
        GENERATIONS.labels(backend)
        if backend == "ollama":
            LLM_LOAD_SECONDS.labels(backend)
        DEGENERATE_GENERATIONS.labels(backend)
        for reason in ("timeout", "error"):
            GENERATION_FAILURES.labels(backend, reason)


def init_circuit(dependency: str) -> None:
    """A breaker's series start at closed / zero openings."""
    CIRCUIT_STATE.labels(dependency).set(0)
    CIRCUIT_OPENS.labels(dependency)
