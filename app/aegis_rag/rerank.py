"""Rerankers: none, or Jina's jina-reranker-v2-base-multilingual.

No local cross-encoder ships offline here, so a local reranker is not offered.
"""

from __future__ import annotations

import httpx

from .errors import DependencyError
from .settings import Settings
from .vectorstore import Hit


class NoReranker:
    name = "none"

    def rerank(self, query: str, hits: list[Hit], top_n: int) -> list[Hit]:
        return hits[:top_n]

    def ping(self) -> None:
        pass


class JinaReranker:
    name = "jina"

    def __init__(self, settings: Settings) -> None:
        if not settings.jina_api_key:
            raise ValueError("AEGIS_JINA_API_KEY is required for reranker=jina")
        self.model = settings.rerank_model
        self._http = httpx.Client(base_url=settings.jina_url, timeout=settings.rerank_timeout_s, headers={
            "Authorization": f"Bearer {settings.jina_api_key.get_secret_value()}"})

    def rerank(self, query: str, hits: list[Hit], top_n: int) -> list[Hit]:
        if not hits:
            return []
        body = {"model": self.model, "query": query, "top_n": top_n, "return_documents": False,
                "documents": [h.payload.get("text", "") for h in hits]}
        try:
            r = self._http.post("/v1/rerank", json=body)
        except httpx.HTTPError as exc:
            raise DependencyError("reranker", f"Jina rerank failed: {exc or type(exc).__name__}") from None
        if r.status_code != 200:
            raise DependencyError("reranker", f"Jina rerank answered HTTP {r.status_code}: {r.text[:200]}")
        try:
            results = r.json()["results"]
            ranked = [Hit(hits[x["index"]].id, float(x["relevance_score"]), hits[x["index"]].payload)
                      for x in results]
        except (ValueError, KeyError, IndexError, TypeError):
            raise DependencyError("reranker", "Jina rerank reply is not in the documented shape") from None
        return ranked[:top_n]

    def ping(self) -> None:
        pass  # a rerank call costs tokens; readiness relies on real calls' failures


def build_reranker(settings: Settings):
    return JinaReranker(settings) if settings.reranker == "jina" else NoReranker()
