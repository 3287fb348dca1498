#!/usr/bin/env python3
"""HTTP double of a Qdrant 1.19 server (REST only), on qdrant-client's local engine.

Run it: ``python -m tests.doubles.qdrant --port 6333 [--api-key K] [--data-dir D]``, or copy this file
with its siblings qdrant_store.py (storage), qdrant_validation.py (request checks), qdrant_snapshots.py
(snapshots) and faults.py to a host and run ``python3 qdrant.py ...``; it needs qdrant-client, starlette,
uvicorn, python-multipart and httpx (and pyyaml for ``--config-path``).

It also starts as the real binary does (molecule/standins/qdrant.py packs it so): ``--config-path FILE``
(service.host/http_port/api_key, storage.storage_path/snapshots_path; QDRANT__SECTION__KEY variables win over
the file), ``--uri``, ``--bootstrap`` and ``--disable-telemetry`` (accepted and logged). Its own flags win
over both. It prints ``Qdrant HTTP listening on PORT`` once serving, and binds the gRPC port (and the p2p
port with cluster.enabled) without serving them; ``read_only_api_key`` is read but not enforced.

Storage is qdrant-client's local mode (``QdrantClient(path=...)``): Qdrant's own in-process engine for
development, so filters, dense/sparse (IDF) search, prefetch + RRF fusion, facets, counts and scrolls
return real results. Every request body is parsed with qdrant-client's REST models
(``qdrant_client.http.models``), made to ignore unknown fields as the server's serde structs do (only
filters and payload selectors refuse them, as on the server). Collection configs and point ids are then
checked with the server's bounds (qdrant_validation.py). Replies use the real envelope
``{"result": ..., "status": "ok", "time": ...}`` and errors ``{"status": {"error": ...}, "time": ...}`` with the
server's status codes (400 malformed body or bad input, 404 not found, 409 already exists, 422 value out of
range), and 501 for what the double does not implement (below).

What local mode lacks, the double keeps itself (in ``<data-dir>/double_state.json``): the full
``optimizers_config`` (returned as ``config.optimizer_config``), hnsw/wal/params config, payload indexes
(``payload_schema``), collection status and snapshots.

Status: ``green``; ``yellow`` for ``--optimize-seconds`` after an optimizer-config PATCH, a recovery, or an
upsert of at least ``--large-upsert`` points; ``grey`` for every collection found on disk at start-up,
until its next update (any write, or ``PATCH {"optimizers_config": {}}``). ``optimizer_status`` is "ok".

Known divergences from the real server:
- REST only: no gRPC port (use ``prefer_grpc=False``); no distributed mode (``/cluster`` says disabled),
  no shard keys, no full-storage ``/snapshots``, no ``/telemetry``, no read-only key or JWT (only
  ``api-key``), no strict mode. Requests using what is missing are refused with 501 Not Implemented naming
  it (``strict_mode_config``, ``sharding_method: custom``, ``shard_key``): the server would apply them, so
  a 400 would wrongly call the request invalid, and a 200 would hide that nothing happened.
- Snapshot files are the double's own format: an uncompressed tar holding ``snapshot.json`` (collection
  config and payload schema) and ``points.jsonl`` (one point per line). Real snapshots cannot be recovered
  into the double, nor the double's into a real server. Names, creation_time, size and the sha256
  checksum (with its ``.checksum`` sidecar file) follow the real scheme; two snapshots of one collection
  taken within the same second get distinct names because the double waits for the next second.
- Snapshot recovery over http(s) only fetches loopback URLs (the test stack never leaves the machine);
  ``file://`` locations must lie inside the double's snapshots directory; ``s3://`` is rejected with the
  server's message. ``priority`` is accepted and ignored (there is one replica).
- Error texts for malformed bodies come from pydantic, not serde: same status code and envelope, other
  wording. The range and semantic checks are those of qdrant_validation.py (every config field Aegis sends
  or may send, point ids), not all of the server's; a body using fields newer than 1.19 that qdrant-client
  knows is parsed, where the server would ignore them.
- ``segments_count`` is ``default_segment_number`` (2 when 0 = auto); ``indexed_vectors_count`` counts
  one sparse vector per point and sparse vector name, and dense vectors only once their raw size reaches
  ``indexing_threshold`` KB (an approximation of the HNSW build rule); point ``version`` is the engine's.
- ``PATCH /collections/{name}`` stores optimizers, hnsw, params, quantization and metadata changes;
  non-empty ``vectors``, ``sparse_vectors`` and any ``strict_mode_config`` are refused with 501 (see above).
  Upserts apply ``update_filter`` and ``update_mode`` through the local engine (501 if it lacks them).
- Grey after restart applies to every stored collection (the real server only goes grey when
  optimisations were pending); yellow is simulated by time, no optimiser really runs. The simulated runs
  (optimizer ``config_mismatch`` after a PATCH, ``indexing`` after a large upsert or a recovery) are what
  ``GET /collections/{name}/optimizations`` reports, with linear progress.
- /metrics carries the real names (``rest_responses_total``, ``rest_responses_duration_seconds``
  histogram with ``method``/``endpoint``/``status`` labels for the server's whitelist of endpoints,
  ``collections_total``, ``collections_vector_total``, ``collection_points``, ``snapshot_created_total``,
  ``app_info``...) but not the process, memory and hardware families.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import anyio
from qdrant_client import QdrantClient
from qdrant_client.http import models as m
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

try:
    from . import faults
    from .qdrant_snapshots import Snapshots, fetch_to, is_loopback, sha256_file, stream_multipart_file
    from .qdrant_store import FACET_INDEX_TYPES, ApiError, Store, count_points, dump, invalid, parse, points_of
    from .qdrant_validation import (
        check_point_ids,
        unsupported,
        validate_create,
        validate_limit,
        validate_name,
        validate_update,
    )
except ImportError:  # run as a plain script: the sibling modules sit next to this file
    import faults
    from qdrant_snapshots import Snapshots, fetch_to, is_loopback, sha256_file, stream_multipart_file
    from qdrant_store import FACET_INDEX_TYPES, ApiError, Store, count_points, dump, invalid, parse, points_of
    from qdrant_validation import (
        check_point_ids,
        unsupported,
        validate_create,
        validate_limit,
        validate_name,
        validate_update,
    )

VERSION = "1.19.0"
# recent qdrant-client local engines apply upsert's update_filter and update_mode
UPSERT_OPTIONS_SUPPORTED = "update_mode" in inspect.signature(QdrantClient.upsert).parameters
COMMIT = "0000000000000000000000000000000000000000"
OPEN_PATHS = ("/", "/healthz", "/livez", "/readyz")
HISTOGRAM_BOUNDS = (1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0)
# The endpoints the real server reports in /metrics (src/common/metrics/requests.rs).
METRIC_ENDPOINTS = {
    "/collections/{collection_name}/index", "/collections/{collection_name}/points",
    "/collections/{collection_name}/points/batch", "/collections/{collection_name}/points/count",
    "/collections/{collection_name}/points/delete", "/collections/{collection_name}/points/facet",
    "/collections/{collection_name}/points/payload", "/collections/{collection_name}/points/payload/clear",
    "/collections/{collection_name}/points/payload/delete", "/collections/{collection_name}/points/query",
    "/collections/{collection_name}/points/query/batch", "/collections/{collection_name}/points/scroll",
}


# -- metrics ----------------------------------------------------------------------------------------
class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.responses: dict[tuple[str, str, int], dict] = {}

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        if endpoint not in METRIC_ENDPOINTS:
            return
        with self.lock:
            s = self.responses.setdefault((method, endpoint, status), {
                "count": 0, "sum": 0.0, "min": None, "max": 0.0, "buckets": [0] * len(HISTOGRAM_BOUNDS)})
            s["count"] += 1
            s["sum"] += seconds
            s["min"] = seconds if s["min"] is None else min(s["min"], seconds)
            s["max"] = max(s["max"], seconds)
            for i, bound in enumerate(HISTOGRAM_BOUNDS):
                if seconds <= bound:
                    s["buckets"][i] += 1

    def render(self, store: Store) -> str:
        lines: list[str] = []

        def family(name, help_, kind, samples):
            if samples:
                lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples])

        def labels(**kv):
            return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items()) + "}" if kv else ""

        family("app_info", "information about qdrant server", "gauge", [f"app_info{labels(name='qdrant', version=VERSION)} 1"])
        family("app_status_recovery_mode", "features enabled in qdrant server", "gauge", ["app_status_recovery_mode 0"])
        with store.lock:
            names = sorted(store.meta)
            points = {n: store.engine.count(n, exact=True).count for n in names}
            created = dict(store.snapshots_created)
            running = {n: len(store.running(n)) for n in names}
        family("collections_total", "number of collections", "gauge", [f"collections_total {len(names)}"])
        family("collections_vector_total", "total number of vectors in all collections", "gauge",
               [f"collections_vector_total {sum(points.values())}"])
        family("collection_points", "approximate amount of points per collection", "gauge",
               [f"collection_points{labels(id=n)} {points[n]}" for n in names])
        family("collection_running_optimizations", "number of currently running optimization tasks per collection",
               "gauge", [f"collection_running_optimizations{labels(id=n)} {running[n]}" for n in names])
        family("snapshot_created_total", "total amount of snapshots created", "counter",
               [f"snapshot_created_total{labels(id=n)} {c}" for n, c in sorted(created.items())])
        family("cluster_enabled", "is cluster support enabled", "gauge", ["cluster_enabled 0"])
        with self.lock:
            items = sorted(self.responses.items())
        total, avg, mn, mx, hist = [], [], [], [], []
        for (method, endpoint, status), s in items:
            lab = labels(method=method, endpoint=endpoint, status=status)
            total.append(f"rest_responses_total{lab} {s['count']}")
            if status != 200:
                continue
            avg.append(f"rest_responses_avg_duration_seconds{lab} {s['sum'] / s['count']:.9f}")
            mn.append(f"rest_responses_min_duration_seconds{lab} {s['min']:.9f}")
            mx.append(f"rest_responses_max_duration_seconds{lab} {s['max']:.9f}")
            for bound, n in zip(HISTOGRAM_BOUNDS, s["buckets"]):  # observe() keeps them cumulative
                hist.append(f"rest_responses_duration_seconds_bucket{lab[:-1]},le=\"{bound}\"}} {n}")
            hist.append(f"rest_responses_duration_seconds_bucket{lab[:-1]},le=\"+Inf\"}} {s['count']}")
            hist.append(f"rest_responses_duration_seconds_sum{lab} {s['sum']:.9f}")
            hist.append(f"rest_responses_duration_seconds_count{lab} {s['count']}")
        family("rest_responses_total", "total number of responses", "counter", total)
        family("rest_responses_avg_duration_seconds", "average response duration", "gauge", avg)
        family("rest_responses_min_duration_seconds", "minimum response duration", "gauge", mn)
        family("rest_responses_max_duration_seconds", "maximum response duration", "gauge", mx)
        family("rest_responses_duration_seconds", "response duration histogram", "histogram", hist)
        return "\n".join(lines) + "\n"


# -- HTTP layer -------------------------------------------------------------------------------------
def envelope(result: Any, started: float, status: str = "ok") -> dict:
    return {"result": result, "status": status, "time": time.perf_counter() - started}


def error_response(exc: ApiError, started: float) -> JSONResponse:
    return JSONResponse({"status": {"error": exc.message}, "time": time.perf_counter() - started},
                        status_code=exc.status)


def flag(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise ApiError(400, f"Format error in query parameters: {name}: provided string was not `true` or `false`")
    return raw == "true"


async def body_json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise ApiError(400, "Format error in JSON body: EOF while parsing a value at line 1 column 0")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"Format error in JSON body: {exc}") from None


class QdrantDouble:
    def __init__(self, data_dir: Path, api_key: str | None = None, optimize_seconds: float = 1.0,
                 large_upsert: int = 1000) -> None:
        self.api_key = api_key
        self.store = Store(data_dir, optimize_seconds, large_upsert)
        self.snapshots = Snapshots(self.store)
        self.metrics = Metrics()
        self.app = Starlette(routes=self._routes())

    async def run(self, fn: Callable, *args) -> Any:
        def locked():
            with self.store.lock:
                return fn(*args)
        return await anyio.to_thread.run_sync(locked)

    def _routes(self) -> list[Route]:
        c = "/collections/{collection_name}"
        r = Route
        return [
            r("/", self.root), r("/healthz", self.healthz), r("/livez", self.healthz), r("/readyz", self.readyz),
            r("/metrics", self.metrics_endpoint), r("/cluster", self.cluster),
            r("/collections", self.list_collections),
            r("/aliases", self.list_aliases), r("/collections/aliases", self.update_aliases, methods=["POST"]),
            r(c, self.get_collection, methods=["GET"]), r(c, self.create_collection, methods=["PUT"]),
            r(c, self.update_collection, methods=["PATCH"]), r(c, self.delete_collection, methods=["DELETE"]),
            r(c + "/exists", self.collection_exists), r(c + "/aliases", self.collection_aliases),
            r(c + "/optimizations", self.optimizations),
            r(c + "/index", self.create_index, methods=["PUT"]),
            r(c + "/index/{field_name}", self.delete_index, methods=["DELETE"]),
            r(c + "/points", self.upsert, methods=["PUT"]), r(c + "/points", self.retrieve, methods=["POST"]),
            r(c + "/points/delete", self.delete_points, methods=["POST"]),
            r(c + "/points/batch", self.batch, methods=["POST"]),
            r(c + "/points/payload", self.set_payload, methods=["POST"]),
            r(c + "/points/payload", self.overwrite_payload, methods=["PUT"]),
            r(c + "/points/payload/delete", self.delete_payload, methods=["POST"]),
            r(c + "/points/payload/clear", self.clear_payload, methods=["POST"]),
            r(c + "/points/scroll", self.scroll, methods=["POST"]),
            r(c + "/points/count", self.count, methods=["POST"]),
            r(c + "/points/query", self.query, methods=["POST"]),
            r(c + "/points/query/batch", self.query_batch, methods=["POST"]),
            r(c + "/facet", self.facet, methods=["POST"]),
            r(c + "/points/{point_id}", self.get_point, methods=["GET"]),
            r(c + "/snapshots", self.list_snapshots, methods=["GET"]),
            r(c + "/snapshots", self.create_snapshot, methods=["POST"]),
            r(c + "/snapshots/upload", self.upload_snapshot, methods=["POST"]),
            r(c + "/snapshots/recover", self.recover_snapshot, methods=["PUT"]),
            r(c + "/snapshots/{snapshot_name}", self.download_snapshot, methods=["GET"]),
            r(c + "/snapshots/{snapshot_name}", self.delete_snapshot, methods=["DELETE"]),
        ]

    # ASGI entry: auth, metrics and error envelopes around the router.
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if self.api_key and path not in OPEN_PATHS and not self._authorized(scope):
            headers = dict(scope["headers"])
            has_key = b"api-key" in headers or headers.get(b"authorization", b"").startswith(b"Bearer ")
            msg = "Invalid API key or JWT" if has_key else "Must provide an API key or an Authorization bearer token"
            return await PlainTextResponse(msg, status_code=401)(scope, receive, send)
        endpoint = self._endpoint_of(scope)
        started = time.perf_counter()
        status_box = {}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status_box["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, send_wrapper)
        if endpoint:
            self.metrics.observe(scope["method"], endpoint, status_box.get("status", 500), time.perf_counter() - started)

    def _authorized(self, scope) -> bool:
        headers = dict(scope["headers"])
        key = headers.get(b"api-key")
        if key is None:
            auth = headers.get(b"authorization", b"")
            key = auth[7:] if auth.startswith(b"Bearer ") else None
        return key is not None and key.decode(errors="replace") == self.api_key

    def _endpoint_of(self, scope) -> str | None:
        from starlette.routing import Match

        for route in self.app.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route.path
        return None

    # -- handlers ----------------------------------------------------------------------------------
    def handler(fn):
        """Turn ApiError (and engine ValueErrors) into the server's error envelope."""

        async def wrapped(self, request: Request):
            started = time.perf_counter()
            try:
                return await fn(self, request, started)
            except ApiError as exc:
                return error_response(exc, started)
            except (ValueError, KeyError, AssertionError) as exc:  # the engine refusing bad input
                text = str(exc)
                return error_response(ApiError(400, text if text.startswith("Wrong input") else
                                               f"Wrong input: {text}"), started)

        wrapped.__name__ = fn.__name__
        return wrapped

    def ok(self, result: Any, started: float) -> JSONResponse:
        return JSONResponse(envelope(dump(result), started))

    async def root(self, request: Request) -> Response:
        return JSONResponse({"title": "qdrant - vector search engine", "version": VERSION, "commit": COMMIT})

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("healthz check passed")

    async def readyz(self, request: Request) -> Response:
        return PlainTextResponse("all shards are ready")

    async def metrics_endpoint(self, request: Request) -> Response:
        text = await anyio.to_thread.run_sync(self.metrics.render, self.store)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @handler
    async def cluster(self, request, started):
        return self.ok({"status": "disabled"}, started)

    @handler
    async def list_collections(self, request, started):
        names = await self.run(lambda: sorted(self.store.meta))
        return self.ok({"collections": [{"name": n} for n in names]}, started)

    @handler
    async def list_aliases(self, request, started):
        aliases = await self.run(lambda: self.store.engine.get_aliases().aliases)
        return self.ok({"aliases": aliases}, started)

    @handler
    async def collection_aliases(self, request, started):
        name = request.path_params["collection_name"]

        def work():
            self.store.resolve(name)
            return [a for a in self.store.engine.get_aliases().aliases if a.collection_name == name]
        return self.ok({"aliases": await self.run(work)}, started)

    @handler
    async def update_aliases(self, request, started):
        req = parse(m.ChangeAliasesOperation, await body_json(request))

        def work():
            for action in req.actions:
                target = getattr(action, "create_alias", None)
                if target is not None:
                    self.store.resolve(target.collection_name)
                    if target.alias_name in self.store.meta:
                        raise ApiError(409, f"Wrong input: Collection `{target.alias_name}` already exists!")
            self.store.engine.update_collection_aliases(change_aliases_operations=req.actions)
            return True
        return self.ok(await self.run(work), started)

    @handler
    async def get_collection(self, request, started):
        return self.ok(await self.run(self.store.info, request.path_params["collection_name"]), started)

    @handler
    async def collection_exists(self, request, started):
        name = request.path_params["collection_name"]
        return self.ok({"exists": await self.run(lambda: name in self.store.meta)}, started)

    @handler
    async def optimizations(self, request, started):
        with_ = {w for w in request.query_params.get("with", "").split(",") if w}
        unknown = with_ - {"queued", "completed", "idle_segments"}
        if unknown:
            raise ApiError(400, f"Format error in query parameters: unknown variant `{min(unknown)}`, "
                                "expected one of `queued`, `completed`, `idle_segments`")
        limit = request.query_params.get("completed_limit", "16")
        if not limit.isdigit():
            raise ApiError(400, "Format error in query parameters: completed_limit: invalid digit found in string")
        name = request.path_params["collection_name"]
        return self.ok(await self.run(self.store.optimizations_report, name, with_, int(limit)), started)

    @handler
    async def create_collection(self, request, started):
        name = request.path_params["collection_name"]
        validate_name(name)
        req = parse(m.CreateCollection, await body_json(request))
        validate_create(req)
        return self.ok(await self.run(self.store.create, name, req), started)

    @handler
    async def update_collection(self, request, started):
        req = parse(m.UpdateCollection, await body_json(request))
        validate_update(req)
        return self.ok(await self.run(self.store.update, request.path_params["collection_name"], req), started)

    @handler
    async def delete_collection(self, request, started):
        return self.ok(await self.run(self.store.delete, request.path_params["collection_name"]), started)

    @handler
    async def create_index(self, request, started):
        req = parse(m.CreateFieldIndex, await body_json(request))
        wait = flag(request, "wait", False)
        result = await self.run(self.store.create_index, request.path_params["collection_name"], req)
        return self.ok(self._ack(result, wait), started)

    @handler
    async def delete_index(self, request, started):
        p = request.path_params
        wait = flag(request, "wait", False)
        return self.ok(self._ack(await self.run(self.store.delete_index, p["collection_name"], p["field_name"]), wait),
                       started)

    @staticmethod
    def _ack(result: m.UpdateResult, wait: bool) -> m.UpdateResult:
        if not wait:
            result.status = m.UpdateStatus.ACKNOWLEDGED
        return result

    async def _update(self, request: Request, started: float, model, apply: Callable) -> Response:
        req = parse(model, await body_json(request))
        check_point_ids(req)
        wait = flag(request, "wait", False)
        name = request.path_params["collection_name"]

        def work():
            real = self.store.resolve(name)
            points = apply(real, req)
            return self.store.touched(real, points=points or 0)
        return self.ok(self._ack(await self.run(work), wait), started)

    def _upsert(self, name: str, op: m.PointsList | m.PointsBatch) -> int:
        """Upsert honouring `update_filter` and `update_mode` (both applied by the local engine)."""
        if op.shard_key is not None:
            raise unsupported("`shard_key` (shard keys)")
        points = points_of(op)
        options = {k: v for k, v in (("update_filter", op.update_filter), ("update_mode", op.update_mode))
                   if v is not None}
        if options and not UPSERT_OPTIONS_SUPPORTED:
            raise unsupported(f"{', '.join(options)} with this qdrant-client (its local engine lacks them)")
        self.store.engine.upsert(name, points=points, **options)
        return count_points(points)

    @handler
    async def upsert(self, request, started):
        return await self._update(request, started, m.PointInsertOperations, self._upsert)

    @handler
    async def delete_points(self, request, started):
        return await self._update(request, started, m.PointsSelector,
                                  lambda name, req: self.store.engine.delete(name, points_selector=req) and 0)

    @handler
    async def set_payload(self, request, started):
        return await self._update(request, started, m.SetPayload, lambda name, req: self.store.engine.set_payload(
            name, payload=req.payload, points=self._selector(req), key=req.key) and 0)

    @handler
    async def overwrite_payload(self, request, started):
        return await self._update(request, started, m.SetPayload, lambda name, req: self.store.engine.overwrite_payload(
            name, payload=req.payload, points=self._selector(req)) and 0)

    @handler
    async def delete_payload(self, request, started):
        return await self._update(request, started, m.DeletePayload, lambda name, req: self.store.engine.delete_payload(
            name, keys=req.keys, points=self._selector(req)) and 0)

    @handler
    async def clear_payload(self, request, started):
        return await self._update(request, started, m.PointsSelector,
                                  lambda name, req: self.store.engine.clear_payload(name, points_selector=req) and 0)

    @staticmethod
    def _selector(req) -> Any:
        if req.points is not None:
            return m.PointIdsList(points=req.points)
        if req.filter is not None:
            return m.FilterSelector(filter=req.filter)
        raise ApiError(400, "Bad request: Either list of point ids or filter must be provided")

    @handler
    async def batch(self, request, started):
        req = parse(m.UpdateOperations, await body_json(request))
        check_point_ids(req)
        wait = flag(request, "wait", False)
        name = request.path_params["collection_name"]

        def work():
            real = self.store.resolve(name)
            count = 0
            for op in req.operations:  # in order, one at a time, like the server's update queue
                if isinstance(op, m.UpsertOperation):
                    count += self._upsert(real, op.upsert)
                else:
                    self.store.engine.batch_update_points(real, update_operations=[op])
            return [self._ack(self.store.touched(real, points=count), wait) for _ in req.operations]
        return self.ok(await self.run(work), started)

    @handler
    async def retrieve(self, request, started):
        req = parse(m.PointRequest, await body_json(request))
        check_point_ids(req)
        name = request.path_params["collection_name"]

        def work():
            real = self.store.resolve(name)
            return self.store.engine.retrieve(real, ids=req.ids, with_payload=req.with_payload if req.with_payload is not None else True,
                                              with_vectors=req.with_vector or False)
        return self.ok(await self.run(work), started)

    @handler
    async def get_point(self, request, started):
        name, raw = request.path_params["collection_name"], request.path_params["point_id"]
        point_id: Any = int(raw) if raw.isdigit() else raw

        def work():
            real = self.store.resolve(name)
            found = self.store.engine.retrieve(real, ids=[point_id], with_payload=True, with_vectors=True)
            if not found:
                raise ApiError(404, f"Not found: No point with id {raw} found")
            return found[0]
        return self.ok(await self.run(work), started)

    @handler
    async def scroll(self, request, started):
        raw = await body_json(request) if int(request.headers.get("content-length") or 0) else {}
        req = parse(m.ScrollRequest, raw)
        validate_limit(req.limit)
        name = request.path_params["collection_name"]

        def work():
            real = self.store.resolve(name)
            if req.order_by is not None:
                key = req.order_by if isinstance(req.order_by, str) else req.order_by.key
                self.store.require_index(real, key, {"integer", "float", "datetime"}, "order_by key")
            points, offset = self.store.engine.scroll(
                real, scroll_filter=req.filter, limit=req.limit or 10, offset=req.offset,
                with_payload=req.with_payload if req.with_payload is not None else True,
                with_vectors=req.with_vector or False, order_by=req.order_by)
            return {"points": dump(points), "next_page_offset": offset}
        return JSONResponse(envelope(await self.run(work), started))

    @handler
    async def count(self, request, started):
        raw = await body_json(request) if int(request.headers.get("content-length") or 0) else {}
        req = parse(m.CountRequest, raw)
        name = request.path_params["collection_name"]

        def work():
            real = self.store.resolve(name)
            exact = req.exact if req.exact is not None else True
            return self.store.engine.count(real, count_filter=req.filter, exact=exact)
        return self.ok(await self.run(work), started)

    def _query(self, name: str, req: m.QueryRequest) -> m.QueryResponse:
        validate_limit(req.limit)
        return self.store.engine.query_points(
            name, query=req.query, using=req.using, prefetch=req.prefetch, query_filter=req.filter,
            search_params=req.params, limit=req.limit or 10, offset=req.offset,
            with_payload=req.with_payload if req.with_payload is not None else False,
            with_vectors=req.with_vector or False, score_threshold=req.score_threshold,
            lookup_from=req.lookup_from)

    @handler
    async def query(self, request, started):
        req = parse(m.QueryRequest, await body_json(request))
        name = request.path_params["collection_name"]
        return self.ok(await self.run(lambda: self._query(self.store.resolve(name), req)), started)

    @handler
    async def query_batch(self, request, started):
        req = parse(m.QueryRequestBatch, await body_json(request))
        name = request.path_params["collection_name"]

        def work():
            real = self.store.resolve(name)
            return [self._query(real, q) for q in req.searches]
        return self.ok(await self.run(work), started)

    @handler
    async def facet(self, request, started):
        req = parse(m.FacetRequest, await body_json(request))
        validate_limit(req.limit)
        name = request.path_params["collection_name"]

        def work():
            real = self.store.resolve(name)
            self.store.require_index(real, req.key, FACET_INDEX_TYPES, "key")
            return self.store.engine.facet(real, key=req.key, facet_filter=req.filter, limit=req.limit or 10,
                                           exact=bool(req.exact))
        return self.ok(await self.run(work), started)

    # -- snapshots ---------------------------------------------------------------------------------
    async def _maybe_wait(self, request: Request, started: float, fn: Callable, *args) -> Response:
        """`?wait=false` answers 202 at once and runs the job in the background, like the server."""
        if flag(request, "wait", True):
            return self.ok(await anyio.to_thread.run_sync(fn, *args), started)

        async def background():
            try:
                await anyio.to_thread.run_sync(fn, *args)
            except ApiError:
                pass
        asyncio.get_running_loop().create_task(background())
        return JSONResponse({"result": None, "status": "accepted", "time": time.perf_counter() - started},
                            status_code=202)

    @handler
    async def list_snapshots(self, request, started):
        name = request.path_params["collection_name"]
        return self.ok(await self.run(lambda: self.snapshots.list(self.store.resolve(name))), started)

    @handler
    async def create_snapshot(self, request, started):
        return await self._maybe_wait(request, started, self.snapshots.create, request.path_params["collection_name"])

    @handler
    async def download_snapshot(self, request, started):
        p = request.path_params
        path = await self.run(lambda: self.snapshots.path(self.store.resolve(p["collection_name"]), p["snapshot_name"]))
        return FileResponse(path, media_type="application/octet-stream", filename=path.name)

    @handler
    async def delete_snapshot(self, request, started):
        p = request.path_params
        return await self._maybe_wait(request, started, self.snapshots.delete, p["collection_name"], p["snapshot_name"])

    @handler
    async def upload_snapshot(self, request, started):
        name = request.path_params["collection_name"]
        validate_name(name)
        expected = request.query_params.get("checksum")
        _validate_checksum(expected, "query parameters")
        _validate_priority(request.query_params.get("priority"), "query parameters")
        flag(request, "wait", True)  # refuse a bad flag before streaming the upload
        folder = self.snapshots.dir(name)
        tmp, checksum, filename = await stream_multipart_file(request, "snapshot", folder)
        if expected and expected.lower() != checksum:
            tmp.unlink()
            raise ApiError(400, f"Checksum mismatch: expected {checksum}, actual {expected}")
        safe = Path(filename or "").name or f"{uuid.uuid4()}"
        target = folder / safe
        tmp.replace(target)
        return await self._maybe_wait(request, started, self._recover_locked, name, target)

    def _recover_locked(self, name: str, archive: Path) -> bool:
        return self.snapshots.recover(name, archive)

    @handler
    async def recover_snapshot(self, request, started):
        name = request.path_params["collection_name"]
        validate_name(name)
        req = parse(m.SnapshotRecover, await body_json(request))
        _validate_checksum(req.checksum, "JSON body")
        url = urlparse(req.location)
        if url.scheme == "file":
            path = Path(unquote(url.path)).resolve()
            root = self.store.snapshots_dir.resolve()
            if url.netloc not in ("", "localhost"):
                raise ApiError(400, "Bad request: Invalid snapshot URI, file path must be absolute or on localhost")
            if root not in path.parents:
                raise ApiError(403, f"Forbidden: Snapshot file {path} is outside of the snapshots directory {root}")
            if not path.is_file():
                raise ApiError(400, f"Bad request: Snapshot file \"{path}\" does not exist")
            archive, temporary = path, False
        elif url.scheme in ("http", "https"):
            if not is_loopback(url.hostname):
                raise ApiError(400, f"Bad request: this test double only downloads snapshots from loopback "
                                    f"addresses, not {url.hostname}")
            self.store.tmp_dir.mkdir(exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self.store.tmp_dir, suffix=".download")
            os.close(fd)
            archive, temporary = Path(tmp_name), True
            try:
                await fetch_to(req.location, archive, req.api_key)
            except ApiError:
                archive.unlink(missing_ok=True)
                raise
        else:
            raise ApiError(400, f"Bad request: URL {req.location} with scheme {url.scheme} is not supported")
        try:
            if req.checksum:
                actual = await anyio.to_thread.run_sync(sha256_file, archive)
                if actual != req.checksum.lower():
                    raise ApiError(400, f"Wrong input: Snapshot checksum mismatch: expected {req.checksum}, got {actual}")
            return await self._maybe_wait(request, started, self._recover_then_clean, name, archive, temporary)
        except ApiError:
            if temporary:
                archive.unlink(missing_ok=True)
            raise

    def _recover_then_clean(self, name: str, archive: Path, temporary: bool) -> bool:
        try:
            return self.snapshots.recover(name, archive)
        finally:
            if temporary:
                archive.unlink(missing_ok=True)


def _validate_checksum(value: str | None, where: str) -> None:
    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise invalid("checksum", f"value {value} invalid, must be a valid SHA256 hash", where)


def _validate_priority(value: str | None, where: str) -> None:
    if value is not None and value not in ("no_sync", "snapshot", "replica"):
        raise ApiError(400, f"Format error in {where}: unknown variant `{value}`, expected one of "
                            "`no_sync`, `snapshot`, `replica`")


def build_app(data_dir: Path, api_key: str | None = None, optimize_seconds: float = 1.0,
              large_upsert: int = 1000, snapshots_dir: Path | None = None):
    """The double wrapped with fault injection (control path /_faults)."""
    double = QdrantDouble(Path(data_dir), api_key=api_key, optimize_seconds=optimize_seconds,
                          large_upsert=large_upsert)
    if snapshots_dir is not None:  # storage.snapshots_path: snapshots live outside the storage directory
        double.store.snapshots_dir = Path(snapshots_dir)
        double.store.snapshots_dir.mkdir(parents=True, exist_ok=True)
    app = faults.with_faults(double)
    app.double = double
    return app


# -- start-up as the real binary: `qdrant --config-path FILE [--uri URI] [--bootstrap URI]` ---------------
def read_config(path: str | None, environ: dict[str, str]) -> dict:
    """config.yaml as the server reads it: the file, then QDRANT__SECTION__KEY variables over it."""
    import yaml

    config: dict = {}
    if path:
        with open(path, encoding="utf-8") as file:
            config = yaml.safe_load(file) or {}
    for name, value in environ.items():
        keys = name.lower().split("__")
        if keys[0] != "qdrant" or len(keys) < 3:
            continue
        node = config
        for key in keys[1:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = yaml.safe_load(value) if value else value
    return config


def server_options(args: argparse.Namespace, config: dict) -> dict:
    """Where and how to serve: this double's own flags first, then the configuration, then defaults."""
    service, storage = config.get("service") or {}, config.get("storage") or {}
    cluster = config.get("cluster") or {}
    return {
        "host": args.host or service.get("host") or "127.0.0.1",
        "port": int(args.port or service.get("http_port") or 6333),
        "api_key": args.api_key or service.get("api_key") or None,
        "read_only_api_key": service.get("read_only_api_key") or None,
        "data_dir": Path(args.data_dir or storage.get("storage_path") or "./qdrant-double-data"),
        "snapshots_dir": Path(storage["snapshots_path"]) if storage.get("snapshots_path") else None,
        "idle_ports": idle_ports(args.config_path, service, cluster),
    }


def idle_ports(config_path: str | None, service: dict, cluster: dict) -> list[int]:
    """The gRPC port (started from a config file) and the p2p port (cluster enabled): bound as on the real
    server, so they are taken, but not served (the double has no gRPC and no consensus)."""
    ports = [int(service.get("grpc_port") or 6334)] if config_path else []
    if cluster.get("enabled"):
        ports.append(int((cluster.get("p2p") or {}).get("port") or 6335))
    return ports


def hold_ports(host: str, ports: list[int]) -> list:
    import socket

    return [socket.create_server((host, port)) for port in ports]


def announce_when_listening(server, port: int) -> None:
    """Prints the real server's start-up line once the port accepts connections."""
    def wait():
        while not server.started:
            time.sleep(0.05)
        print(f"Qdrant HTTP listening on {port}", flush=True)
    threading.Thread(target=wait, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-path", help="a Qdrant config.yaml, read as the real server reads it")
    ap.add_argument("--uri", default=os.environ.get("QDRANT_URI"), help="this peer's p2p URI (logged only)")
    ap.add_argument("--bootstrap", default=os.environ.get("QDRANT_BOOTSTRAP"),
                    help="a peer to join (logged only: no distributed mode)")
    ap.add_argument("--disable-telemetry", action="store_true", help="accepted; the double sends none")
    ap.add_argument("--host", help="listen address (default: service.host, else 127.0.0.1)")
    ap.add_argument("--port", type=int, help="REST port (default: service.http_port, else 6333)")
    ap.add_argument("--api-key", default=os.environ.get("QDRANT__SERVICE__API_KEY") or None)
    ap.add_argument("--data-dir", help="storage (default: storage.storage_path, else ./qdrant-double-data)")
    ap.add_argument("--optimize-seconds", type=float, default=1.0,
                    help="how long a collection stays yellow after an optimisation trigger")
    ap.add_argument("--large-upsert", type=int, default=1000,
                    help="an upsert of at least this many points triggers an optimisation (0: never)")
    args = ap.parse_args(argv)
    options = server_options(args, read_config(args.config_path, dict(os.environ)))
    print(f"Qdrant double {VERSION}: config {args.config_path or '-'}, uri {args.uri or '-'}, "
          f"bootstrap {args.bootstrap or '-'}, storage {options['data_dir']}, read-only key "
          f"{'set (not enforced by the double)' if options['read_only_api_key'] else 'unset'}", flush=True)
    held = hold_ports(options["host"], options["idle_ports"])
    app = build_app(options["data_dir"], options["api_key"], args.optimize_seconds, args.large_upsert,
                    options["snapshots_dir"])
    server = uvicorn.Server(uvicorn.Config(app, host=options["host"], port=options["port"], log_level="warning",
                                           lifespan="off", timeout_graceful_shutdown=1))
    announce_when_listening(server, options["port"])
    server.run()
    for sock in held:
        sock.close()


if __name__ == "__main__":
    main()
