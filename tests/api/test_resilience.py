"""The API under a hung dependency stays bounded: no queue behind the store's open lock, /health never
waits, and circuit breakers (Qdrant server, Redis) fail fast while a dependency keeps failing.

Wall-time bounds below are behavioural (a small multiple of one timeout instead of one timeout per
request), deliberately generous; they are not speed targets (those live in bench/).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import REGISTRY

from aegis_rag.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpenError
from aegis_rag.cache import RedisCache
from aegis_rag.errors import DependencyError
from aegis_rag.vectorstore import ServerStore

Q = {"question": "When are snapshots uploaded to S3?", "history": []}
PARALLEL = 45


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def circuit_state(dependency: str) -> float | None:
    return REGISTRY.get_sample_value("aegis_circuit_state", {"dependency": dependency})


def circuit_opens(dependency: str) -> float | None:
    return REGISTRY.get_sample_value("aegis_circuit_open_total", {"dependency": dependency})


def breaker_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aegis_rag.breaker" and r.levelno >= logging.WARNING]


# --- the breaker's state machine (fake clock)
@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_breaker(clock, name="unit", threshold=3, cooldown=10.0) -> CircuitBreaker:
    return CircuitBreaker(name, threshold, cooldown, clock=clock)


def test_breaker_opens_after_threshold_consecutive_failures(clock):
    b = make_breaker(clock, "unit_open")
    assert circuit_state("unit_open") == 0 and circuit_opens("unit_open") == 0
    for _ in range(2):
        assert b.allow()
        b.record_failure("timed out")
    assert b.state == CLOSED
    assert b.allow()
    b.record_failure("timed out")
    assert b.state == OPEN and not b.allow()
    assert circuit_state("unit_open") == 1 and circuit_opens("unit_open") == 1


def test_a_success_resets_the_failure_count(clock):
    b = make_breaker(clock)
    for _ in range(2):
        b.record_failure("refused")
    b.record_success()
    for _ in range(2):
        b.record_failure("refused")
    assert b.state == CLOSED


def test_open_breaker_lets_one_probe_through_after_the_cooldown(clock):
    b = make_breaker(clock, "unit_probe", threshold=1, cooldown=10.0)
    b.record_failure("down")
    clock.now += 9.5
    assert not b.allow() and b.retry_after_s() == pytest.approx(0.5)
    clock.now += 0.5
    assert b.allow()  # the probe
    assert b.state == HALF_OPEN and circuit_state("unit_probe") == 2
    assert not b.allow()  # only one probe at a time
    b.record_success()
    assert b.state == CLOSED and b.allow() and circuit_state("unit_probe") == 0


def test_failed_probe_reopens_for_a_new_cooldown(clock):
    b = make_breaker(clock, "unit_reopen", threshold=2, cooldown=5.0)
    b.record_failure("down")
    b.record_failure("down")
    clock.now += 5.0
    assert b.allow()
    b.record_failure("still down")
    assert b.state == OPEN and not b.allow()
    assert b.retry_after_s() == pytest.approx(5.0)
    assert circuit_opens("unit_reopen") == 2
    clock.now += 5.0
    assert b.allow() and b.state == HALF_OPEN


def test_rejection_is_a_503_dependency_error_with_retry_after(clock):
    b = make_breaker(clock, "unit_reject", threshold=1, cooldown=7.5)
    b.record_failure("connection refused")
    clock.now += 2.0
    err = b.rejection("Qdrant at http://q:6333")
    assert isinstance(err, CircuitOpenError) and err.status == 503 and err.dependency == "unit_reject"
    assert "connection refused" in err.detail and "circuit open" in err.detail
    assert err.retry_after_s == pytest.approx(5.5) and err.retry_after_header == "6"


def test_breaker_warns_once_per_outage_not_per_failure(clock, caplog):
    caplog.set_level(logging.INFO, logger="aegis_rag.breaker")
    b = make_breaker(clock, "unit_log", threshold=2, cooldown=1.0)
    for _ in range(10):
        b.record_failure("timed out")
    clock.now += 1.0
    assert b.allow()
    b.record_failure("timed out")  # failed probe: info, not another warning
    assert len(breaker_warnings(caplog)) == 1
    clock.now += 1.0
    assert b.allow()
    b.record_success()
    assert len(breaker_warnings(caplog)) == 2 and "recovered" in breaker_warnings(caplog)[-1]


# --- Qdrant server hung
def assert_all_503(replies, dependency="vector_store"):
    for r in replies:
        assert r.status_code == 503, r.text
        assert r.json()["dependency"] == dependency and "Traceback" not in r.text
        assert r.headers["Retry-After"]


def assert_health_ok(client) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def chats_with_health_probe(client):
    """45 parallel chats; /health is asked while they are in flight.

    Returns (replies, wall, health_ahead): health_ahead is how many chats were still in flight when /health
    had answered. Counting beats a bound in seconds: on a loaded machine /health may take a while, but a
    /health queued behind the request pool answers only once chats have ended.
    """
    ended: list[float] = []

    def chat(_):
        r = client.post("/chat", json=Q)
        ended.append(time.monotonic())
        return r

    with ThreadPoolExecutor(PARALLEL) as pool:
        t = time.monotonic()
        chats = pool.map(chat, range(PARALLEL))  # every chat submitted now; the replies are collected below
        time.sleep(0.3)  # let the chats occupy the request pool
        assert_health_ok(client)
        health_done = time.monotonic()
        replies = list(chats)
        return replies, time.monotonic() - t, sum(e > health_done for e in ended)


def test_hung_qdrant_at_start_gives_45_fast_503s_not_a_queue_behind_the_open_lock(server_client, qdrant):
    timeout = 1.0
    qdrant.pause()  # the port accepts, nothing answers
    c = server_client(corpus=None, qdrant_timeout_s=timeout)  # its startup open() times out: not opened
    replies, wall, health_ahead = chats_with_health_probe(c)
    assert_all_503(replies)
    details = [r.json()["detail"] for r in replies]
    assert sum("being opened" in d or "circuit open" in d for d in details) >= PARALLEL - 2
    assert wall < 4 * timeout  # one opener waits out the timeout; the others do not queue behind it
    assert health_ahead >= 1  # /health answered while the opener still waited on Qdrant


def test_hung_qdrant_opens_the_breaker_then_fails_fast_and_recovers(server_client, qdrant):
    timeout = 2.0
    c = server_client(corpus=None, qdrant_timeout_s=timeout, breaker_failure_threshold=3, breaker_cooldown_s=60)
    store = c.app.state.service.store
    clock = FakeClock()
    store.breaker._clock = clock  # the cool-down is advanced by hand below
    qdrant.pause()
    replies, wall, health_ahead = chats_with_health_probe(c)
    assert_all_503(replies)
    assert wall < 4 * timeout  # every request in parallel, at most two rounds of one timeout
    assert health_ahead == PARALLEL  # /health answered while every chat still waited on Qdrant
    assert store.breaker.state == OPEN
    assert circuit_state("vector_store") == 1 and circuit_opens("vector_store") >= 1

    r = c.post("/chat", json=Q)  # open: refused without calling Qdrant
    assert_all_503([r])
    assert "circuit open" in r.json()["detail"]
    ready = c.get("/ready")
    check = ready.json()["checks"]["vector_store"]
    assert ready.status_code == 503 and check["circuit"] == "open" and "circuit open" in check["detail"]

    qdrant.resume()
    clock.now += 60  # cool-down over: the next call is the half-open probe
    ready = c.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["vector_store"]["circuit"] == "closed" and circuit_state("vector_store") == 0
    assert c.post("/chat", json=Q).status_code == 200


def test_qdrant_client_errors_do_not_open_the_breaker(server_settings):
    """A 404 (missing collection) means Qdrant is up: it must not count as a failure."""
    store = ServerStore(server_settings(collection="no_such_collection_here", breaker_failure_threshold=1))
    try:
        for _ in range(3):
            with pytest.raises(DependencyError, match="get_collection failed"):
                store.ping()
        assert store.breaker.state == CLOSED
    finally:
        store.close()


# --- Redis hung
def test_hung_redis_opens_the_breaker_and_requests_skip_redis_until_it_recovers(make_client, redis_server, caplog):
    caplog.set_level(logging.INFO, logger="aegis_rag.breaker")
    clock = FakeClock()
    breaker = CircuitBreaker("cache", failure_threshold=2, cooldown_s=30.0, clock=clock)
    cache = RedisCache(redis_server.url, ttl_s=60, timeout_s=0.5, breaker=breaker)
    calls = []
    execute = cache._redis.execute_command
    cache._redis.execute_command = lambda *a, **kw: calls.append(a[0]) or execute(*a, **kw)
    c = make_client(corpus=None, cache="redis", service_kwargs={"cache": cache})

    redis_server.pause()
    first = c.post("/chat", json={**Q, "question": "hung redis 1"})  # get and put time out: breaker opens
    assert first.status_code == 200 and first.json()["timings_ms"]["embed_cached"] is False
    assert breaker.state == OPEN and circuit_state("cache") == 1
    calls_when_opened = len(calls)
    errors_when_opened = REGISTRY.get_sample_value("aegis_embedding_cache_errors_total")
    for i in range(5):
        r = c.post("/chat", json={**Q, "question": f"hung redis {i + 2}"})
        assert r.status_code == 200 and r.json()["timings_ms"]["embed_cached"] is False
    assert len(calls) == calls_when_opened  # misses without touching Redis, so no Redis timeout paid
    assert REGISTRY.get_sample_value("aegis_embedding_cache_errors_total") == errors_when_opened
    assert len(breaker_warnings(caplog)) == 1  # one warning for the outage, none per operation
    ready = c.get("/ready").json()
    assert ready["status"] == "ready" and ready["checks"]["cache"]["circuit"] == "open"
    assert len(calls) == calls_when_opened  # /ready did not probe before the cool-down either

    redis_server.resume()
    clock.now += 30  # cool-down over: the next operation is the probe, and Redis answers
    again = {**Q, "question": "redis is back"}
    assert c.post("/chat", json=again).json()["timings_ms"]["embed_cached"] is False
    assert breaker.state == CLOSED and circuit_state("cache") == 0
    assert c.post("/chat", json=again).json()["timings_ms"]["embed_cached"] is True
    assert len(calls) > calls_when_opened
