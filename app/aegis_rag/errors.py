"""Errors the API turns into clean JSON replies (never a traceback to the client)."""

from __future__ import annotations

from typing import Literal

FailureReason = Literal["timeout", "error"]


class DependencyError(Exception):
    """A backend (vector store, embedder, LLM, reranker, cache) is down, slow or answered garbage -> 503.

    `reason` is "timeout" when the backend did not answer in time, else "error" (metrics label on it).
    """

    def __init__(self, dependency: str, detail: str, status: int = 503, *,
                 reason: FailureReason = "error") -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail
        self.status = status
        self.reason = reason


class ConfigurationError(Exception):
    """The configuration contradicts the stored data (e.g. embedding model mismatch). Refuse to start."""


class BadDocument(ValueError):
    """An uploaded document cannot be ingested (empty, corrupt, over a parse budget) -> `status` (400)."""

    status = 400


class DocumentTooLarge(BadDocument):
    """The document is over AEGIS_MAX_UPLOAD_BYTES -> 413."""

    status = 413


class UnsupportedDocument(BadDocument):
    """The file type is not one Aegis can parse -> 415."""

    status = 415


class Abandoned(Exception):
    """Work stopped before it wrote anything: its client went away or the server is stopping."""
