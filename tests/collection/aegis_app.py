"""A real Aegis API (embedded mode, local embedder) served by uvicorn in a thread, for the collection tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import uvicorn

from tests.stack import free_port

DOC = b"""# Backup and restore

Snapshots of the collection are uploaded to the S3 bucket aegis-backups every night at 02:00.
"""



class AegisServer:
    def __init__(self, data_dir: Path, embedder=None, **settings) -> None:
        from aegis_rag.api import create_app
        from aegis_rag.service import RagService
        from aegis_rag.settings import Settings

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(data_dir=data_dir, port=self.port, **settings)
        service = RagService(self.settings, embedder=embedder) if embedder is not None else None
        config = uvicorn.Config(create_app(self.settings, service), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="aegis-api", daemon=True)

    def start(self, timeout: float = 120) -> AegisServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Aegis API did not start")
            time.sleep(0.05)
        return self

    def add_document(self, name: str = "backup.md", text: bytes = DOC, headers: dict | None = None) -> None:
        r = httpx.post(self.url + "/documents", files={"file": (name, text, "text/markdown")}, headers=headers,
                       timeout=120)
        r.raise_for_status()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
