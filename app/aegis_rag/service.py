"""The RAG service: ingestion, retrieval and chat, independent of HTTP."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from . import metrics
from .cache import NoCache, build_cache, cache_key
from .embeddings import Embedder, build_embedder
from .errors import Abandoned, BadDocument, DependencyError, DocumentTooLarge
from .generation import build_generator, build_messages, extractive_answer
from .ingest.chunking import chunk_markdown
from .ingest.parsing import ParseBudget, parse_document
from .rerank import build_reranker
from .settings import Settings
from .sparse import Bm25Encoder
from .vectorstore import Hit, PointData, VectorStore, build_store, document_key, point_id

log = logging.getLogger(__name__)
_DOC_NAMESPACE = uuid.UUID("0b8e4c55-93a1-4f0e-8d52-7d5f1f0c3e12")


def document_id(name: str) -> str:
    return str(uuid.uuid5(_DOC_NAMESPACE, name))


def _checkpoint(name: str, abandon: threading.Event | None) -> Callable[[], None]:
    def check() -> None:
        if abandon is not None and abandon.is_set():
            raise Abandoned(f"{name}: ingest abandoned before anything was written")
    return check


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


@dataclass(slots=True)
class Source:
    """A passage an answer is drawn from."""

    document: str | None
    section: str | None
    chunk_id: str | None
    score: float
    text: str | None

    @classmethod
    def of(cls, hit: Hit) -> Source:
        p = hit.payload
        return cls(p.get("document"), p.get("section"), p.get("chunk_id"), round(hit.score, 6), p.get("text"))


@dataclass(slots=True)
class ChatResult:
    """The answer to a question; also the /chat response model (api/schemas.py), so it is defined once."""

    answer: str
    sources: list[Source]
    model: str
    mode: Literal["generated", "extractive"]
    degraded: bool
    timings_ms: dict[str, float | bool] = field(default_factory=dict)

    def final_event(self) -> dict:
        """The last event of a streamed answer: every field but the answer, which came as tokens."""
        fields = asdict(self)
        del fields["answer"]
        return fields


class RagService:
    def __init__(self, settings: Settings, *, embedder: Embedder | None = None, store: VectorStore | None = None,
                 cache=None, generator=None, reranker=None) -> None:
        self.settings = settings
        self.embedder = embedder or build_embedder(settings)
        self.store = store or build_store(settings)
        self.cache = cache if cache is not None else build_cache(settings)
        self.generator = generator or build_generator(settings)
        self.reranker = reranker or build_reranker(settings)
        self._bm25 = Bm25Encoder()
        self._parse_budget = ParseBudget.from_settings(settings)
        self._opened = False
        self._open_lock = threading.Lock()
        metrics.init_series(self.generator.name)

    # --- lifecycle
    def open(self) -> None:
        """Create or check the collection. Safe to call repeatedly; retried lazily if a dependency was down.

        One caller opens at a time; the others fail fast (503) instead of queueing behind it for a timeout each.
        """
        if self._opened:
            return
        if not self._open_lock.acquire(blocking=False):
            if self._opened:
                return
            raise DependencyError("vector_store", "the vector store is being opened by another request (a "
                                  "dependency is slow or down); retry shortly")
        try:
            if self._opened:
                return
            self.store.ensure_collection(self._embedding_dim(), self.embedder.model)
            self._opened = True
        finally:
            self._open_lock.release()
        self.refresh_gauges()

    def _embedding_dim(self) -> int:
        """Remote embedders learn their dimension from a first reply."""
        return self.embedder.dim or len(self.embedder.embed_queries(["dimension probe"])[0])

    def close(self) -> None:
        self.store.close()

    def refresh_gauges(self) -> None:
        try:
            metrics.POINTS.set(self.store.count())
            metrics.DOCUMENTS.set(len(self.store.documents()))
        except DependencyError as exc:
            log.warning("could not refresh document gauges: %s", exc)

    # --- building blocks
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
        sparse = self._bm25.query(question) if s.hybrid else None
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

    # --- chat
    def chat(self, question: str, history: list[dict], top_k: int | None = None) -> ChatResult:
        start = time.perf_counter()
        timings: dict = {}
        hits = self.retrieve(question, top_k or self.settings.top_k, timings)
        messages = build_messages(question, history, hits, self.settings.history_window)
        t = time.perf_counter()
        try:
            answer, degraded = "".join(self._generate(messages, hits, question)), False
        except DependencyError as exc:
            answer, degraded = self._fallback_answer(exc, question, hits), True
        return self._result(answer, hits, degraded, timings, t, start)

    def _fallback_answer(self, exc: DependencyError, question: str, hits: list[Hit]) -> str:
        """The extractive answer that replaces a failed generation; re-raises when configured to fail."""
        if self.settings.llm_on_failure == "fail":
            raise exc
        metrics.DEGRADED_ANSWERS.inc()
        return extractive_answer(question, hits)

    def _result(self, answer: str, hits: list[Hit], degraded: bool, timings: dict, generate_start: float,
                start: float) -> ChatResult:
        timings["generate"] = _ms(generate_start)
        timings["total"] = _ms(start)
        mode: Literal["generated", "extractive"] = "extractive"
        model = "extractive"
        if not degraded and self.generator.name != "extractive":
            mode, model = "generated", self.generator.model
        return ChatResult(answer, [Source.of(h) for h in hits], model, mode, degraded, timings)

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
            metrics.GENERATION_FAILURES.labels(gen.name, exc.reason).inc()
            log.warning("generation failed: %s", exc)
            raise

    def chat_stream(self, question: str, history: list[dict], top_k: int | None = None) -> Iterator[tuple[str, dict]]:
        """Yields ("token", {"text"}) events, then one ("sources", {...final fields}) event.

        Retrieval errors raise here, LLM errors before the first token raise when the first event is pulled
        with AEGIS_LLM_ON_FAILURE=fail (so the API can still answer 503), or degrade to an extractive answer.
        An LLM failure after the first token ends the stream with an ("error", {...}) event.
        """
        start = time.perf_counter()
        timings: dict = {}
        hits = self.retrieve(question, top_k or self.settings.top_k, timings)
        messages = build_messages(question, history, hits, self.settings.history_window)
        return self._stream_events(question, messages, hits, timings, start)

    def _stream_events(self, question: str, messages: list[dict], hits: list[Hit], timings: dict,
                       start: float) -> Iterator[tuple[str, dict]]:
        t = time.perf_counter()
        degraded, sent = False, False
        try:
            for token in self._generate(messages, hits, question):
                sent = True
                yield "token", {"text": token}
        except DependencyError as exc:
            if sent:
                yield "error", {"error": "dependency unavailable", "detail": exc.detail, "dependency": exc.dependency}
                return
            degraded = True
            yield "token", {"text": self._fallback_answer(exc, question, hits)}
        yield "sources", self._result("", hits, degraded, timings, t, start).final_event()

    # --- documents
    def ingest_bytes(self, name: str, data: bytes, content_type: str | None = None,
                     known: dict[str, str] | None = None, abandon: threading.Event | None = None) -> dict:
        """Index one document. `known` maps document id -> content hash (saves a lookup in bulk runs).

        Once `abandon` is set, the ingest raises Abandoned at its next step (parse, each embedding batch,
        before the one write), so an abandoned ingest writes nothing.
        """
        checkpoint = _checkpoint(name, abandon)
        self.open()
        if len(data) > self.settings.max_upload_bytes:
            raise DocumentTooLarge(f"{name}: {len(data)} bytes is over the limit of {self.settings.max_upload_bytes}")
        doc_id = document_id(name)
        content_hash = hashlib.sha256(data).hexdigest()
        if known is None:
            known = {d["id"]: d["content_hash"] for d in self.store.documents()}
        previous = known.get(doc_id)
        if previous == content_hash:
            return {"id": doc_id, "document": name, "status": "unchanged", "chunks": None}
        try:
            parsed = parse_document(name, data, content_type, budget=self._parse_budget, checkpoint=checkpoint)
        except BadDocument:  # already typed (e.g. UnsupportedDocument -> 415)
            raise
        except ValueError as exc:
            raise BadDocument(str(exc)) from None
        chunks = chunk_markdown(parsed.markdown, title=parsed.title, max_chars=self.settings.chunk_max_chars)
        if not chunks:
            raise BadDocument(f"{name}: no text to index")
        with metrics.EMBED_SECONDS.labels("passage").time():
            vectors = self._embed_passages([f"{c.section}\n{c.text}" if c.section else c.text for c in chunks],
                                           checkpoint)
        key = document_key(doc_id, content_hash, name)
        points = []
        for chunk, vec in zip(chunks, vectors, strict=True):
            indices, values = self._bm25.document(f"{chunk.section}\n{chunk.text}")
            payload = {"document_id": doc_id, "document": name, "title": parsed.title, "section": chunk.section,
                       "chunk_index": chunk.index, "chunk_id": f"{doc_id}:{chunk.index}", "text": chunk.text,
                       "content_hash": content_hash, "doc_key": key}
            points.append(PointData(point_id(doc_id, chunk.index), vec, indices, values, payload))
        checkpoint()
        self.store.replace_document(doc_id, points)
        known[doc_id] = content_hash
        return {"id": doc_id, "document": name, "status": "updated" if previous else "created", "chunks": len(points)}

    def _embed_passages(self, texts: list[str], checkpoint: Callable[[], None] = lambda: None) -> np.ndarray:
        size = self.settings.embed_batch_size
        parts = []
        for i in range(0, len(texts), size):
            checkpoint()
            parts.append(self.embedder.embed_passages(texts[i:i + size]))
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
        """Probes every dependency at once (so the slowest bounds the total); an open breaker answers for its
        dependency without a call, and after its cool-down this probe is the half-open one."""
        probes = {
            "vector_store": self._probe_store,
            "embedder": lambda: self.embedder.embed_queries(["readiness probe"]),
            "llm": self.generator.ping,
            "cache": self.cache.ping,
        }
        with ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="aegis-ready") as pool:
            running = {name: pool.submit(self._check, probe) for name, probe in probes.items()}
        checks = {name: future.result() for name, future in running.items()}
        for name, owner in (("vector_store", self.store), ("cache", self.cache)):
            breaker = getattr(owner, "breaker", None)
            if breaker is not None:
                checks[name]["circuit"] = breaker.state
        checks["embedder"]["model"] = self.embedder.model
        checks["llm"]["backend"] = self.generator.name
        checks["cache"]["kind"] = getattr(self.cache, "kind", "none")
        # The cache is optional (a failing cache is a miss); an LLM failure degrades unless configured to fail.
        required = {"vector_store", "embedder"} | ({"llm"} if self.settings.llm_on_failure == "fail" else set())
        for name, check in checks.items():
            check["required"] = name in required
        ready = all(checks[n]["status"] == "ok" for n in required)
        return {"status": "ready" if ready else "not ready", "checks": checks}

    def _probe_store(self) -> None:
        self.open()
        self.store.ping()

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


__all__ = ["RagService", "ChatResult", "Source", "document_id", "NoCache"]
