"""Storage of the Qdrant double: points in qdrant-client's local engine, the rest in a JSON sidecar.

The local engine (``QdrantClient(path=...)``) keeps points, vectors, payloads and aliases. What it lacks is
kept here, in ``<data-dir>/double_state.json``: optimizers/hnsw/wal/params config, metadata, payload
indexes, and the simulated optimisation runs behind the collection status. See qdrant.py for the HTTP
layer and the list of divergences from the real server.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pydantic_core
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

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


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class ApiError(Exception):
    """An error the real server would answer with this status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(name: str) -> ApiError:
    return ApiError(404, f"Not found: Collection `{name}` doesn't exist!")


# The server's serde structs ignore unknown fields, except these (`deny_unknown_fields` in segment/types.rs).
STRICT_MODELS = (m.Filter, m.PayloadSelectorInclude, m.PayloadSelectorExclude)
_validators: dict[Any, Any] = {}


def _ignore_unknown_fields(node: Any) -> Any:
    """A copy of a pydantic core schema whose models ignore unknown fields instead of forbidding them."""
    if isinstance(node, list):
        return [_ignore_unknown_fields(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _ignore_unknown_fields(v) for k, v in node.items()}
    if out.get("type") == "model" and out.get("cls") not in STRICT_MODELS:
        out["config"] = {**out.get("config", {}), "extra_fields_behavior": "ignore"}
        out["schema"] = {**out["schema"], "extra_behavior": "ignore"}
    return out


def _validator(model) -> Any:
    """qdrant-client's REST model (its classes forbid unknown fields) validated the server's way."""
    if model not in _validators:
        schema = _ignore_unknown_fields(pydantic.TypeAdapter(model).core_schema)
        # _use_prebuilt=False: otherwise pydantic-core reuses each class's own (forbidding) validator
        _validators[model] = pydantic_core.SchemaValidator(schema, _use_prebuilt=False)
    return _validators[model]


def parse(model, data: Any, where: str = "JSON body"):
    """Parse with qdrant-client's own REST model; a mismatch is the server's 400 format error."""
    try:
        return _validator(model).validate_python(data)
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


def apply_optimizers(current: dict, diff: m.OptimizersConfigDiff | None) -> dict:
    """The optimizer config after `diff`, stored as the server stores it: threads "auto" is null (no limit)."""
    fields = diff.model_dump(mode="json", exclude_none=True) if diff is not None else {}
    out = merge(current, fields)
    if fields.get("max_optimization_threads") == m.MaxOptimizationThreadsSetting.AUTO.value:
        out["max_optimization_threads"] = None
    return out


def quantization_of(config: Any) -> dict | None:
    """Stored quantization config; PATCHing "Disabled" removes it."""
    return None if config is None or config == m.Disabled.DISABLED else dump(config)


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
        self.optimizations: dict[str, list[dict]] = {}  # simulated runs: uuid, optimizer, start, end, points
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
            "optimizers_config": apply_optimizers(DEFAULT_OPTIMIZERS, req.optimizers_config if req else None),
            "hnsw_config": merge(DEFAULT_HNSW, d(req.hnsw_config) if req else None),
            "wal_config": merge(DEFAULT_WAL, d(req.wal_config) if req else None),
            "params": merge(DEFAULT_PARAMS, {k: getattr(req, k, None) for k in DEFAULT_PARAMS} if req else None),
            "quantization_config": quantization_of(req.quantization_config) if req else None,
            "metadata": (req.metadata if req and req.metadata else {}),
            "payload_schema": {},
            "created_at": datetime.now(UTC).isoformat() if req else None,
        }

    def resolve(self, name: str) -> str:
        """Collection name behind `name` (an alias or itself); 404 when neither exists."""
        if name in self.meta:
            return name
        for alias in self.engine.get_aliases().aliases:
            if alias.alias_name == name:
                return alias.collection_name
        raise not_found(name)

    def touched(self, name: str, points: int = 0, optimize: bool | str = False) -> m.UpdateResult:
        """Record an update: resumes a grey collection, may start a simulated optimisation
        (`optimize` names the optimizer; a large upsert starts "indexing")."""
        self.grey.discard(name)
        if optimize or (self.large_upsert and points >= self.large_upsert):
            start = time.time()
            runs = self.optimizations.setdefault(name, [])
            runs.append({"uuid": str(uuid.uuid4()), "optimizer": optimize if isinstance(optimize, str) else "indexing",
                         "start": start, "end": start + self.optimize_seconds,
                         "points": self.engine.count(name, exact=True).count})
            del runs[:-32]
        self.op_ids[name] = self.op_ids.get(name, 0) + 1
        return m.UpdateResult(operation_id=self.op_ids[name], status=m.UpdateStatus.COMPLETED)

    def running(self, name: str) -> list[dict]:
        now = time.time()
        return [r for r in self.optimizations.get(name, []) if r["end"] > now]

    def status(self, name: str) -> str:
        if name in self.grey:
            return "grey"
        return "yellow" if self.running(name) else "green"

    def optimizations_report(self, name: str, with_: set[str], completed_limit: int) -> dict:
        """GET /collections/{name}/optimizations: the simulated runs in the server's shape."""
        name = self.resolve(name)
        now = time.time()
        points = self.engine.count(name, exact=True).count
        segments = self.meta[name]["optimizers_config"]["default_segment_number"] or 2
        segment_ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/segment/{i}")) for i in range(segments)]

        def run(r: dict, done: bool) -> dict:
            progress = {"name": r["optimizer"], "started_at": _iso(r["start"]), "total": r["points"],
                        "done": r["points"] if done else int(r["points"] * (now - r["start"]) /
                                                              max(r["end"] - r["start"], 1e-9))}
            if done:
                progress.update(finished_at=_iso(r["end"]), duration_sec=r["end"] - r["start"])
            return {"uuid": r["uuid"], "optimizer": r["optimizer"], "status": "done" if done else "optimizing",
                    "segments": [{"uuid": segment_ids[0], "points_count": r["points"]}], "progress": progress}

        running = self.running(name)
        pending = name in self.grey and points > 0
        report: dict[str, Any] = {
            "summary": {"queued_optimizations": int(pending), "queued_segments": int(pending),
                        "queued_points": points if pending else 0,
                        "idle_segments": max(0, segments - int(bool(running)) - int(pending))},
            "running": [run(r, False) for r in running],
        }
        if "queued" in with_:
            report["queued"] = [{"optimizer": "indexing", "segments": [
                {"uuid": segment_ids[0], "points_count": points}]}] if pending else []
        if "completed" in with_:
            done = [r for r in self.optimizations.get(name, []) if r["end"] <= now]
            report["completed"] = [run(r, True) for r in reversed(done)][:completed_limit]
        if "idle_segments" in with_:
            share = points // segments
            report["idle_segments"] = [{"uuid": sid, "points_count": share} for sid in segment_ids]
        return report

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
            updated = apply_optimizers(meta["optimizers_config"], req.optimizers_config)
            optimize = updated != meta["optimizers_config"]
            meta["optimizers_config"] = updated
        if req.hnsw_config is not None:
            meta["hnsw_config"] = merge(meta["hnsw_config"], req.hnsw_config.model_dump(mode="json", exclude_none=True))
        if req.params is not None:
            meta["params"] = merge(meta["params"], req.params.model_dump(mode="json", exclude_none=True))
        if req.metadata is not None:
            meta["metadata"] = {**meta["metadata"], **req.metadata}
        if req.quantization_config is not None:
            meta["quantization_config"] = quantization_of(req.quantization_config)
        self._save()
        self.touched(name, optimize="config_mismatch" if optimize else False)
        return True

    def delete(self, name: str) -> bool:
        if name not in self.meta:
            return False
        self.engine.delete_collection(name)
        del self.meta[name]
        for state in (self.optimizations, self.op_ids):
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
        # sparse vectors are indexed at once; counted as one per point and sparse vector name
        return total + points * len(local.config.params.sparse_vectors or {})

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


def points_of(op: Any) -> list[m.PointStruct] | m.Batch:
    if isinstance(op, m.PointsList):
        return op.points
    return op.batch


def count_points(points: list[m.PointStruct] | m.Batch) -> int:
    return len(points.ids) if isinstance(points, m.Batch) else len(points)


# -- snapshots --------------------------------------------------------------------------------------
