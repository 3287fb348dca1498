"""Memory of the API process through its life: start-up, /ready, first /chat, 64-chunk ingest batches, idle.

Method: `aegis-rag serve` runs as a subprocess (one worker, embedded defaults: ONNX MiniLM, Qdrant
Edge, extractive answers) on a free port with its own data folder in a temp directory. After each
stage the benchmark reads the server's /proc/PID/status (VmRSS, VmHWM = peak RSS, RssAnon, RssFile)
and /proc/PID/smaps_rollup (PSS, USS = private clean + private dirty) and whether libtorch is mapped.
Stages: started (/health answers: the service is open), ready (GET /ready), chat (first POST
/chat), ingest_1 (POST /documents with one Markdown document that chunks into exactly 64 chunks:
one `AEGIS_EMBED_BATCH_SIZE` batch), ingest_N (N-1 more such documents), idle (after --idle s).
Each run does this twice: `first_start` on an empty data folder (the ONNX model is exported at
start-up) and `restart` on the same folder (the exported model exists: every later start).
Runs are repeated; medians per mode and stage are printed last, in MB (10^6 bytes).

    python -m bench.bench_memory [--runs 3] [--batches 5] [--idle 20] [--env KEY=VALUE ...]
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

from bench.server import serve

ROOT = Path(__file__).resolve().parents[1]
CHUNKS_PER_BATCH = 64
MODES = ("first_start", "restart")


def document(seed: int, chunks: int = CHUNKS_PER_BATCH) -> bytes:
    """A Markdown document of prose drawn from docs/ that the default chunker cuts into `chunks` chunks."""
    from aegis_rag.ingest.chunking import chunk_markdown
    from aegis_rag.settings import Settings

    text = " ".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    words = [w for w in text.split() if w.isalpha()]  # plain words: no Markdown syntax in the prose
    rng = random.Random(seed)
    max_chars = Settings().chunk_max_chars
    parts = [f"# Memory benchmark document {seed}"]
    for section in range(chunks):  # one section per chunk: a paragraph just under the chunk size
        parts += [f"## Section {section}", " ".join(rng.choices(words, k=150))[: max_chars - 100] + "."]
    text = "\n\n".join(parts)
    got = len(chunk_markdown(text, title=f"Memory benchmark document {seed}", max_chars=max_chars))
    if got != chunks:
        raise RuntimeError(f"benchmark document has {got} chunks, expected {chunks}")
    return text.encode()


def memory(pid: int) -> dict:
    """Resident memory of one process in MB, and whether libtorch is mapped into it."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    rollup = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        rollup[key] = int(value.split()[0])

    def mb(kib: int) -> float:
        return round(kib * 1024 / 1e6, 1)

    def kib(field: str) -> int:
        return int(status[field].split()[0])

    maps = Path(f"/proc/{pid}/maps").read_text()
    return {"rss": mb(kib("VmRSS")), "pss": mb(rollup["Pss"]),
            "uss": mb(rollup["Private_Clean"] + rollup["Private_Dirty"]),
            "anon": mb(kib("RssAnon")), "file": mb(kib("RssFile")), "peak": mb(kib("VmHWM")),
            "torch_mapped": "libtorch_cpu" in maps}


def one_life(data_dir: Path, docs: list[bytes], idle_s: float, extra_env: dict[str, str]) -> dict:
    """Start the server, take it through every stage, stop it; memory after each stage."""
    proc, url = serve(data_dir, extra_env, wait_for="/health")
    stages = {}
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            time.sleep(2)
            stages["started"] = memory(proc.pid)
            client.get("/ready").raise_for_status()
            stages["ready"] = memory(proc.pid)
            client.post("/chat", json={"question": "How do I restore a collection from a backup?",
                                       "history": []}).raise_for_status()
            stages["chat"] = memory(proc.pid)
            for i, doc in enumerate(docs, 1):
                r = client.post("/documents", files={"file": (f"memory-{i}.md", doc, "text/markdown")})
                r.raise_for_status()
                if r.json()["chunks"] != CHUNKS_PER_BATCH:
                    raise RuntimeError(f"document {i} gave {r.json()['chunks']} chunks")
                if i == 1:
                    stages["ingest_1"] = memory(proc.pid)
            stages[f"ingest_{len(docs)}"] = memory(proc.pid)
            time.sleep(idle_s)
            stages["idle"] = memory(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    return stages


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batches", type=int, default=5, help="64-chunk documents ingested per server life")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds idle before the last reading")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra server environment")
    args = ap.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)

    runs = []
    for run in range(args.runs):
        data_dir = Path(tempfile.mkdtemp(prefix="aegis-bench-memory-"))
        try:
            result = {}
            for m, mode in enumerate(MODES):
                docs = [document(1000 * run + 100 * m + i) for i in range(args.batches)]
                result[mode] = one_life(data_dir, docs, args.idle, extra_env)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        runs.append(result)
        print(json.dumps({"run": run + 1, **result}), flush=True)

    median = {mode: {stage: {k: statistics.median(r[mode][stage][k] for r in runs)
                             for k in ("rss", "pss", "uss", "anon", "file", "peak")}
                     for stage in runs[0][mode]}
              for mode in MODES}
    print(json.dumps({"runs": len(runs), "env": extra_env, "median_mb": median}, indent=2))


if __name__ == "__main__":
    main()
