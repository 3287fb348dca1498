"""Liveness (no dependency calls), readiness (every dependency, with timings), Prometheus metrics.

/health is async and does no I/O, so it answers even when every pool thread waits on a hung dependency.
/ready runs its probes on its own small pool, not the request pool /chat uses, and concurrent /ready
requests share one probe run. /metrics is rendered on a pool of its own too: a scrape never queues
behind requests that wait on a hung dependency (the scrape timeout would page for a live API).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Future, ThreadPoolExecutor

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

router = APIRouter()
_READINESS_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aegis-readiness")
_METRICS_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aegis-metrics")


@router.get("/health")
async def health():
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request):
    report = await asyncio.wrap_future(_readiness_run(request.app))
    return JSONResponse(report, status_code=200 if report["status"] == "ready" else 503)


def _readiness_run(app: FastAPI) -> Future:
    """The probe run in flight for this app, or a new one (runs on the event loop thread: no lock needed)."""
    running = getattr(app.state, "readiness_run", None)
    if running is None or running.done():
        running = _READINESS_POOL.submit(app.state.service.readiness)
        app.state.readiness_run = running
    return running


# Documented as what it is: Prometheus text exposition, not JSON.
@router.get("/metrics", response_class=PlainTextResponse, responses={200: {
    "description": "Prometheus text exposition format (every Aegis and HTTP metric)"}})
async def metrics(request: Request):
    body = await asyncio.wrap_future(_METRICS_POOL.submit(_exposition, request.app))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _exposition(app: FastAPI) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # several workers: aggregate every worker's files
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY) + generate_latest(app.state.http_registry)
