"""Errors the API turns into clean JSON replies (never a traceback to the client)."""


class DependencyError(Exception):
    """A backend (vector store, embedder, LLM, reranker, cache) is down, slow or answered garbage -> 503."""

    def __init__(self, dependency: str, detail: str, status: int = 503) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail
        self.status = status


class ConfigurationError(Exception):
    """The configuration contradicts the stored data (e.g. embedding model mismatch). Refuse to start."""


class BadDocument(ValueError):
    """An uploaded document cannot be ingested (unsupported, empty, corrupt, too large) -> 4xx."""
