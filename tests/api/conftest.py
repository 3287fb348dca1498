"""Fixtures for API tests: the real local embedder (loaded once), apps on embedded defaults."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from aegis_rag.api import create_app
from aegis_rag.embeddings import LocalEmbedder
from aegis_rag.service import RagService
from aegis_rag.settings import Settings

EMBED_MODEL, LLM_MODEL = "nomic-embed-text", "deepseek-r1:7b"  # installed on the Ollama double

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
def embedder(local_embedder) -> LocalEmbedder:
    return local_embedder


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


# --- production shape: Qdrant server, Ollama, Jina rerank, Redis (doubles or real servers, see tests/fixtures.py)
@pytest.fixture
def server_settings(qdrant, ollama, jina, redis_server, collection_name, tmp_path):
    def make(**overrides) -> Settings:
        values = dict(data_dir=tmp_path, qdrant_url=qdrant.url, qdrant_api_key=qdrant.api_key,
                      collection=collection_name, embedder="ollama", embed_model=EMBED_MODEL, ollama_url=ollama.url,
                      llm="ollama", llm_model=LLM_MODEL, llm_timeout_s=10, reranker="jina", jina_url=jina.url,
                      jina_api_key=jina.api_key, cache="redis", redis_url=redis_server.url, qdrant_timeout_s=5)
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def server_client(server_settings, local_embedder):
    clients = []

    def make(corpus=CORPUS, **overrides) -> TestClient:
        settings = server_settings(**overrides)
        service = RagService(settings, embedder=local_embedder) if settings.embedder == "local" else None
        client = TestClient(create_app(settings, service), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        for name, text in (corpus or {}).items():
            r = client.post("/documents", files={"file": (name, text.encode(), "text/plain")})
            assert r.status_code == 200, r.text
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)




def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    """Until `aegis-rag serve` (proc) answers /ready with 200; fails with its stderr if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("the API did not become ready")
