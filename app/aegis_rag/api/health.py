"""Liveness (no dependency calls), readiness (every dependency, with timings), Prometheus metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

router = APIRouter()


@router.get("/health")
def health():
    return {"status": "ok"}


@router.get("/ready")
def ready(request: Request):
    report = request.app.state.service.readiness()
    return JSONResponse(report, status_code=200 if report["status"] == "ready" else 503)


@router.get("/metrics")
def metrics(request: Request):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # several workers: aggregate every worker's files
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY) + generate_latest(request.app.state.http_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
