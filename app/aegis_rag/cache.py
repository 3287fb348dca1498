"""Embedding cache for query vectors: Redis (shared, TTL) or an in-process LRU.

Key = sha256(model + NUL + text). A cache failure never fails a request: it counts as a miss and
is reported by /ready. Redis sits behind a circuit breaker: once it keeps failing, operations are
misses without touching Redis until a probe after the cool-down succeeds.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict

import numpy as np

from . import metrics
from .breaker import CircuitBreaker
from .settings import Settings

log = logging.getLogger(__name__)


def cache_key(model: str, text: str) -> str:
    return "aegis:emb:" + hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()


class NoCache:
    kind = "none"

    def get(self, key: str) -> np.ndarray | None:
        return None

    def put(self, key: str, vector: np.ndarray) -> None:
        pass

    def ping(self) -> None:
        pass


class MemoryCache(NoCache):
    kind = "memory"

    def __init__(self, max_entries: int) -> None:
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            vec = self._data.get(key)
            if vec is not None:
                self._data.move_to_end(key)
            return vec

    def put(self, key, vector):
        with self._lock:
            self._data[key] = vector
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)


class RedisCache(NoCache):
    kind = "redis"

    def __init__(self, url: str, ttl_s: int, timeout_s: float, breaker: CircuitBreaker) -> None:
        import redis

        self._ttl = ttl_s
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.breaker = breaker

    def get(self, key):
        raw = self._guarded("get", self._redis.get, key)
        return None if raw is None else np.frombuffer(raw, dtype=np.float32)

    def put(self, key, vector):
        self._guarded("put", self._redis.set, key, np.asarray(vector, dtype=np.float32).tobytes(), ex=self._ttl)

    def ping(self):
        if not self.breaker.allow():
            raise self.breaker.rejection("Redis")
        try:
            self._redis.ping()
        except Exception as exc:
            self.breaker.record_failure(f"ping: {exc}")
            raise
        self.breaker.record_success()

    def _guarded(self, what: str, fn, *args, **kwargs):
        """Redis down or breaker open: None (a miss). The breaker logs state changes; not every failure."""
        if not self.breaker.allow():
            return None
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            metrics.CACHE_ERRORS.inc()
            log.debug("embedding cache %s failed: %s", what, exc)
            self.breaker.record_failure(f"{what}: {exc}")
            return None
        self.breaker.record_success()
        return result


def build_cache(settings: Settings) -> NoCache:
    if settings.cache == "redis":
        breaker = CircuitBreaker("cache", settings.breaker_failure_threshold, settings.breaker_cooldown_s)
        return RedisCache(settings.redis_url, settings.cache_ttl_s, settings.redis_timeout_s, breaker)
    if settings.cache == "memory":
        return MemoryCache(settings.cache_max_entries)
    return NoCache()
