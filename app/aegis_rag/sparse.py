"""BM25 keyword vectors for hybrid retrieval: term weights only, the collection applies IDF."""

from __future__ import annotations

from typing import Any

SparseVector = tuple[list[int], list[float]]


class Bm25Encoder:
    """Qdrant Edge's BM25 tokeniser and weighting, loaded on first use."""

    def __init__(self) -> None:
        self._bm25: Any = None

    def _model(self) -> Any:
        if self._bm25 is None:
            from qdrant_edge import Bm25

            self._bm25 = Bm25()
        return self._bm25

    def query(self, text: str) -> SparseVector:
        vec = self._model().embed_query(text)
        return list(vec.indices), list(vec.values)

    def document(self, text: str) -> SparseVector:
        vec = self._model().embed_document(text)
        return list(vec.indices), list(vec.values)
