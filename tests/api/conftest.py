"""Fixtures for API tests: the real local embedder (loaded once), apps on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aegis_rag.api import create_app
from aegis_rag.embeddings import LocalEmbedder
from aegis_rag.service import RagService
from aegis_rag.settings import Settings

CORPUS = {
    "backup.md": """# Backup and restore

## Snapshots

Snapshots of the collection are uploaded to the S3 bucket aegis-backups every night at 02:00.
Each snapshot carries its sha256 checksum and its point count as metadata.

## Restore

To restore, run the qdrant_restore module with the backup date. It takes a safety snapshot first.
""",
    "gpu.md": """# GPU hosts

Ollama runs on hosts with NVIDIA GPUs. The gpu_info module reports memory and utilisation.

| host | gpu | memory |
|------|-----|--------|
| gpu-1 | L4 | 24 GB |
""",
    "notes.txt": "The on-call engineer for Aegis rotates every Monday at 09:00 UTC.",
}


@pytest.fixture(scope="session")
def embedder(tmp_path_factory) -> LocalEmbedder:
    return LocalEmbedder.bundled("onnx", tmp_path_factory.mktemp("models"))


@pytest.fixture
def make_client(tmp_path, embedder):
    """Builds a TestClient on embedded defaults; keyword arguments override settings."""
    clients = []

    def make(corpus: dict[str, str] | None = CORPUS, service_kwargs: dict | None = None, **overrides) -> TestClient:
        settings = Settings(data_dir=tmp_path / f"data{len(clients)}", **overrides)
        service = RagService(settings, embedder=embedder, **(service_kwargs or {}))
        client = TestClient(create_app(settings, service), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        for name, text in (corpus or {}).items():
            r = client.post("/documents", files={"file": (name, text.encode(), "text/plain")},
                            headers=_auth(overrides))
            assert r.status_code == 200, r.text
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def _auth(overrides: dict) -> dict:
    keys = overrides.get("api_keys")
    return {"X-API-Key": keys[0]} if keys else {}


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).parents[2]
