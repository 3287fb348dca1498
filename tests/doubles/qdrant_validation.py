"""Request checks of the Qdrant double: the bounds a Qdrant 1.19 server enforces before it stores anything.

The server checks a body in three steps, and the double follows the same order and status codes
(src/actix/mod.rs ``validation_error_handler``, lib/storage/src/content_manager/collection_meta_ops.rs):

1. serde: a value of the wrong type, a negative number in an unsigned field, ``0`` in a ``NonZero`` field, a
   point id that is neither an unsigned integer nor a UUID -> 400 ``Format error in JSON body: ...``;
2. the ``#[validate(range(...))]`` attributes (config_diff.rs, operations/types.rs, segment/types.rs) ->
   422 ``Validation error in JSON body: [field: value V invalid, must be ...]``, every failing field listed;
3. the collection operation itself (vector names) -> 400 ``Wrong input: ...``.

Unknown fields are ignored, as serde does without ``deny_unknown_fields``; only filters and payload
selectors refuse them (``qdrant_store.parse``). Features the double cannot honour are refused with 501
(``unsupported``), never accepted and ignored.
"""

from __future__ import annotations

import uuid
from typing import Any

import pydantic
from qdrant_client.http import models as m

try:
    from .qdrant_store import ApiError, invalid
except ImportError:  # run as a plain script
    from qdrant_store import ApiError, invalid

U64_MAX = 2**64 - 1
NAME_FORBIDDEN = '<>:"/\\|?*\0\u001f'
VECTOR_NAME_MAX_BYTES = 200
# Fields holding point ids, in every request model that carries some.
ID_FIELDS = {"id", "ids", "points", "has_id"}


def format_error(detail: str, where: str = "JSON body") -> ApiError:
    return ApiError(400, f"Format error in {where}: {detail}")


def wrong_input(detail: str) -> ApiError:
    return ApiError(400, f"Wrong input: {detail}")


def unsupported(feature: str) -> ApiError:
    """501: the real server would apply this request; the double cannot, so it says so instead of ignoring it."""
    return ApiError(501, f"Not implemented by the Qdrant test double: {feature}. A real Qdrant server "
                         "supports it; run the test against one (AEGIS_TEST_QDRANT_URL)")


# -- step 1: what serde refuses (400) ---------------------------------------------------------------
def _reject_negative(model: pydantic.BaseModel | None, prefix: str) -> None:
    """Every integer of the config models is unsigned on the server (usize, u32, u64)."""
    if model is None:
        return
    for field, value in model:
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise format_error(f"{prefix}{field}: invalid value: integer `{value}`, expected an unsigned integer")


def _reject_zero(model: pydantic.BaseModel | None, prefix: str, fields: tuple[str, ...]) -> None:
    for field in fields:
        if model is not None and getattr(model, field) == 0:
            raise format_error(f"{prefix}{field}: invalid value: integer `0`, expected a nonzero u32")


def _named(vectors: Any) -> dict[str, Any]:
    """Dense vector params by name; the unnamed vector is ""."""
    if vectors is None:
        return {}
    return dict(vectors) if isinstance(vectors, dict) else {"": vectors}


def _vector_formats(vectors: Any) -> None:
    for params in _named(vectors).values():
        if params.size <= 0:  # NonZeroU64 inside an untagged enum: serde names the enum, not the field
            raise format_error("data did not match any variant of untagged enum VectorsConfig")
        _reject_negative(params.hnsw_config, "vectors.hnsw_config.")


def check_point_ids(request: Any) -> None:
    """Point ids are unsigned 64-bit integers or UUIDs (ExtendedPointId); anything else is a format error."""
    for value in _ids_in(request):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX:
            continue
        if isinstance(value, uuid.UUID) or (isinstance(value, str) and _is_uuid(value)):
            continue
        raise format_error(f"value {value} is not a valid point ID, valid values are either an unsigned "
                           "integer or a UUID")


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _ids_in(node: Any, field: str | None = None):
    if isinstance(node, pydantic.BaseModel):
        for name, value in node:
            yield from _ids_in(value, name)
    elif isinstance(node, list) and node:
        if field in ID_FIELDS and not isinstance(node[0], pydantic.BaseModel):
            yield from node
        elif isinstance(node[0], (pydantic.BaseModel, list)):
            for item in node:
                yield from _ids_in(item, field)
    elif field in ("id", "has_id") and isinstance(node, (int, str)):
        yield node


# -- step 2: the validator ranges (422) -------------------------------------------------------------
class Ranges:
    """Collects every out-of-range field, as the server lists them all in one message."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def check(self, field: str, value: float | None, low: float | None = None, high: float | None = None) -> None:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if (low is None or value >= low) and (high is None or value <= high):
            return
        if high is None:
            bound = f"{low} or larger"
        elif low is None:
            bound = f"{high} or smaller"
        else:
            bound = f"from {low} to {high}"
        self.problems.append(f"{field}: value {value} invalid, must be {bound}")

    def raise_any(self) -> None:
        if self.problems:
            raise ApiError(422, f"Validation error in JSON body: [{'; '.join(self.problems)}]")

    def hnsw(self, diff: m.HnswConfigDiff | None, prefix: str) -> None:
        if diff is not None:
            self.check(prefix + "ef_construct", diff.ef_construct, 4)
            self.check(prefix + "full_scan_threshold", diff.full_scan_threshold, 10)

    def optimizers(self, diff: m.OptimizersConfigDiff | None, prefix: str = "optimizers_config.") -> None:
        if diff is not None:
            self.check(prefix + "deleted_threshold", diff.deleted_threshold, 0.0, 1.0)
            self.check(prefix + "vacuum_min_vector_number", diff.vacuum_min_vector_number, 100)
            self.check(prefix + "max_segment_size", diff.max_segment_size, 1)

    def wal(self, diff: m.WalConfigDiff | None) -> None:
        if diff is not None:
            self.check("wal_config.wal_capacity_mb", diff.wal_capacity_mb, 1)

    def quantization(self, config: Any, prefix: str) -> None:
        if isinstance(config, m.ScalarQuantization):
            self.check(prefix + "scalar.quantile", config.scalar.quantile, 0.5, 1.0)

    def vectors(self, vectors: Any) -> None:
        single = not isinstance(vectors, dict)
        for params in _named(vectors).values():
            prefix = "vectors." if single else "vectors.?."
            self.check(prefix + "size", params.size, 1, 65536)
            self.hnsw(params.hnsw_config, prefix + "hnsw_config.")
            self.quantization(params.quantization_config, prefix + "quantization_config.")
            if getattr(params, "memory", None) == "pinned":
                self.problems.append(f"{prefix}memory: `pinned` memory placement is not supported for dense "
                                     "vector storage")


# -- step 3: the operation (400 Wrong input) --------------------------------------------------------
def _check_vector_names(dense: dict[str, Any], sparse: dict[str, Any]) -> None:
    for kind, names in (("dense", [n for n in dense if n]), ("sparse", list(sparse))):
        for name in names:
            if len(name.encode()) > VECTOR_NAME_MAX_BYTES:
                raise wrong_input(f"Invalid {kind} vector name `{name}`: vector name must be at most "
                                  f"{VECTOR_NAME_MAX_BYTES} bytes long")
            bad = next((c for c in NAME_FORBIDDEN if c in name), None)
            if bad is not None:
                raise wrong_input(f"Invalid {kind} vector name `{name}`: vector name cannot contain \"{bad}\" char")
    if "" in sparse:
        raise wrong_input("Sparse vector name cannot be empty")
    clash = next((name for name in dense if name in sparse), None)
    if clash is not None:
        raise wrong_input(f"Dense and sparse vector names must be unique - duplicate found with '{clash}'")


# -- the requests -----------------------------------------------------------------------------------
def validate_create(req: m.CreateCollection) -> None:
    """PUT /collections/{name}."""
    _vector_formats(req.vectors)
    _reject_negative(req, "")
    for model, prefix in ((req.hnsw_config, "hnsw_config."), (req.wal_config, "wal_config."),
                          (req.optimizers_config, "optimizers_config.")):
        _reject_negative(model, prefix)
    ranges = Ranges()
    ranges.vectors(req.vectors)
    for field in ("shard_number", "replication_factor", "write_consistency_factor"):
        ranges.check(field, getattr(req, field), 1)
    ranges.hnsw(req.hnsw_config, "hnsw_config.")
    ranges.wal(req.wal_config)
    ranges.optimizers(req.optimizers_config)
    ranges.quantization(req.quantization_config, "quantization_config.")
    ranges.raise_any()
    _check_vector_names(_named(req.vectors) if isinstance(req.vectors, dict) else {"": None},
                        dict(req.sparse_vectors or {}))
    if req.sharding_method == m.ShardingMethod.CUSTOM:
        raise unsupported("sharding_method `custom` (shard keys)")
    if req.strict_mode_config is not None:
        raise unsupported("strict_mode_config (strict mode is not enforced)")


def validate_update(req: m.UpdateCollection) -> None:
    """PATCH /collections/{name}: what the double stores is checked; what it cannot apply is refused."""
    for model, prefix in ((req.hnsw_config, "hnsw_config."), (req.optimizers_config, "optimizers_config."),
                          (req.params, "params.")):
        _reject_negative(model, prefix)
    _reject_zero(req.params, "params.", ("replication_factor", "write_consistency_factor"))
    ranges = Ranges()
    ranges.hnsw(req.hnsw_config, "hnsw_config.")
    ranges.optimizers(req.optimizers_config)
    ranges.quantization(req.quantization_config, "quantization_config.")
    ranges.raise_any()
    if req.vectors:
        raise unsupported("PATCH `vectors` (changing dense vector parameters)")
    if req.sparse_vectors:
        raise unsupported("PATCH `sparse_vectors` (changing sparse vector parameters)")
    if req.strict_mode_config is not None:
        raise unsupported("PATCH `strict_mode_config` (strict mode is not enforced)")


def validate_limit(limit: int | None, field: str = "limit") -> None:
    if limit is not None and limit < 1:
        raise invalid(field, f"value {limit} invalid, must be 1 or larger")


def validate_name(name: str) -> None:
    if not 1 <= len(name) <= 255 or any(c in name for c in NAME_FORBIDDEN):
        raise invalid("name", f"value {name} invalid, collection name cannot be empty, exceed 255 "
                              "characters or contain any of <>:\"/\\|?*", "path parameters")
