"""The RAG service: ingestion, retrieval and chat, independent of HTTP."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from . import metrics
from .cache import NoCache, build_cache, cache_key
from .embeddings import Embedder, build_embedder
from .errors import BadDocument, DependencyError
from .generation import ExtractiveGenerator, build_generator, build_messages, extractive_answer
from .ingest.chunking import chunk_markdown
from .ingest.parsing import parse_document
from .rerank import build_reranker
from .settings import Settings
from .vectorstore import Hit, PointData, VectorStore, build_store, document_key, point_id

log = logging.getLogger(__name__)
_DOC_NAMESPACE = uuid.UUID("0b8e4c55-93a1-4f0e-8d52-7d5f1f0c3e12")


def document_id(name: str) -> str:
    return str(uuid.uuid5(_DOC_NAMESPACE, name))


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


@dataclass
class ChatResult:
    answer: str
    sources: list[dict]
    model: str
    mode: str
    degraded: bool
    timings_ms: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


class RagService:
    def __init__(self, settings: Settings, *, embedder: Embedder | None = None, store: VectorStore | None = None,
                 cache=None, generator=None, reranker=None) -> None:
        self.settings = settings
        self.embedder = embedder or build_embedder(settings)
        self.store = store or build_store(settings)
        self.cache = cache if cache is not None else build_cache(settings)
        self.generator = generator or build_generator(settings)
        self.reranker = reranker or build_reranker(settings)
        self._fallback = ExtractiveGenerator()
        self._bm25 = None
        self._opened = False
        self._open_lock = threading.Lock()
        metrics.init_series(self.generator.name)

    # --- lifecycle
    def open(self) -> None:
        """Create or check the collection. Safe to call repeatedly; retried lazily if a dependency was down."""
        if self._opened:
            return
        with self._open_lock:
            if self._opened:
                return
            dim = self.embedder.dim or self.embedder.probe_dim()
            self.store.ensure_collection(dim, self.embedder.model)
            self._opened = True
        self.refresh_gauges()

    def close(self) -> None:
        self.store.close()

    def refresh_gauges(self) -> None:
        try:
            metrics.POINTS.set(self.store.count())
            metrics.DOCUMENTS.set(len(self.store.documents()))
        except DependencyError as exc:
            log.warning("could not refresh document gauges: %s", exc)

    # --- building blocks
    def _sparse(self, text: str, query: bool) -> tuple[list[int], list[float]]:
        if self._bm25 is None:
            from qdrant_edge import Bm25

            self._bm25 = Bm25()
        vec = self._bm25.embed_query(text) if query else self._bm25.embed_document(text)
        return list(vec.indices), list(vec.values)

    def embed_query(self, text: str) -> tuple[np.ndarray, bool]:
        key = cache_key(self.embedder.model, text)
        cached = self.cache.get(key)
        if cached is not None:
            metrics.CACHE_HITS.inc()
            return cached, True
        metrics.CACHE_MISSES.inc()
        with metrics.EMBED_SECONDS.labels("query").time():
            vec = self.embedder.embed_queries([text])[0]
        self.cache.put(key, vec)
        return vec, False

    def retrieve(self, question: str, top_k: int, timings: dict) -> list[Hit]:
        self.open()
        t = time.perf_counter()
        dense, cached = self.embed_query(question)
        timings["embed"] = _ms(t)
        timings["embed_cached"] = cached
        s = self.settings
        sparse = self._sparse(question, query=True) if s.hybrid else None
        fetch = max(top_k, s.prefetch_k) if self.reranker.name != "none" else top_k
        t = time.perf_counter()
        metrics.SEARCHES.inc()
        try:
            with metrics.SEARCH_SECONDS.time():
                hits = self.store.search(dense, sparse, fetch, s.prefetch_k, s.score_threshold)
        except DependencyError:
            metrics.SEARCH_FAILURES.inc()
            raise
        except Exception as exc:  # engine errors are the store's failures too
            metrics.SEARCH_FAILURES.inc()
            raise DependencyError("vector_store", f"query failed: {exc}") from None
        timings["search"] = _ms(t)
        if self.reranker.name != "none":
            t = time.perf_counter()
            try:
                with metrics.RERANK_SECONDS.time():
                    hits = self.reranker.rerank(question, hits, top_k)
            except DependencyError as exc:  # reranking refines; without it the fused order still answers
                metrics.RERANK_FAILURES.inc()
                log.warning("rerank skipped: %s", exc.detail)
                timings["rerank_skipped"] = True
            timings["rerank"] = _ms(t)
        return hits[:top_k]

    @staticmethod
    def sources(hits: list[Hit]) -> list[dict]:
        return [{"document": h.payload.get("document"), "section": h.payload.get("section"),
                 "chunk_id": h.payload.get("chunk_id"), "score": round(h.score, 6), "text": h.payload.get("text")}
                for h in hits]

    # --- chat
    def chat(self, question: str, history: list[dict], top_k: int | None = None) -> ChatResult:
        start = time.perf_counter()
        timings: dict = {}
        hits = self.retrieve(question, top_k or self.settings.top_k, timings)
        messages = build_messages(question, history, hits, self.settings.history_window)
        gen = self.generator
        t = time.perf_counter()
        degraded = False
        try:
            answer = "".join(self._generate(messages, hits, question))
            mode, model = ("extractive" if gen.name == "extractive" else "generated"), gen.model
        except DependencyError:
            if self.settings.llm_on_failure == "fail":
                raise
            degraded, mode, model = True, "extractive", "extractive"
            metrics.DEGRADED_ANSWERS.inc()
            answer = extractive_answer(question, hits)
        timings["generate"] = _ms(t)
        timings["total"] = _ms(start)
        return ChatResult(answer, self.sources(hits), model, mode, degraded, timings)

    def _generate(self, messages, hits, question) -> Iterator[str]:
        gen = self.generator
        if gen.name == "extractive":
            yield from gen.stream(messages, hits, question)
            return
        metrics.GENERATIONS.labels(gen.name).inc()
        try:
            with metrics.GENERATION_SECONDS.labels(gen.name).time():
                yield from gen.stream(messages, hits, question)
        except DependencyError as exc:
            reason = "timeout" if "within" in exc.detail or "exceeded" in exc.detail else "error"
            metrics.GENERATION_FAILURES.labels(gen.name, reason).inc()
            log.warning("generation failed: %s", exc)
            raise

    def chat_stream(self, question: str, history: list[dict], top_k: int | None = None) -> Iterator[tuple[str, dict]]:
        """Yields ("token", {"text"}) events, then one ("sources", {...final fields}) event.

        Retrieval errors raise before the first event (so the API can answer 503). An LLM failure before
        the first token degrades to an extractive answer; after it, an ("error", {...}) event ends the stream.
        """
        start = time.perf_counter()
        timings: dict = {}
        hits = self.retrieve(question, top_k or self.settings.top_k, timings)
        messages = build_messages(question, history, hits, self.settings.history_window)
        return self._stream_events(question, messages, hits, timings, start)

    def _stream_events(self, question, messages, hits, timings, start):
        gen = self.generator
        degraded, sent = False, False
        mode, model = ("extractive" if gen.name == "extractive" else "generated"), gen.model
        t = time.perf_counter()
        try:
            for token in self._generate(messages, hits, question):
                sent = True
                yield "token", {"text": token}
        except DependencyError as exc:
            if sent or self.settings.llm_on_failure == "fail":
                yield "error", {"error": "dependency unavailable", "detail": exc.detail, "dependency": exc.dependency}
                return
            degraded, mode, model = True, "extractive", "extractive"
            metrics.DEGRADED_ANSWERS.inc()
            yield "token", {"text": extractive_answer(question, hits)}
        timings["generate"] = _ms(t)
        timings["total"] = _ms(start)
        yield "sources", {"sources": self.sources(hits), "model": model, "mode": mode, "degraded": degraded,
                          "timings_ms": timings}

    # --- documents
    def ingest_bytes(self, name: str, data: bytes, content_type: str | None = None,
                     known: dict[str, str] | None = None) -> dict:
        """Index one document. `known` maps document id -> content hash (saves a lookup in bulk runs)."""
        self.open()
        if len(data) > self.settings.max_upload_bytes:
            raise BadDocument(f"{name}: {len(data)} bytes is over the limit of {self.settings.max_upload_bytes}")
        doc_id = document_id(name)
        content_hash = hashlib.sha256(data).hexdigest()
        if known is None:
            known = {d["id"]: d["content_hash"] for d in self.store.documents()}
        previous = known.get(doc_id)
        if previous == content_hash:
            return {"id": doc_id, "document": name, "status": "unchanged", "chunks": None}
        try:
            parsed = parse_document(name, data, content_type)
        except ValueError as exc:
            raise BadDocument(str(exc)) from None
        chunks = chunk_markdown(parsed.markdown, title=parsed.title, max_chars=self.settings.chunk_max_chars)
        if not chunks:
            raise BadDocument(f"{name}: no text to index")
        with metrics.EMBED_SECONDS.labels("passage").time():
            vectors = self._embed_passages([f"{c.section}\n{c.text}" if c.section else c.text for c in chunks])
        key = document_key(doc_id, content_hash, name)
        points = []
        for chunk, vec in zip(chunks, vectors, strict=True):
            indices, values = self._sparse(f"{chunk.section}\n{chunk.text}", query=False)
            payload = {"document_id": doc_id, "document": name, "title": parsed.title, "section": chunk.section,
                       "chunk_index": chunk.index, "chunk_id": f"{doc_id}:{chunk.index}", "text": chunk.text,
                       "content_hash": content_hash, "doc_key": key}
            points.append(PointData(point_id(doc_id, chunk.index), vec, indices, values, payload))
        self.store.replace_document(doc_id, points)
        known[doc_id] = content_hash
        return {"id": doc_id, "document": name, "status": "updated" if previous else "created", "chunks": len(points)}

    def _embed_passages(self, texts: list[str]) -> np.ndarray:
        size = self.settings.embed_batch_size
        parts = [self.embedder.embed_passages(texts[i:i + size]) for i in range(0, len(texts), size)]
        return np.vstack(parts)

    def documents(self) -> list[dict]:
        self.open()
        return self.store.documents()

    def delete_document(self, doc_id: str) -> bool:
        self.open()
        if not any(d["id"] == doc_id for d in self.store.documents()):
            return False
        self.store.delete_document(doc_id)
        self.refresh_gauges()
        return True

    # --- readiness
    def readiness(self) -> dict:
        checks = {
            "vector_store": self._check(lambda: (self.open(), self.store.ping())),
            "embedder": self._check(lambda: self.embedder.embed_queries(["readiness probe"])),
            "llm": self._check(self.generator.ping),
            "cache": self._check(self.cache.ping),
        }
        checks["embedder"]["model"] = self.embedder.model
        checks["llm"]["backend"] = self.generator.name
        checks["cache"]["kind"] = getattr(self.cache, "kind", "none")
        # The cache is optional (a failing cache is a miss); an LLM failure degrades unless configured to fail.
        required = {"vector_store", "embedder"} | ({"llm"} if self.settings.llm_on_failure == "fail" else set())
        for name, check in checks.items():
            check["required"] = name in required
        ready = all(checks[n]["status"] == "ok" for n in required)
        return {"status": "ready" if ready else "not ready", "checks": checks}

    @staticmethod
    def _check(fn) -> dict:
        t = time.perf_counter()
        try:
            fn()
            return {"status": "ok", "latency_ms": _ms(t)}
        except DependencyError as exc:
            return {"status": "failed", "latency_ms": _ms(t), "detail": exc.detail}
        except Exception as exc:  # a probe must report, never raise
            return {"status": "failed", "latency_ms": _ms(t), "detail": f"{type(exc).__name__}: {exc}"[:300]}


__all__ = ["RagService", "ChatResult", "document_id", "NoCache"]
