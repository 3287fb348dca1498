"""A circuit breaker per remote dependency (Qdrant server, Redis): stop calling one that keeps failing.

closed --N consecutive failures--> open --cool-down elapsed--> half-open (one probe call allowed)
half-open --probe succeeds--> closed;  half-open --probe fails--> open (a new cool-down)

While open, callers fail fast instead of waiting out the dependency's timeout. Transitions are logged
once each (not per call) and exported as ``aegis_circuit_state{dependency}`` and
``aegis_circuit_open_total{dependency}``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from . import metrics
from .errors import DependencyError

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}


class CircuitOpenError(DependencyError):
    """The breaker refused the call; ``retry_after_s`` is the cool-down left (for a Retry-After header)."""

    def __init__(self, dependency: str, detail: str, retry_after_s: float) -> None:
        super().__init__(dependency, detail)
        self.retry_after_s = retry_after_s

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class CircuitBreaker:
    def __init__(self, dependency: str, failure_threshold: int, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.dependency = dependency
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.last_error = ""
        metrics.init_circuit(dependency)

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 unless open)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.cooldown_s - self._clock())

    def allow(self) -> bool:
        """May a call go to the dependency now? In half-open, only the first caller (the probe) may."""
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                self._set(HALF_OPEN)
            if self._state == CLOSED:
                return True
            if self._state == HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._probe_in_flight = False
            if self._state != CLOSED:
                self._set(CLOSED)
                log.warning("%s recovered: circuit closed", self.dependency)

    def record_failure(self, error: str) -> None:
        with self._lock:
            self.last_error = error
            self._failures += 1
            probe_failed = self._state == HALF_OPEN and self._probe_in_flight
            self._probe_in_flight = False
            if probe_failed or (self._state == CLOSED and self._failures >= self.failure_threshold):
                self._open(reopened=probe_failed)

    def rejection(self, what: str) -> CircuitOpenError:
        """The error for a call the breaker refused."""
        wait = self.retry_after_s()
        detail = (f"{what} is failing ({self.last_error or 'no detail'}); circuit open, not called again "
                  f"for {wait:.1f} s")
        return CircuitOpenError(self.dependency, detail, wait)

    def _open(self, reopened: bool) -> None:
        self._opened_at = self._clock()
        self._set(OPEN)
        metrics.CIRCUIT_OPENS.labels(self.dependency).inc()
        if reopened:  # still down: the first opening already warned
            log.info("%s probe failed, circuit open for another %.1f s: %s", self.dependency, self.cooldown_s,
                     self.last_error)
        else:
            log.warning("%s failed %d times in a row, circuit open: failing fast for %.1f s; last error: %s",
                        self.dependency, self._failures, self.cooldown_s, self.last_error)

    def _set(self, state: str) -> None:
        self._state = state
        metrics.CIRCUIT_STATE.labels(self.dependency).set(STATE_VALUES[state])
