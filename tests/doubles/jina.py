#!/usr/bin/env python3
"""HTTP double of the Jina AI Search Foundation API: ``/v1/embeddings`` and ``/v1/rerank``.

Run it: ``python -m tests.doubles.jina --port 8081 --api-key K`` (or copy this file and faults.py to a host:
``python3 jina.py``; needs fastapi and uvicorn).

Every ``/v1`` call needs ``Authorization: Bearer <key>`` (401 otherwise). Embeddings are deterministic:
words hashed into signed buckets at several prefix sizes (texts sharing words are close, and every
truncation keeps every word), nudged by the ``task`` (so query and
passage vectors of one text differ slightly, as with jina-embeddings-v3's task adapters), truncated to
``dimensions`` (Matryoshka) and L2-normalised unless ``normalized`` is false. ``embedding_type`` may be
``float`` (default) or ``base64`` (little-endian float32). Rerank scores are in (0, 1), from the share of
query words found in each document plus their vector similarity; results are sorted by
``relevance_score``, cut to ``top_n``, and carry ``document.text`` unless ``return_documents`` is false.

Known divergences from the real API:
- The vectors and scores carry no meaning beyond shared words; ``late_chunking``, ``truncate`` and image
  inputs are accepted and ignored; ``binary``/``ubinary`` embedding types are refused (400).
- Token counts (``usage``) are word counts; no rate limits, balance or 8192-token input limit.
- Error bodies are ``{"detail": "..."}`` (FastAPI style; 422 carries FastAPI's validation list). The real
  API's exact wording and extra fields (error codes such as AUTH_INVALID_API_KEY) are not reproduced.
- Only the models below are known; any other model answers 400 "Model 'X' not found".
"""

from __future__ import annotations

import argparse
import base64
import re
import struct
import zlib
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

try:
    from . import faults
except ImportError:  # run as a plain script next to faults.py
    import faults

EMBEDDING_MODELS = {"jina-embeddings-v3": 1024, "jina-embeddings-v2-base-en": 768,
                    "jina-embeddings-v2-base-code": 768, "jina-clip-v2": 1024, "jina-embeddings-v4": 2048}
RERANK_MODELS = {"jina-reranker-v2-base-multilingual", "jina-reranker-v1-base-en", "jina-reranker-m0",
                 "jina-reranker-v3", "jina-colbert-v2"}
Task = Literal["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching",
               "code.query", "code.passage"]


class TextInput(BaseModel):
    text: str


class EmbeddingsRequest(BaseModel):
    model: str
    input: str | list[str | TextInput]
    task: Task | None = None
    dimensions: int | None = Field(default=None, ge=1)
    normalized: bool = True
    embedding_type: Literal["float", "base64", "binary", "ubinary"] = "float"
    late_chunking: bool = False
    truncate: bool = False


class RerankRequest(BaseModel):
    model: str
    query: str | TextInput
    documents: list[str | TextInput]
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = True


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def hashed(text: str, dim: int, salt: str = "") -> list[float]:
    """Each word adds a signed 1 in buckets of growing prefixes (16, 64, 256... dims), so every
    Matryoshka prefix of the vector still carries every word."""
    vec = [0.0] * dim
    for word in words(text) or [""]:
        h = zlib.crc32((salt + word).encode())
        scale = 16
        while True:
            size = min(scale, dim)
            vec[h % size] += 1.0 if (h >> 16) & 1 else -1.0
            if size == dim:
                break
            h, scale = zlib.crc32(h.to_bytes(4, "little")), scale * 4
    return vec


def normalise(vec: list[float]) -> list[float]:
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]


def embed(text: str, dim: int, task: str | None) -> list[float]:
    base = normalise(hashed(text, dim))
    if task:
        nudge = normalise(hashed(text, dim, salt=task))
        base = normalise([b + 0.15 * n for b, n in zip(base, nudge)])
    return base


def text_of(item: str | TextInput) -> str:
    return item if isinstance(item, str) else item.text


def relevance(query: str, document: str) -> float:
    q, d = set(words(query)), set(words(document))
    overlap = len(q & d) / len(q) if q else 0.0
    qv, dv = normalise(hashed(query, 256)), normalise(hashed(document, 256))
    cosine = sum(a * b for a, b in zip(qv, dv))
    raw = 0.7 * overlap + 0.3 * max(cosine, 0.0)
    return round(0.02 + 0.96 * raw, 6)


def create_app(api_key: str) -> FastAPI:
    app = FastAPI(title="Jina AI API double", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.middleware("http")
    async def bearer_auth(request: Request, call_next):
        if request.url.path.startswith("/v1/"):
            auth = request.headers.get("authorization", "")
            if not auth:
                return JSONResponse({"detail": "Authentication required: provide an API key as "
                                               "'Authorization: Bearer <key>'"}, status_code=401)
            if not auth.startswith("Bearer "):
                return JSONResponse({"detail": "Invalid authorization format"}, status_code=401)
            if auth[7:].strip() != api_key:
                return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        return await call_next(request)

    @app.get("/")
    async def health():
        return {}

    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingsRequest):
        if req.model not in EMBEDDING_MODELS:
            raise ApiError(400, f"Model '{req.model}' not found")
        if req.embedding_type in ("binary", "ubinary"):
            raise ApiError(400, f"embedding_type '{req.embedding_type}' is not supported by this test double")
        size = EMBEDDING_MODELS[req.model]
        if req.dimensions is not None and not 32 <= req.dimensions <= size:
            raise ApiError(400, f"dimensions must be between 32 and {size} for {req.model}")
        inputs = [req.input] if isinstance(req.input, str) else [text_of(x) for x in req.input]
        if not inputs:
            raise ApiError(400, "input must not be empty")
        data = []
        for i, text in enumerate(inputs):
            vec = embed(text, size, req.task)[: req.dimensions or size]
            vec = normalise(vec) if req.normalized else [v * 4.2 for v in vec]
            if req.embedding_type == "base64":
                payload = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            else:
                payload = vec
            data.append({"object": "embedding", "index": i, "embedding": payload})
        tokens = sum(len(words(t)) + 2 for t in inputs)
        return {"model": req.model, "object": "list", "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
                "data": data}

    @app.post("/v1/rerank")
    async def rerank(req: RerankRequest):
        if req.model not in RERANK_MODELS:
            raise ApiError(400, f"Model '{req.model}' not found")
        query = text_of(req.query)
        docs = [text_of(d) for d in req.documents]
        if not docs:
            raise ApiError(400, "documents must not be empty")
        scored = sorted(((relevance(query, d), i) for i, d in enumerate(docs)), key=lambda x: (-x[0], x[1]))
        results = []
        for score, i in scored[: req.top_n or len(docs)]:
            item = {"index": i, "relevance_score": score}
            if req.return_documents:
                item["document"] = {"text": docs[i]}
            results.append(item)
        tokens = sum(len(words(query)) + len(words(d)) + 3 for d in docs)
        return {"model": req.model, "usage": {"total_tokens": tokens}, "results": results}

    return app


def build_app(api_key: str):
    app = faults.with_faults(create_app(api_key))
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--api-key", required=True, help="the bearer key clients must send")
    args = ap.parse_args(argv)
    uvicorn.run(build_app(args.api_key), host=args.host, port=args.port, log_level="warning", lifespan="off",
                timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
