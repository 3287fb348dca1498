"""The API under stress: scrape latency while every request thread waits on a hung LLM, and the time a
SIGTERM takes to stop the server during an ingest.

Method (one `aegis-rag serve` process per measurement, embedded store, the Jina double as embedder):
- scrape: AEGIS_LLM=ollama with Ollama a listener that accepts and never answers, AEGIS_LLM_TIMEOUT_S=10;
  N parallel /chat (60, then 120), and from 1 s after they start, GET /metrics every 0.5 s for 8 s;
  each request's latency (Prometheus' scrape timeout is 10 s).
- shutdown: a 400-chunk Markdown upload whose embedding calls each take 0.5 s (the double's latency fault,
  batches of 4: ~50 s of work); SIGTERM 2 s into it; seconds until the process is gone (systemd kills at
  TimeoutStopSec=30). Capped at 90 s.
Run from the repository root; the code measured is the `aegis_rag` that `python` imports, so a baseline is
measured with PYTHONPATH=<checkout of the older commit>/app.

    python -m bench.bench_reliability [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.bench_health_check import black_hole
from bench.server import serve
from tests.stack import JINA_API_KEY, jina_double

Q = {"question": "When are snapshots uploaded to S3?", "history": []}
DOC = b"# Snapshots\n\nSnapshots are uploaded to the S3 bucket aegis-backups every night at 02:00.\n"


def big_markdown(sections: int) -> bytes:
    return "".join(f"## Section {i}\n\n" + f"Paragraph {i} about restoring snapshot {i}. " * 20 + "\n\n"
                   for i in range(sections)).encode()


def scrape_latencies(jina_url: str, parallel: int, workdir: Path) -> list[float]:
    hole, hole_url = black_hole(backlog=1024)
    env = {"AEGIS_EMBEDDER": "jina", "AEGIS_JINA_URL": jina_url, "AEGIS_JINA_API_KEY": JINA_API_KEY,
           "AEGIS_LLM": "ollama", "AEGIS_OLLAMA_URL": hole_url,
           "AEGIS_LLM_TIMEOUT_S": "10", "AEGIS_CACHE": "none"}
    proc, url = serve(workdir, env, wait_for="/health")
    try:
        httpx.post(url + "/documents", files={"file": ("s.md", DOC, "text/markdown")}, timeout=30).raise_for_status()
        latencies = []
        with ThreadPoolExecutor(parallel) as clients:
            chats = [clients.submit(httpx.post, url + "/chat", json=Q, timeout=120) for _ in range(parallel)]
            time.sleep(1)
            end = time.monotonic() + 8
            while time.monotonic() < end:
                t0 = time.monotonic()
                httpx.get(url + "/metrics", timeout=60).raise_for_status()
                latencies.append(time.monotonic() - t0)
                time.sleep(0.5)
            for c in chats:
                c.exception()
        return latencies
    finally:
        proc.kill()
        proc.wait()
        hole.close()


def shutdown_seconds(jina_url: str, workdir: Path) -> float:
    env = {"AEGIS_EMBEDDER": "jina", "AEGIS_JINA_URL": jina_url, "AEGIS_JINA_API_KEY": JINA_API_KEY,
           "AEGIS_EMBED_BATCH_SIZE": "4", "AEGIS_CACHE": "none"}
    proc, url = serve(workdir, env)
    try:
        httpx.post(jina_url + "/_faults", json={"path": "^/v1/embeddings$", "latency_ms": 500}, timeout=5)
        upload = threading.Thread(target=_upload, args=(url,), daemon=True)
        upload.start()
        time.sleep(2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:  # still running at the cap: reported as the cap
            pass
        return time.monotonic() - t0
    finally:
        httpx.delete(jina_url + "/_faults", timeout=5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _upload(url: str) -> None:
    try:
        httpx.post(url + "/documents", files={"file": ("manual.md", big_markdown(400), "text/markdown")}, timeout=120)
    except httpx.HTTPError:
        pass


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aegis-bench-rel-") as tmp:
        jina = jina_double(Path(tmp), api_key=JINA_API_KEY, name="jina")
        jina.start()
        try:
            result: dict = {}
            for parallel in (60, 120):
                runs = [scrape_latencies(jina.url, parallel, Path(tmp) / f"s{parallel}-{i}") for i in range(args.runs)]
                result[f"metrics_latency_s_{parallel}_parallel_chats"] = {
                    "per_run_median": [round(statistics.median(r), 3) for r in runs],
                    "per_run_max": [round(max(r), 3) for r in runs], "all": summary([x for r in runs for x in r])}
            stops = [shutdown_seconds(jina.url, Path(tmp) / f"stop-{i}") for i in range(args.runs)]
            result["sigterm_to_exit_during_ingest_s"] = {"runs": [round(s, 2) for s in stops], **summary(stops)}
        finally:
            jina.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
