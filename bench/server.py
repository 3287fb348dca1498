"""Starts `aegis-rag serve` for a benchmark: its own data folder, a free loopback port, quiet logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.stack import free_port


def serve(data_dir: Path, extra_env: dict[str, str] | None = None, wait_for: str = "/ready",
          timeout_s: float = 900) -> tuple[subprocess.Popen, str]:
    """The server process and its URL, once `wait_for` answers 200 (the first start may export ONNX)."""
    port = free_port()
    env = dict(os.environ, AEGIS_DATA_DIR=str(data_dir), AEGIS_PORT=str(port), AEGIS_LOG_LEVEL="warning",
               **(extra_env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "aegis_rag.cli", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"aegis-rag serve exited with {proc.returncode} during start-up")
        try:
            if httpx.get(f"{url}{wait_for}", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"aegis-rag serve did not answer {wait_for} within {timeout_s:g} s")
