"""Worker recycling that never leaves a host without a serving worker (AEGIS_LIMIT_MAX_REQUESTS, several workers).

uvicorn's own limit lets every worker of a host exit at once: under an even load they reach it within seconds of
each other (the jitter spreads 50 requests), and a new worker takes seconds to serve (18 s on a loaded test host).
For that long the host answers nothing, its load balancer marks it DOWN, and during a rolling deploy, with the
other host drained, every client gets a 503. Here a worker past its limit exits only while every other worker of
the host serves (one recycles at a time); otherwise it serves on and asks again a second later.

The workers of a host share a folder (`aegis-rag serve` empties it at start): each serving worker holds a file named
after its pid there; the choice to exit is made under a lock, so two workers past their limit never both go.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
ASK_EVERY_S = 1.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _stop_this_worker() -> None:
    """What uvicorn's own limit does, from outside: its SIGTERM handler ends the worker once its requests are
    answered, and the supervisor starts a new one."""
    os.kill(os.getpid(), signal.SIGTERM)


class Recycler:
    def __init__(self, folder: Path, limit: int, jitter: int, workers: int, *,
                 stop: Callable[[], None] = _stop_this_worker, pid: int | None = None) -> None:
        self.folder = folder
        self.workers = workers
        self.limit = limit + random.randint(0, jitter)
        self.requests = 0
        self.pid = pid or os.getpid()
        self._stop = stop
        self._asked_at = float("-inf")
        self._leaving = False
        self._postponed = False

    @property
    def _mark(self) -> Path:
        return self.folder / f"serving-{self.pid}"

    def serving(self) -> None:
        """Called once the worker serves (its application started)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._mark.touch()

    def stopping(self) -> None:
        """Called when the worker stops, for whatever reason."""
        self._mark.unlink(missing_ok=True)

    def request(self) -> None:
        """Called at every request: past the limit, at most once a second, exit if every other worker serves."""
        self.requests += 1
        if self._leaving or self.requests < self.limit:
            return
        now = time.monotonic()
        if now - self._asked_at < ASK_EVERY_S:
            return
        self._asked_at = now
        try:
            others = self._leave_if_others_serve()
        except OSError as exc:  # the folder is gone: serve on, and say so once
            if not self._postponed:
                log.warning("worker %d cannot recycle: %s", self.pid, exc)
            self._postponed = True
            return
        if others:
            self._leaving = True
            log.info("worker %d recycles after %d requests; %d other worker(s) serve", self.pid, self.requests,
                     others)
            self._stop()
        elif not self._postponed:
            self._postponed = True
            log.info("worker %d is past its limit of %d requests, but another worker of the host is not serving: "
                     "it serves on until every other one does", self.pid, self.limit)

    def _leave_if_others_serve(self) -> int:
        """The number of other serving workers when every other worker serves (this worker's mark is then gone,
        under the lock), else 0."""
        with open(self.folder / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            others = [p for p in self._serving_pids() if p != self.pid and _alive(p)]
            if len(others) < max(self.workers - 1, 1):
                return 0
            self.stopping()
            return len(others)

    def _serving_pids(self) -> list[int]:
        pids = []
        for mark in self.folder.glob("serving-*"):
            try:
                pids.append(int(mark.name.removeprefix("serving-")))
            except ValueError:
                continue
        return pids


class CountRequests:
    """ASGI middleware: tells the recycler of every HTTP request."""

    def __init__(self, app, recycler: Recycler) -> None:
        self.app = app
        self.recycler = recycler

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.recycler.request()
        await self.app(scope, receive, send)
