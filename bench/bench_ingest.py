"""Ingestion throughput against the embedder's raw throughput, measured in the same run.

Method: a synthetic Markdown corpus (D documents, each several sections of prose drawn from
docs/) is chunked once to get the exact chunk texts. Raw: the embedder embeds those texts, nothing
else, in batches of 8, 16, 32 and 64; the best of these is the raw throughput. Pipeline: the same documents go through
RagService.ingest_bytes (parse, chunk, embed, BM25, upsert into embedded Qdrant) into a fresh
store. Ratio = pipeline chunks/s / raw chunks/s. Runs alternate raw/pipeline; medians reported.

    python -m bench.bench_ingest [--docs 40] [--runs 3]
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

ROOT = Path(__file__).resolve().parents[1]


def corpus(n_docs: int, seed: int = 3) -> dict[str, bytes]:
    words = " ".join(p.read_text() for p in (ROOT / "docs").rglob("*.md")).split()
    rng = random.Random(seed)
    docs = {}
    for d in range(n_docs):
        parts = [f"# Document {d}"]
        for s in range(5):
            parts.append(f"## Section {s}")
            for _ in range(3):
                parts.append(" ".join(rng.choices(words, k=90)) + ".")
        docs[f"doc-{d}.md"] = "\n\n".join(parts).encode()
    return docs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--raw-batches", type=int, nargs="+", default=[8, 16, 32, 64])
    args = ap.parse_args()

    from aegis_rag.embeddings import LocalEmbedder
    from aegis_rag.ingest.chunking import chunk_markdown
    from aegis_rag.ingest.parsing import parse_document
    from aegis_rag.service import RagService
    from aegis_rag.settings import Settings

    models = Path(tempfile.mkdtemp(prefix="aegis-bench-models-"))
    embedder = LocalEmbedder.bundled("onnx", models)
    docs = corpus(args.docs)
    settings = Settings()
    texts = []
    for name, data in docs.items():
        parsed = parse_document(name, data)
        texts += [f"{c.section}\n{c.text}" for c in chunk_markdown(parsed.markdown, title=parsed.title,
                                                                   max_chars=settings.chunk_max_chars)]
    embedder.embed_passages(texts[:16])  # warm-up
    runs = []
    for _ in range(args.runs):
        by_batch = {}
        for bs in args.raw_batches:  # the embedder's raw throughput is its best batch size
            t = time.perf_counter()
            for i in range(0, len(texts), bs):
                embedder.embed_passages(texts[i:i + bs])
            by_batch[bs] = round(len(texts) / (time.perf_counter() - t), 1)
        raw = max(by_batch.values())

        data_dir = Path(tempfile.mkdtemp(prefix="aegis-bench-ingest-"))
        service = RagService(Settings(data_dir=data_dir), embedder=embedder)
        service.open()
        t = time.perf_counter()
        chunks = sum(service.ingest_bytes(name, data)["chunks"] for name, data in docs.items())
        pipeline = chunks / (time.perf_counter() - t)
        service.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        runs.append({"chunks": chunks, "raw_by_batch": by_batch, "raw_chunks_per_s": raw,
                     "pipeline_batch": settings.embed_batch_size, "pipeline_chunks_per_s": round(pipeline, 1),
                     "ratio": round(pipeline / raw, 3)})
        print(json.dumps(runs[-1]), flush=True)
    shutil.rmtree(models, ignore_errors=True)
    print(json.dumps({"runtime": embedder.runtime, "median_ratio": statistics.median(r["ratio"] for r in runs),
                      "median_raw": statistics.median(r["raw_chunks_per_s"] for r in runs),
                      "median_pipeline": statistics.median(r["pipeline_chunks_per_s"] for r in runs)}))


if __name__ == "__main__":
    main()
