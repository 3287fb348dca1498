"""Vector stores: Qdrant's in-process engine (embedded default) or a Qdrant server via qdrant-client.

Each chunk is one point with a dense vector ("dense") and a BM25 sparse vector ("bm25", IDF applied
by Qdrant), so hybrid retrieval is one query: two prefetches fused with RRF.

Point ids are stable (uuid5 of document id and chunk index), so replacing a document overwrites its
chunks in place and deletes only the surplus: a query never sees a document twice nor loses it.
Embedded mode takes a writer lock around that pair of operations, so a replacement is atomic for
readers; against a server the pair goes in one batch request (applied in order by Qdrant).

The collection records the embedding model and dimension (Qdrant collection metadata on a server,
``aegis_meta.json`` beside the embedded shard); a mismatch is refused with reindex instructions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np

from . import metrics

from .breaker import CircuitBreaker
from .errors import ConfigurationError, DependencyError
from .settings import Settings

log = logging.getLogger(__name__)

DENSE, SPARSE = "dense", "bm25"
_ID_NAMESPACE = uuid.UUID("6f1c2a8e-3b0d-4e7a-9a57-2c1d0e5b7a41")
FACET_LIMIT = 100_000


def point_id(document_id: str, index: int) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{document_id}:{index}"))


@dataclass
class PointData:
    id: str
    dense: np.ndarray
    sparse_indices: list[int]
    sparse_values: list[float]
    payload: dict[str, Any]


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


class VectorStore(Protocol):
    kind: str

    @property
    def breaker(self) -> CircuitBreaker | None: ...

    def ensure_collection(self, dim: int, model: str) -> None: ...
    def replace_document(self, document_id: str, points: list[PointData]) -> None: ...
    def delete_document(self, document_id: str) -> None: ...
    def search(self, dense: np.ndarray, sparse: tuple[list[int], list[float]] | None, limit: int,
               prefetch_k: int, score_threshold: float | None) -> list[Hit]: ...
    def documents(self) -> list[dict]: ...
    def count(self) -> int: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


def mismatch_message(collection: str, stored: dict, model: str, dim: int, where: str) -> str:
    return (f"collection '{collection}' was built with embedding model {stored.get('embed_model')} "
            f"(dimension {stored.get('embed_dim')}), but this service is configured for {model} "
            f"(dimension {dim}). Either set AEGIS_EMBEDDER/AEGIS_EMBED_MODEL back, or reindex: point "
            f"AEGIS_COLLECTION at a new name (or remove {where}) and run `aegis-rag ingest <docs>`.")


def document_key(document_id: str, content_hash: str, name: str) -> str:
    """One keyword value per document version, so one facet call lists every document."""
    return f"{document_id}|{content_hash}|{name}"


def parse_document_keys(hits: list[tuple[str, int]]) -> list[dict]:
    docs = []
    for value, count in hits:
        if count <= 0:  # Qdrant Edge's exact facet keeps values whose points were all deleted, at count 0
            continue
        doc_id, content_hash, name = value.split("|", 2)
        docs.append({"id": doc_id, "document": name, "content_hash": content_hash, "chunks": count})
    return sorted(docs, key=lambda d: d["document"])


class _RWLock:
    """Many readers or one writer."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    def read(self):
        return _Guard(self._acquire_read, self._release_read)

    def write(self):
        return _Guard(self._acquire_write, self._release_write)

    def _acquire_read(self):
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1

    def _release_read(self):
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def _acquire_write(self):
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True

    def _release_write(self):
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class _Guard:
    def __init__(self, enter, leave):
        self._enter, self._leave = enter, leave

    def __enter__(self):
        self._enter()

    def __exit__(self, *exc):
        self._leave()


class EdgeStore:
    """Qdrant Edge (qdrant-edge-py): the real Qdrant engine in this process. One process only."""

    kind = "embedded"
    breaker = None  # in-process: nothing to fail fast on

    def __init__(self, path: Path, collection: str) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self.collection = collection
        self.path = Path(path)
        self._meta_path = self.path / "aegis_meta.json"
        self._lock = _RWLock()
        self._shard: Any = None  # a qdrant_edge.EdgeShard once opened

    def _lock_folder(self) -> None:
        """Qdrant Edge is single-process: a second process opening the same folder would corrupt it."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path / ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise ConfigurationError(
                f"the embedded store {self.path} is in use by another process (a running API?). Embedded mode "
                "is one process: go through that API (e.g. `aegis-rag ingest --url http://127.0.0.1:8910`), "
                "or stop it first, or use a Qdrant server (AEGIS_QDRANT_URL).") from None

    def ensure_collection(self, dim: int, model: str) -> None:
        qe = self._qe
        if self._shard is None:
            self._lock_folder()
        if self._meta_path.exists():
            stored = json.loads(self._meta_path.read_text())
            if stored.get("embed_model") != model or stored.get("embed_dim") != dim:
                raise ConfigurationError(mismatch_message(self.collection, stored, model, dim, str(self.path)))
            self._shard = qe.EdgeShard.load(str(self.path / "shard"))
            return
        shard_dir = self.path / "shard"
        shard_dir.mkdir(parents=True, exist_ok=True)
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        self._shard = qe.EdgeShard.create(str(shard_dir), config)
        self._shard.update(qe.UpdateOperation.create_field_index("doc_key", qe.PayloadSchemaType.Keyword))
        self._shard.update(qe.UpdateOperation.create_field_index("document_id", qe.PayloadSchemaType.Keyword))
        self._shard.flush()
        tmp = self._meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"embed_model": model, "embed_dim": dim, "collection": self.collection}))
        tmp.replace(self._meta_path)

    def _points(self, points: list[PointData]):
        qe = self._qe
        return [qe.Point(p.id, {DENSE: p.dense.tolist(), SPARSE: qe.SparseVector(p.sparse_indices, p.sparse_values)},
                         p.payload) for p in points]

    def _surplus_filter(self, document_id: str, keep: int):
        qe = self._qe
        must = [qe.FieldCondition(key="document_id", match=qe.MatchValue(document_id))]
        if keep:
            must.append(qe.FieldCondition(key="chunk_index", range=qe.RangeFloat(gte=float(keep))))
        return qe.Filter(must=must)

    def replace_document(self, document_id: str, points: list[PointData]) -> None:
        qe = self._qe
        with self._lock.write():
            if points:
                self._shard.update(qe.UpdateOperation.upsert_points(self._points(points)))
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(self._surplus_filter(document_id, len(points))))
            self._shard.flush()

    def delete_document(self, document_id: str) -> None:
        self.replace_document(document_id, [])

    def search(self, dense, sparse, limit, prefetch_k, score_threshold):
        qe = self._qe
        dense_q = qe.Query.Nearest(dense.tolist(), using=DENSE)
        if sparse and sparse[0]:
            request = qe.QueryRequest(
                limit=limit, with_payload=True, query=qe.Fusion.Rrf(k=60),
                prefetches=[qe.Prefetch(limit=prefetch_k, query=dense_q, score_threshold=score_threshold),
                            qe.Prefetch(limit=prefetch_k, query=qe.Query.Nearest(qe.SparseVector(*sparse), using=SPARSE))])
        else:
            request = qe.QueryRequest(limit=limit, with_payload=True, query=dense_q, score_threshold=score_threshold)
        with self._lock.read():
            found = self._shard.query(request)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in found]

    def documents(self) -> list[dict]:
        qe = self._qe
        with self._lock.read():
            facets = self._shard.facet(qe.FacetRequest(key="doc_key", limit=FACET_LIMIT, exact=True))
        return parse_document_keys([(h.value, h.count) for h in facets])

    def count(self) -> int:
        with self._lock.read():
            return int(self._shard.count(self._qe.CountRequest(exact=True)))

    def ping(self) -> None:
        if self._shard is None:
            raise DependencyError("vector_store", "embedded collection not opened")
        self._shard.info()

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None
            self._lock_file.close()


class ServerStore:
    """A Qdrant server through qdrant-client (REST, or gRPC with prefer_grpc), behind a circuit breaker."""

    kind = "server"

    def __init__(self, settings: Settings) -> None:
        from qdrant_client import QdrantClient

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        self.collection = settings.collection
        # Idle connections are dropped after 2 s, before Qdrant's server (actix-web: 5 s) closes them.
        extra: dict[str, Any] = {} if settings.qdrant_prefer_grpc else {
            "limits": httpx.Limits(max_connections=settings.qdrant_pool_size, keepalive_expiry=2.0)}
        self._client = QdrantClient(url=settings.qdrant_url, api_key=key, prefer_grpc=settings.qdrant_prefer_grpc,
                                    timeout=settings.qdrant_timeout_s,  # type: ignore[arg-type]  # typed int; httpx takes float
                                    **extra)
        self._url = settings.qdrant_url
        self.breaker = CircuitBreaker("vector_store", settings.breaker_failure_threshold, settings.breaker_cooldown_s)
        self._pool = ConnectionPoolGauge(settings.qdrant_pool_size, settings.qdrant_timeout_s)

    def _call(self, what: str, fn, *args, **kwargs):
        breaker = self.breaker
        if not breaker.allow():
            raise breaker.rejection(f"Qdrant at {self._url}")
        with self._pool.slot(self._url):
            return self._call_checked(breaker, what, fn, *args, **kwargs)

    def _call_checked(self, breaker: CircuitBreaker, what: str, fn, *args, **kwargs):
        try:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not _closed_before_answering(exc):
                    raise
                # A pooled connection the server closed as the request went out: once more, on a new
                # connection (writes are idempotent too: point ids derive from document id and chunk index).
                result = fn(*args, **kwargs)
        except Exception as exc:  # qdrant-client raises httpx/grpc/UnexpectedResponse errors
            message = f"Qdrant {what} failed at {self._url}: {_short(exc)}"
            if _server_answered(exc):  # e.g. 404/400: Qdrant is up, the request was wrong
                breaker.record_success()
            else:
                breaker.record_failure(message)
            if isinstance(exc, DependencyError):
                raise
            raise DependencyError("vector_store", message) from None
        breaker.record_success()
        return result

    def ensure_collection(self, dim: int, model: str) -> None:
        from qdrant_client import models as m

        c = self._client
        if self._call("collection_exists", c.collection_exists, self.collection):
            info = self._call("get_collection", c.get_collection, self.collection)
            stored = dict(info.config.metadata or {})
            vectors = info.config.params.vectors
            size = vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None
            stored.setdefault("embed_dim", size)
            if stored.get("embed_model") != model or stored.get("embed_dim") != dim or size != dim:
                raise ConfigurationError(mismatch_message(self.collection, stored, model, dim,
                                                          f"collection {self.collection} on {self._url}"))
            return
        self._call("create_collection", c.create_collection, self.collection,
                   vectors_config={DENSE: m.VectorParams(size=dim, distance=m.Distance.COSINE)},
                   sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
                   metadata={"embed_model": model, "embed_dim": dim})
        for field in ("doc_key", "document_id"):
            self._call("create_payload_index", c.create_payload_index, self.collection, field,
                       field_schema=m.PayloadSchemaType.KEYWORD, wait=True)

    def _surplus_filter(self, document_id: str, keep: int):
        from qdrant_client import models as m

        must = [m.FieldCondition(key="document_id", match=m.MatchValue(value=document_id))]
        if keep:
            must.append(m.FieldCondition(key="chunk_index", range=m.Range(gte=keep)))
        return m.Filter(must=must)

    def replace_document(self, document_id: str, points: list[PointData]) -> None:
        from qdrant_client import models as m

        ops: list[Any] = []
        if points:
            structs = [m.PointStruct(id=p.id, payload=p.payload, vector={
                DENSE: p.dense.tolist(), SPARSE: m.SparseVector(indices=p.sparse_indices, values=p.sparse_values)})
                for p in points]
            ops.append(m.UpsertOperation(upsert=m.PointsList(points=structs)))
        ops.append(m.DeleteOperation(delete=m.FilterSelector(filter=self._surplus_filter(document_id, len(points)))))
        self._call("batch_update_points", self._client.batch_update_points, self.collection, ops, wait=True)

    def delete_document(self, document_id: str) -> None:
        self.replace_document(document_id, [])

    def search(self, dense, sparse, limit, prefetch_k, score_threshold):
        from qdrant_client import models as m

        if sparse and sparse[0]:
            kwargs = dict(prefetch=[
                m.Prefetch(query=dense.tolist(), using=DENSE, limit=prefetch_k, score_threshold=score_threshold),
                m.Prefetch(query=m.SparseVector(indices=sparse[0], values=sparse[1]), using=SPARSE, limit=prefetch_k)],
                query=m.FusionQuery(fusion=m.Fusion.RRF))
        else:
            kwargs = dict(query=dense.tolist(), using=DENSE, score_threshold=score_threshold)
        res = self._call("query_points", self._client.query_points, self.collection, limit=limit,
                         with_payload=True, **kwargs)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in res.points]

    def documents(self) -> list[dict]:
        res = self._call("facet", self._client.facet, self.collection, key="doc_key", limit=FACET_LIMIT, exact=True)
        return parse_document_keys([(h.value, h.count) for h in res.hits])

    def count(self) -> int:
        return int(self._call("count", self._client.count, self.collection, exact=True).count)

    def ping(self) -> None:
        self._call("get_collection", self._client.get_collection, self.collection)

    def close(self) -> None:
        self._client.close()
        self._pool.close()


class ConnectionPoolGauge:
    """At most `size` concurrent Qdrant requests per process, exported as in-use / max gauges.

    The REST client's httpx pool has the same size, so a slot is a connection; with gRPC it bounds
    the requests multiplexed on the channel. A request that waits longer than `wait_s` for a slot
    fails as a vector-store error without counting against the circuit breaker (Qdrant is not at fault).
    """

    def __init__(self, size: int, wait_s: float) -> None:
        self.size = size
        self._wait_s = wait_s
        self._slots = threading.BoundedSemaphore(size)
        metrics.POOL_SIZE.inc(size)

    @contextlib.contextmanager
    def slot(self, url: str | None) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._wait_s):
            metrics.POOL_WAIT_TIMEOUTS.inc()
            raise DependencyError("vector_store", f"all {self.size} connections to Qdrant at {url} stayed busy "
                                                  f"for {self._wait_s:.0f}s")
        metrics.POOL_IN_USE.inc()
        try:
            yield
        finally:
            metrics.POOL_IN_USE.dec()
            self._slots.release()

    def close(self) -> None:
        metrics.POOL_SIZE.dec(self.size)
        self.size = 0


_CLIENT_ERROR_CODES = {"NOT_FOUND", "INVALID_ARGUMENT", "ALREADY_EXISTS", "PERMISSION_DENIED", "UNAUTHENTICATED",
                       "FAILED_PRECONDITION", "OUT_OF_RANGE"}


def _server_answered(exc: Exception) -> bool:
    """A 4xx (REST) or a client-side gRPC status: the server is reachable and working."""
    status = getattr(exc, "status_code", None)  # qdrant_client UnexpectedResponse
    if isinstance(status, int):
        return 400 <= status < 500 and status != 429
    code = getattr(exc, "code", None)  # grpc.RpcError
    if callable(code):
        try:
            return getattr(code(), "name", "") in _CLIENT_ERROR_CODES
        except Exception:
            return False
    return False


def _closed_before_answering(exc: BaseException) -> bool:
    """httpx's "Server disconnected without sending a response", however qdrant-client wraps it."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, httpx.RemoteProtocolError):
            return True
        seen = getattr(seen, "source", None) or seen.__cause__ or seen.__context__
    return False


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def build_store(settings: Settings) -> VectorStore:
    if settings.embedded:
        return EdgeStore(settings.data_dir / "qdrant" / settings.collection, settings.collection)
    return ServerStore(settings)
