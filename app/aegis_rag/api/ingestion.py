"""Uploads ingested off the request threads, a bounded number at a time, abandoned with their client.

Each app ingests on its own pool of AEGIS_MAX_CONCURRENT_INGESTS threads; one upload more is refused 429
with Retry-After before its body is read. While an ingest runs, its request watches the connection: when
the client goes away, or the server's graceful stop (AEGIS_SHUTDOWN_TIMEOUT_S) cancels the request, the
ingest stops at its next step (service.ingest_bytes) and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException, Request

log = logging.getLogger("aegis_rag")
WATCH_INTERVAL_S = 0.25  # how soon a gone client is noticed
BUSY_RETRY_AFTER_S = 5


class Ingests:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0  # changed on the event loop only
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="aegis-ingest")

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.running >= self.limit:
            raise HTTPException(status_code=429, detail=f"{self.limit} uploads are being ingested; retry later",
                                headers={"Retry-After": str(BUSY_RETRY_AFTER_S), "Connection": "close"})
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1

    async def run(self, request: Request, ingest: Callable[..., Any], *args: Any) -> Any:
        """ingest(*args, abandon=event) on the pool; the event is set when the client or the server gives up."""
        abandon = threading.Event()
        work = asyncio.wrap_future(self._pool.submit(ingest, *args, abandon=abandon))
        try:
            while not (await asyncio.wait({work}, timeout=WATCH_INTERVAL_S))[0]:
                if not abandon.is_set() and await request.is_disconnected():
                    log.warning("%s %s: the client went away; abandoning the ingest", request.method, request.url.path)
                    abandon.set()  # then wait for the ingest to stop, so its slot frees when its work does
            return work.result()
        except asyncio.CancelledError:  # the server's graceful stop ran out of time
            abandon.set()
            raise

    def close(self) -> None:
        """Waits for running ingests (each stops at its next step once abandoned) and drops queued ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)
