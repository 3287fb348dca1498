"""/chat latency over HTTP in extractive mode (embed + hybrid search + fuse + answer, no LLM).

Method: a collection of N chunks is built in a fresh data folder: the real docs/ corpus ingested
through the real pipeline, plus synthetic chunks (random unit vectors, BM25 vectors of text drawn
from the docs' vocabulary) written straight into Qdrant Edge and optimised (HNSW built), because
embedding 100k chunks with MiniLM would take ~15 minutes per run. Then `aegis-rag serve` runs
as a subprocess (one worker) and one client sends sequential requests over loopback:
- uncached: every question is new, so the query embedding is computed (ONNX MiniLM);
- cached: the same questions again, so the embedding comes from the in-process cache.
Alongside: the server's own `timings_ms.total` for the same requests (retrieval and answer without
HTTP or framework), and GET /health with the same client (the HTTP floor).
Reports p50/p95/p99 per size; the run is repeated and medians of the runs are reported.

    python -m bench.bench_chat [--sizes 10000 100000] [--requests 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench.server import serve

ROOT = Path(__file__).resolve().parents[1]


def build_collection(data_dir: Path, size: int, seed: int = 7) -> int:
    from qdrant_edge import Bm25

    from aegis_rag.service import RagService
    from aegis_rag.settings import Settings
    from aegis_rag.vectorstore import PointData, document_key, point_id

    settings = Settings(data_dir=data_dir)
    service = RagService(settings)
    service.open()
    for path in sorted((ROOT / "docs").rglob("*.md")):
        service.ingest_bytes(str(path.relative_to(ROOT)), path.read_bytes())
    real = service.store.count()
    words = " ".join(p.read_text() for p in (ROOT / "docs").rglob("*.md")).split()
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    bm25 = Bm25()
    batch = 2000
    for start in range(0, size - real, batch):
        n = min(batch, size - real - start)
        vecs = nrng.standard_normal((n, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        points = []
        for i in range(n):
            idx = start + i
            text = " ".join(rng.choices(words, k=80))
            sv = bm25.embed_document(text)
            doc = f"synthetic-{idx // 50}"
            payload = {"document_id": doc, "document": f"{doc}.md", "section": "Synthetic", "chunk_index": idx % 50,
                       "chunk_id": f"{doc}:{idx % 50}", "text": text, "content_hash": "0",
                       "doc_key": document_key(doc, "0", f"{doc}.md")}
            points.append(PointData(point_id(doc, idx % 50), vecs[i], list(sv.indices), list(sv.values), payload))
        service.store._shard.update(service.store._qe.UpdateOperation.upsert_points(service.store._points(points)))
    service.store._shard.optimize()
    count = service.store.count()
    service.close()
    return count



def percentiles(ms: list[float]) -> dict:
    a = np.array(ms)
    return {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
            "p99": round(float(np.percentile(a, 99)), 2)}


def measure(url: str, questions: list[str]) -> tuple[list[float], list[float]]:
    """Wall time of each /chat over HTTP, and the server's own `timings_ms.total` (no HTTP, no framework)."""
    wall, server = [], []
    with httpx.Client(base_url=url, timeout=30) as client:
        for q in questions:
            t = time.perf_counter()
            r = client.post("/chat", json={"question": q, "history": []})
            wall.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            server.append(r.json()["timings_ms"]["total"])
    return wall, server


def measure_health(url: str, n: int) -> list[float]:
    """The HTTP floor: GET /health (no work) with the same client, in the same run."""
    out = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(n):
            t = time.perf_counter()
            client.get("/health").raise_for_status()
            out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    topics = ["restore", "snapshot", "health check", "metrics", "Ollama model", "embedding cache", "API key",
              "chunking", "readiness", "alert", "GPU memory", "vacuum", "optimizer", "backup S3", "latency"]
    results = {}
    for size in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix=f"aegis-bench-{size}-"))
        try:
            t = time.perf_counter()
            count = build_collection(tmp, size)
            build_s = time.perf_counter() - t
            proc, url = serve(tmp)
            try:
                runs = []
                for run in range(args.runs):
                    qs = [f"How does {topics[i % len(topics)]} work in case {run}-{i}?" for i in range(args.requests)]
                    measure(url, qs[:20])  # warm-up (these 20 become cached; excluded below)
                    fresh, fresh_server = measure(url, qs[20:])
                    cached, cached_server = measure(url, qs[20:])
                    runs.append({"uncached": percentiles(fresh), "cached": percentiles(cached),
                                 "uncached_server": percentiles(fresh_server),
                                 "cached_server": percentiles(cached_server),
                                 "health": percentiles(measure_health(url, len(qs) - 20))})
            finally:
                proc.terminate()
                proc.wait(10)
            med = {kind: {p: statistics.median(r[kind][p] for r in runs) for p in ("p50", "p95", "p99")}
                   for kind in runs[0]}
            results[size] = {"points": count, "build_seconds": round(build_s, 1), "runs": runs, "median": med}
            print(json.dumps({size: results[size]["median"], "points": count}), flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
