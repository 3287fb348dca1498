"""HTTP double of a Qdrant 1.19 server (REST only), on qdrant-client's local engine.

Run it: ``python -m tests.doubles.qdrant --port 6333 [--api-key K] [--data-dir D]`` (or copy this file
and faults.py to a host and run ``python3 qdrant.py ...``; it needs qdrant-client, starlette, uvicorn,
python-multipart and httpx).

Storage is qdrant-client's local mode (``QdrantClient(path=...)``): Qdrant's own in-process engine for
development, so filters, dense/sparse (IDF) search, prefetch + RRF fusion, facets, counts and scrolls
return real results. Every request body is parsed with qdrant-client's REST models
(``qdrant_client.http.models``), which forbid unknown fields like the server does; replies use the real
envelope ``{"result": ..., "status": "ok", "time": ...}`` and errors ``{"status": {"error": ...}, "time": ...}``
with the server's status codes (400 bad input, 404 not found, 409 already exists, 422 validation).

What local mode lacks, the double keeps itself (in ``<data-dir>/double_state.json``): the full
``optimizers_config`` (returned as ``config.optimizer_config``), hnsw/wal/params config, payload indexes
(``payload_schema``), collection status and snapshots.

Status: ``green``; ``yellow`` for ``--optimize-seconds`` after an optimizer-config PATCH, a recovery, or an
upsert of at least ``--large-upsert`` points; ``grey`` for every collection found on disk at start-up,
until its next update (any write, or ``PATCH {"optimizers_config": {}}``). ``optimizer_status`` is "ok".

Known divergences from the real server:
- REST only: no gRPC port (use ``prefer_grpc=False``); no distributed mode (``/cluster`` says disabled),
  no shard keys, no full-storage ``/snapshots``, no ``/telemetry``, no read-only key or JWT (only
  ``api-key``), no strict mode enforcement, no ``/collections/{name}/optimizations``.
- Snapshot files are the double's own format: an uncompressed tar holding ``snapshot.json`` (collection
  config and payload schema) and ``points.jsonl`` (one point per line). Real snapshots cannot be recovered
  into the double, nor the double's into a real server. Names, creation_time, size and the sha256
  checksum (with its ``.checksum`` sidecar file) follow the real scheme; two snapshots of one collection
  taken within the same second get distinct names because the double waits for the next second.
- Snapshot recovery over http(s) only fetches loopback URLs (the test stack never leaves the machine);
  ``file://`` locations must lie inside the double's snapshots directory; ``s3://`` is rejected with the
  server's message. ``priority`` is accepted and ignored (there is one replica).
- Error texts for malformed bodies come from pydantic, not serde: same status code and envelope, other
  wording. Semantic checks are those listed in ``_validate_*`` below, not all of the server's.
- ``segments_count`` is ``default_segment_number`` (2 when 0 = auto); ``indexed_vectors_count`` counts
  sparse vectors always and dense vectors only once their raw size reaches ``indexing_threshold`` KB (an
  approximation of the HNSW build rule); point ``version`` is the local engine's.
- Grey after restart applies to every stored collection (the real server only goes grey when
  optimisations were pending); yellow is simulated by time, no optimiser really runs.
- /metrics carries the real names (``rest_responses_total``, ``rest_responses_duration_seconds``
  histogram with ``method``/``endpoint``/``status`` labels for the server's whitelist of endpoints,
  ``collections_total``, ``collections_vector_total``, ``collection_points``, ``snapshot_created_total``,
  ``app_info``...) but not the process, memory and hardware families.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlparse

import anyio
import pydantic
from qdrant_client import QdrantClient
from qdrant_client.http import models as m
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

try:
    from . import faults
except ImportError:  # run as a plain script next to faults.py
    import faults  # type: ignore[no-redef]

VERSION = "1.19.0"
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
DEFAULT_OPTIMIZERS = {
    "deleted_threshold": 0.2, "vacuum_min_vector_number": 1000, "default_segment_number": 0,
    "max_segment_size": None, "memmap_threshold": None, "indexing_threshold": 10000,
    "flush_interval_sec": 5, "max_optimization_threads": None, "prevent_unoptimized": None,
}
DEFAULT_HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, "max_indexing_threads": 0,
                "on_disk": False}
DEFAULT_WAL = {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1}
DEFAULT_PARAMS = {"shard_number": 1, "replication_factor": 1, "write_consistency_factor": 1,
                  "on_disk_payload": True}
FACET_INDEX_TYPES = {"keyword", "integer", "bool", "uuid"}
SNAPSHOT_FORMAT = "aegis-qdrant-double/1"


class ApiError(Exception):
    """An error the real server would answer with this status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(name: str) -> ApiError:
    return ApiError(404, f"Not found: Collection `{name}` doesn't exist!")


def parse(model, data: Any, where: str = "JSON body"):
    """Parse with qdrant-client's own REST model; a mismatch is the server's 400 format error."""
    try:
        return pydantic.TypeAdapter(model).validate_python(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise ApiError(400, f"Format error in {where}: {loc}: {first.get('msg')}") from None


def invalid(field: str, detail: str, where: str = "JSON body") -> ApiError:
    return ApiError(422, f"Validation error in {where}: [{field}: {detail}]")


def dump(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


def merge(base: dict, diff: dict | None) -> dict:
    out = dict(base)
    out.update({k: v for k, v in (diff or {}).items() if v is not None})
    return out


class Store:
    """The collections: points in the local engine, everything else in a JSON sidecar."""

    def __init__(self, data_dir: Path, optimize_seconds: float, large_upsert: int) -> None:
        self.data_dir = data_dir
        self.snapshots_dir = data_dir / "snapshots"
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = data_dir / "tmp"
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir()
        self.optimize_seconds = optimize_seconds
        self.large_upsert = large_upsert
        self.lock = threading.RLock()
        self.engine = QdrantClient(path=str(data_dir / "engine"))
        self._state_file = data_dir / "double_state.json"
        state = json.loads(self._state_file.read_text()) if self._state_file.exists() else {}
        self.peer_id = state.get("peer_id") or uuid.uuid4().int % 10**16
        self.meta: dict[str, dict] = state.get("collections", {})
        names = {c.name for c in self.engine.get_collections().collections}
        self.meta = {k: v for k, v in self.meta.items() if k in names}
        for name in names:
            self.meta.setdefault(name, self._new_meta(None))
        self.grey = set(names)  # restarted: optimisations wait for the next update
        self.yellow_until: dict[str, float] = {}
        self.op_ids: dict[str, int] = {}
        self.snapshots_created: dict[str, int] = {}
        self._save()

    # -- bookkeeping -------------------------------------------------------------------------------
    def _save(self) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"peer_id": self.peer_id, "collections": self.meta}, indent=1))
        tmp.replace(self._state_file)

    @staticmethod
    def _new_meta(req: m.CreateCollection | None) -> dict:
        def d(v):
            return v.model_dump(mode="json", exclude_none=True) if v is not None else None
        return {
            "optimizers_config": merge(DEFAULT_OPTIMIZERS, d(req.optimizers_config) if req else None),
            "hnsw_config": merge(DEFAULT_HNSW, d(req.hnsw_config) if req else None),
            "wal_config": merge(DEFAULT_WAL, d(req.wal_config) if req else None),
            "params": merge(DEFAULT_PARAMS, {k: getattr(req, k, None) for k in DEFAULT_PARAMS} if req else None),
            "quantization_config": d(req.quantization_config) if req else None,
            "metadata": (req.metadata if req and req.metadata else {}),
            "payload_schema": {},
            "created_at": datetime.now(timezone.utc).isoformat() if req else None,
        }

    def resolve(self, name: str) -> str:
        """Collection name behind `name` (an alias or itself); 404 when neither exists."""
        if name in self.meta:
            return name
        for alias in self.engine.get_aliases().aliases:
            if alias.alias_name == name:
                return alias.collection_name
        raise not_found(name)

    def touched(self, name: str, points: int = 0, optimize: bool = False) -> m.UpdateResult:
        """Record an update: resumes a grey collection, may start a simulated optimisation."""
        self.grey.discard(name)
        if optimize or (self.large_upsert and points >= self.large_upsert):
            self.yellow_until[name] = time.monotonic() + self.optimize_seconds
        self.op_ids[name] = self.op_ids.get(name, 0) + 1
        return m.UpdateResult(operation_id=self.op_ids[name], status=m.UpdateStatus.COMPLETED)

    def status(self, name: str) -> str:
        if name in self.grey:
            return "grey"
        if self.yellow_until.get(name, 0) > time.monotonic():
            return "yellow"
        return "green"

    # -- collections -------------------------------------------------------------------------------
    def create(self, name: str, req: m.CreateCollection) -> bool:
        if name in self.meta or name in {a.alias_name for a in self.engine.get_aliases().aliases}:
            raise ApiError(409, f"Wrong input: Collection `{name}` already exists!")
        self.engine.create_collection(name, vectors_config=req.vectors if req.vectors is not None else {},
                                      sparse_vectors_config=req.sparse_vectors)
        self.meta[name] = self._new_meta(req)
        self._save()
        return True

    def update(self, name: str, req: m.UpdateCollection) -> bool:
        name = self.resolve(name)
        meta = self.meta[name]
        optimize = False
        if req.optimizers_config is not None:
            diff = req.optimizers_config.model_dump(mode="json", exclude_none=True)
            optimize = any(meta["optimizers_config"].get(k) != v for k, v in diff.items())
            meta["optimizers_config"] = merge(meta["optimizers_config"], diff)
        if req.hnsw_config is not None:
            meta["hnsw_config"] = merge(meta["hnsw_config"], req.hnsw_config.model_dump(mode="json", exclude_none=True))
        if req.params is not None:
            meta["params"] = merge(meta["params"], req.params.model_dump(mode="json", exclude_none=True))
        if req.metadata is not None:
            meta["metadata"] = {**meta["metadata"], **req.metadata}
        if req.quantization_config is not None:
            meta["quantization_config"] = dump(req.quantization_config)
        self._save()
        self.touched(name, optimize=optimize)
        return True

    def delete(self, name: str) -> bool:
        if name not in self.meta:
            return False
        self.engine.delete_collection(name)
        del self.meta[name]
        for state in (self.yellow_until, self.op_ids):
            state.pop(name, None)
        self.grey.discard(name)
        self._save()
        return True

    def info(self, name: str) -> dict:
        name = self.resolve(name)
        meta = self.meta[name]
        local = self.engine.get_collection(name)
        params = local.config.params.model_dump(mode="json", exclude_none=True)
        params.update(meta["params"])
        points = local.points_count or 0
        return {
            "status": self.status(name),
            "optimizer_status": "ok",
            "indexed_vectors_count": self._indexed_vectors(name, local, meta),
            "points_count": points,
            "segments_count": meta["optimizers_config"]["default_segment_number"] or 2,
            "config": {
                "params": params,
                "hnsw_config": meta["hnsw_config"],
                "optimizer_config": meta["optimizers_config"],
                "wal_config": meta["wal_config"],
                "quantization_config": meta["quantization_config"],
                "strict_mode_config": {"enabled": False},
                "metadata": meta["metadata"],
            },
            "payload_schema": {field: {**schema, "points": self._count_with(name, field)}
                               for field, schema in meta["payload_schema"].items()},
            **({"created_at": meta["created_at"]} if meta.get("created_at") else {}),
        }

    def _count_with(self, name: str, field: str) -> int:
        flt = m.Filter(must_not=[m.IsEmptyCondition(is_empty=m.PayloadField(key=field))])
        return self.engine.count(name, count_filter=flt, exact=True).count

    def _indexed_vectors(self, name: str, local, meta: dict) -> int:
        points = local.points_count or 0
        threshold_kb = meta["optimizers_config"].get("indexing_threshold")
        total = 0
        vectors = local.config.params.vectors
        dense = vectors if isinstance(vectors, dict) else ({"": vectors} if vectors else {})
        for params in dense.values():
            if threshold_kb and points * params.size * 4 >= threshold_kb * 1024:
                total += points
        for vname in (local.config.params.sparse_vectors or {}):  # sparse vectors are indexed at once
            total += self._points_with_sparse(name, vname)
        return total

    def _points_with_sparse(self, name: str, vname: str) -> int:
        count, offset = 0, None
        while True:
            records, offset = self.engine.scroll(name, limit=1000, offset=offset, with_payload=False,
                                                 with_vectors=[vname])
            count += sum(1 for r in records if isinstance(r.vector, dict) and r.vector.get(vname) is not None)
            if offset is None:
                return count

    # -- payload indexes ---------------------------------------------------------------------------
    def create_index(self, name: str, req: m.CreateFieldIndex) -> m.UpdateResult:
        name = self.resolve(name)
        schema = req.field_schema
        if schema is None:
            raise ApiError(400, "Bad request: field_schema is required to create a payload index")
        if isinstance(schema, pydantic.BaseModel):
            params = schema.model_dump(mode="json", exclude_none=True)
            entry = {"data_type": params["type"], "params": params}
        else:
            entry = {"data_type": getattr(schema, "value", schema)}
        self.meta[name]["payload_schema"][req.field_name] = entry
        self._save()
        return self.touched(name)

    def delete_index(self, name: str, field: str) -> m.UpdateResult:
        name = self.resolve(name)
        self.meta[name]["payload_schema"].pop(field, None)
        self._save()
        return self.touched(name)

    def require_index(self, name: str, key: str, types: set[str], what: str) -> None:
        entry = self.meta[name]["payload_schema"].get(key)
        if entry is None or entry["data_type"] not in types:
            raise ApiError(400, f"Bad request: Index required but not found for \"{key}\" of one of the "
                                f"following types: [{', '.join(sorted(types))}]. Help: Create an index for "
                                f"this key or use a different {what}.")


def _validate_create(req: m.CreateCollection) -> None:
    vectors = req.vectors
    named = vectors if isinstance(vectors, dict) else ({"": vectors} if vectors is not None else {})
    for vname, params in named.items():
        field = f"vectors.{vname}.size" if vname else "vectors.size"
        if not 1 <= params.size <= 65536:
            raise invalid(field, f"value {params.size} invalid, must be from 1 to 65536")
    if req.optimizers_config is not None:
        _validate_optimizers(req.optimizers_config)


def _validate_optimizers(diff: m.OptimizersConfigDiff) -> None:
    prefix = "optimizers_config."
    if diff.deleted_threshold is not None and not 0 <= diff.deleted_threshold <= 1:
        raise invalid(prefix + "deleted_threshold", f"value {diff.deleted_threshold} invalid, must be in range from 0 to 1")
    if diff.vacuum_min_vector_number is not None and diff.vacuum_min_vector_number < 100:
        raise invalid(prefix + "vacuum_min_vector_number",
                      f"value {diff.vacuum_min_vector_number} invalid, must be 100 or larger")
    if diff.max_segment_size is not None and diff.max_segment_size < 1:
        raise invalid(prefix + "max_segment_size", f"value {diff.max_segment_size} invalid, must be 1 or larger")


def _validate_limit(limit: int | None, field: str = "limit") -> None:
    if limit is not None and limit < 1:
        raise invalid(field, f"value {limit} invalid, must be 1 or larger")


def _validate_name(name: str) -> None:
    if not 1 <= len(name) <= 255 or any(c in name for c in '<>:"/\\|?*\0\u001f'):
        raise invalid("name", f"value {name} invalid, collection name cannot be empty, exceed 255 "
                              "characters or contain any of <>:\"/\\|?*", "path parameters")


def _points_of(op: Any) -> list[m.PointStruct] | m.Batch:
    if isinstance(op, m.PointsList):
        return op.points
    return op.batch


def _count_points(points: list[m.PointStruct] | m.Batch) -> int:
    return len(points.ids) if isinstance(points, m.Batch) else len(points)


# -- snapshots --------------------------------------------------------------------------------------
class Snapshots:
    """The double's snapshot files: `<snapshots>/<collection>/<name>.snapshot` plus `.checksum`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def dir(self, name: str) -> Path:
        return self.store.snapshots_dir / name

    @staticmethod
    def describe(path: Path) -> dict:
        stat = path.stat()
        checksum_file = path.with_name(path.name + ".checksum")
        return {"name": path.name,
                "creation_time": datetime.fromtimestamp(stat.st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                "size": stat.st_size,
                "checksum": checksum_file.read_text().strip() if checksum_file.exists() else None}

    def list(self, name: str) -> list[dict]:
        folder = self.dir(name)
        if not folder.is_dir():
            return []
        return [self.describe(p) for p in sorted(folder.glob("*.snapshot"))]

    def path(self, name: str, snapshot: str) -> Path:
        path = self.dir(name) / snapshot
        if "/" in snapshot or snapshot.startswith(".") or not path.is_file():
            raise ApiError(404, f"Not found: Snapshot {snapshot} not found")
        return path

    def create(self, name: str) -> dict:
        store = self.store
        with store.lock:
            name = store.resolve(name)
            folder = self.dir(name)
            folder.mkdir(parents=True, exist_ok=True)
            while True:
                stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
                final = folder / f"{name}-{store.peer_id}-{stamp}.snapshot"
                if not final.exists():
                    break
                time.sleep(0.05)
            meta = store.meta[name]
            cfg = store.engine.get_collection(name).config.params
            header = {
                "format": SNAPSHOT_FORMAT, "collection": name,
                "vectors": dump(cfg.vectors), "sparse_vectors": dump(cfg.sparse_vectors) or {},
                "meta": meta,
            }
            with tempfile.TemporaryDirectory(dir=store.tmp_dir) as work:
                points_file = Path(work) / "points.jsonl"
                count = 0
                with points_file.open("w") as fh:
                    offset = None
                    while True:
                        records, offset = store.engine.scroll(name, limit=1000, offset=offset,
                                                              with_payload=True, with_vectors=True)
                        for r in records:
                            fh.write(json.dumps({"id": r.id, "vector": dump(r.vector), "payload": r.payload}) + "\n")
                            count += 1
                        if offset is None:
                            break
                header["points_count"] = count
                header_file = Path(work) / "snapshot.json"
                header_file.write_text(json.dumps(header))
                partial = Path(work) / "out.tar"
                with tarfile.open(partial, "w") as tar:
                    tar.add(header_file, arcname="snapshot.json")
                    tar.add(points_file, arcname="points.jsonl")
                checksum = sha256_file(partial)
                partial.replace(final)
            final.with_name(final.name + ".checksum").write_text(checksum)
            store.snapshots_created[name] = store.snapshots_created.get(name, 0) + 1
            return self.describe(final)

    def delete(self, name: str, snapshot: str) -> bool:
        with self.store.lock:
            path = self.path(self.store.resolve(name), snapshot)
            path.unlink()
            path.with_name(path.name + ".checksum").unlink(missing_ok=True)
            return True

    def recover(self, name: str, archive: Path) -> bool:
        """Replace the collection's points with the archive's (creating the collection if needed)."""
        header = read_header(archive)
        store = self.store
        with store.lock:
            existing = name in store.meta
            if existing:
                cfg = store.engine.get_collection(name).config.params
                if dump(cfg.vectors) != header["vectors"]:
                    raise ApiError(400, "Wrong input: Snapshot is not compatible with existing collection: "
                                        f"Collection vectors: {dump(cfg.vectors)} Snapshot Vectors: {header['vectors']}")
                store.engine.delete(name, points_selector=m.FilterSelector(filter=m.Filter()))
            else:
                vectors = parse(m.VectorsConfig, header["vectors"]) if header["vectors"] else {}
                sparse = {k: m.SparseVectorParams(**v) for k, v in header["sparse_vectors"].items()}
                store.engine.create_collection(name, vectors_config=vectors, sparse_vectors_config=sparse or None)
                store.meta[name] = header["meta"]
            if existing:
                store.meta[name]["payload_schema"].update(header["meta"].get("payload_schema", {}))
            count = 0
            for batch in iter_points(archive):
                store.engine.upsert(name, points=batch)
                count += len(batch)
            store._save()
            store.touched(name, points=count, optimize=True)
        return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_header(archive: Path) -> dict:
    """Validate a snapshot archive completely before anything is changed."""
    try:
        with tarfile.open(archive, "r:") as tar:
            member = tar.extractfile("snapshot.json")
            header = json.loads(member.read()) if member else None
            points = tar.extractfile("points.jsonl")
            lines = sum(1 for line in points if line.strip()) if points else -1
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise ApiError(400, f"Wrong input: Snapshot is not a valid archive of this server: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT or lines != header.get("points_count"):
        raise ApiError(400, "Wrong input: Snapshot is not a valid archive of this server")
    return header


def iter_points(archive: Path, size: int = 500):
    with tarfile.open(archive, "r:") as tar:
        batch = []
        for line in tar.extractfile("points.jsonl"):
            if not line.strip():
                continue
            rec = json.loads(line)
            vector = rec["vector"]
            if isinstance(vector, dict):
                vector = {k: m.SparseVector(**v) if isinstance(v, dict) else v for k, v in vector.items()}
            batch.append(m.PointStruct(id=rec["id"], vector=vector, payload=rec["payload"]))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


async def fetch_to(url: str, dest: Path) -> None:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=60, follow_redirects=True, trust_env=False) as client:
            async with client.stream("GET", url) as resp:
                if resp.status_code >= 400:
                    raise ApiError(400, f"Wrong input: Failed to download snapshot from {url}: status - "
                                        f"{resp.status_code} {resp.reason_phrase}")
                with dest.open("wb") as fh:
                    async for chunk in resp.aiter_bytes(1 << 20):
                        fh.write(chunk)
    except httpx.HTTPError as exc:
        raise ApiError(500, f"Service internal error: Http request error: {exc}") from None


async def stream_multipart_file(request: Request, field: str, dest_dir: Path) -> tuple[Path, str, str | None]:
    """Stream the multipart part `field` into a temp file in dest_dir: (path, sha256, client filename)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(400, "Bad request: expected a multipart/form-data body with a `snapshot` part")
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=".upload-")
    out = os.fdopen(fd, "wb")
    digest = hashlib.sha256()
    st: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "match": False, "found": False, "filename": None}

    def on_part_begin():
        st["headers"] = {}
        st["match"] = False

    def on_header_field(data, start, end):
        st["field"] += data[start:end]

    def on_header_value(data, start, end):
        st["value"] += data[start:end]

    def on_header_end():
        st["headers"][st["field"].lower()] = st["value"]
        st["field"], st["value"] = b"", b""

    def on_headers_finished():
        _, disp = parse_options_header(st["headers"].get(b"content-disposition", b""))
        st["match"] = disp.get(b"name") == field.encode() and not st["found"]
        if st["match"]:
            st["found"] = True
            fname = disp.get(b"filename")
            st["filename"] = fname.decode(errors="replace") if fname else None

    def on_part_data(data, start, end):
        if st["match"]:
            chunk = data[start:end]
            out.write(chunk)
            digest.update(chunk)

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except Exception as exc:  # malformed multipart: nothing kept
        out.close()
        os.unlink(tmp_name)
        raise ApiError(400, f"Bad request: malformed multipart body: {exc}") from None
    out.close()
    if not st["found"]:
        os.unlink(tmp_name)
        raise ApiError(400, f"Bad request: Multipart form field `{field}` is missing")
    return Path(tmp_name), digest.hexdigest(), st["filename"]


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
            running = {n: int(store.status(n) == "yellow") for n in names}
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
    def handler(fn):  # noqa: N805 - decorator used inside the class body
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
    async def create_collection(self, request, started):
        name = request.path_params["collection_name"]
        _validate_name(name)
        req = parse(m.CreateCollection, await body_json(request))
        _validate_create(req)
        return self.ok(await self.run(self.store.create, name, req), started)

    @handler
    async def update_collection(self, request, started):
        req = parse(m.UpdateCollection, await body_json(request))
        if req.optimizers_config is not None:
            _validate_optimizers(req.optimizers_config)
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
        wait = flag(request, "wait", False)
        name = request.path_params["collection_name"]

        def work():
            real = self.store.resolve(name)
            points = apply(real, req)
            return self.store.touched(real, points=points or 0)
        return self.ok(self._ack(await self.run(work), wait), started)

    @handler
    async def upsert(self, request, started):
        def apply(name, req):
            points = _points_of(req)
            self.store.engine.upsert(name, points=points)
            return _count_points(points)
        return await self._update(request, started, m.PointInsertOperations, apply)

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
        wait = flag(request, "wait", False)
        name = request.path_params["collection_name"]

        def work():
            real = self.store.resolve(name)
            count = 0
            for op in req.operations:
                if isinstance(op, m.UpsertOperation):
                    count += _count_points(_points_of(op.upsert))
            self.store.engine.batch_update_points(real, update_operations=req.operations)
            return [self._ack(self.store.touched(real, points=count), wait) for _ in req.operations]
        return self.ok(await self.run(work), started)

    @handler
    async def retrieve(self, request, started):
        req = parse(m.PointRequest, await body_json(request))
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
        _validate_limit(req.limit)
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
        _validate_limit(req.limit)
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
        _validate_limit(req.limit)
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
        _validate_name(name)
        expected = request.query_params.get("checksum")
        _validate_checksum(expected, "query parameters")
        _validate_priority(request.query_params.get("priority"), "query parameters")
        wait = flag(request, "wait", True)
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
        _validate_name(name)
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
                await fetch_to(req.location, archive)
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
              large_upsert: int = 1000):
    """The double wrapped with fault injection (control path /_faults)."""
    double = QdrantDouble(Path(data_dir), api_key=api_key, optimize_seconds=optimize_seconds,
                          large_upsert=large_upsert)
    app = faults.with_faults(double)
    app.double = double
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6333)
    ap.add_argument("--api-key", default=os.environ.get("QDRANT__SERVICE__API_KEY") or None)
    ap.add_argument("--data-dir", default="./qdrant-double-data")
    ap.add_argument("--optimize-seconds", type=float, default=1.0,
                    help="how long a collection stays yellow after an optimisation trigger")
    ap.add_argument("--large-upsert", type=int, default=1000,
                    help="an upsert of at least this many points triggers an optimisation (0: never)")
    args = ap.parse_args(argv)
    app = build_app(Path(args.data_dir), args.api_key, args.optimize_seconds, args.large_upsert)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
