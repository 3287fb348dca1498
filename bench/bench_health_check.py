"""aegis.rag.health_check vs the manual's sequential health_check.sh when endpoints hang.

Method: the four checks of the manual's script (API /health, API /chat with its test query, Qdrant
readiness, Ollama /api/tags) run against a real Aegis API (embedded mode, in-process uvicorn thread), the
Qdrant double and the Ollama double, all on loopback. Two scenarios:
- one_hanging: the Ollama double is SIGSTOPped (its port accepts connections that never get an answer);
- all_hanging: all four URLs point at "black hole" listeners that accept and never answer.
In each run, in alternating order, the same four checks are made
- by the module, run as its own process (the module file executed directly with a JSON args file and the
  collection on PYTHONPATH): wall time of the process, plus the module's own summary.elapsed_ms;
- by the manual's logic: four `curl -sf --max-time T` calls in sequence in one bash script (Qdrant's
  /health, which does not exist, is replaced by /readyz; the external Jina call is left out).
Prints JSON with per-run figures and medians; the module's target is timeout + 1 s.

    python -m bench.bench_health_check [--timeout 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.collection.aegis_app import AegisServer  # run as `python -m bench.bench_health_check` from the root
from tests.stack import ollama_double, qdrant_double

ROOT = Path(__file__).resolve().parents[1]

MODULE = ROOT / "collections" / "ansible_collections" / "aegis" / "rag" / "plugins" / "modules" / "health_check.py"

# The manual's four checks, same curl flags, run one after the other.
SEQUENTIAL_SCRIPT = r"""
failures=0
curl -sf --max-time "$T" "$API_URL/health" > /dev/null || failures=$((failures+1))
response=$(curl -sf --max-time "$T" -H "Content-Type: application/json" \
    -d '{"question":"test query","history":[]}' "$API_URL/chat" 2>/dev/null)
if [ $? -ne 0 ] || ! echo "$response" | jq -e '.answer' > /dev/null 2>&1; then failures=$((failures+1)); fi
curl -sf --max-time "$T" "$QDRANT_URL/readyz" > /dev/null || failures=$((failures+1))
curl -sf --max-time "$T" "$OLLAMA_URL/api/tags" > /dev/null || failures=$((failures+1))
echo "$failures"
"""


def black_hole(backlog: int = 64) -> tuple[socket.socket, str]:
    """A listener that never accepts: connections complete in the kernel backlog and then hang."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def run_module(urls: dict, timeout: float, workdir: Path) -> dict:
    args = {"timeout": timeout, "aegis": {"url": urls["api"], "checks": ["health", "chat"]},
            "qdrant": {"url": urls["qdrant"]}, "ollama": {"url": urls["ollama"]}}
    args_file = workdir / "health-args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "collections"))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], check=False, capture_output=True,
                          text=True, env=env, cwd=workdir, timeout=timeout * 10)
    wall_ms = (time.monotonic() - t0) * 1000
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    return {"wall_ms": wall_ms, "elapsed_ms": result["summary"]["elapsed_ms"], "failed": result["failed_checks"]}


def run_sequential(urls: dict, timeout: float) -> dict:
    env = dict(os.environ, T=str(timeout), API_URL=urls["api"], QDRANT_URL=urls["qdrant"], OLLAMA_URL=urls["ollama"])
    t0 = time.monotonic()
    proc = subprocess.run(["bash", "-c", SEQUENTIAL_SCRIPT], check=False, capture_output=True, text=True, env=env,
                          timeout=timeout * 10)
    return {"wall_ms": (time.monotonic() - t0) * 1000, "failures": int(proc.stdout.strip() or -1)}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def scenario(urls: dict, timeout: float, runs: int, workdir: Path) -> dict:
    module, sequential = [], []
    for i in range(runs):
        order = (run_module, run_sequential) if i % 2 == 0 else (run_sequential, run_module)
        for fn in order:
            if fn is run_module:
                module.append(run_module(urls, timeout, workdir))
            else:
                sequential.append(run_sequential(urls, timeout))
    bound_ms = (timeout + 1) * 1000
    return {
        "module_process_ms": median([m["wall_ms"] for m in module]),
        "module_checks_elapsed_ms": median([m["elapsed_ms"] for m in module]),
        "sequential_script_ms": median([s["wall_ms"] for s in sequential]),
        "bound_ms": bound_ms,
        "module_within_bound_every_run": all(m["wall_ms"] <= bound_ms for m in module),
        "module_failed_checks": module[-1]["failed"],
        "sequential_failures": sequential[-1]["failures"],
        "runs": {"module_process_ms": [round(m["wall_ms"], 1) for m in module],
                 "module_checks_elapsed_ms": [m["elapsed_ms"] for m in module],
                 "sequential_script_ms": [round(s["wall_ms"], 1) for s in sequential]},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=5.0, help="per-check timeout in seconds (manual: 10)")
    ap.add_argument("--runs", type=int, default=5)
    opts = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-health-"))
    qdrant = qdrant_double(work, api_key=None).start()
    ollama = ollama_double(work).start()
    with contextlib.redirect_stdout(sys.stderr):  # the ONNX export prints progress; stdout is for the JSON
        api = AegisServer(work / "aegis").start()
    holes = [black_hole() for _ in range(3)]
    try:
        api.add_document()
        live = {"api": api.url, "qdrant": qdrant.url, "ollama": ollama.url}
        healthy = run_module(live, opts.timeout, work)
        if healthy["failed"]:
            raise SystemExit(f"the stack is not healthy before the benchmark: {healthy['failed']}")
        ollama.pause()
        one = scenario(live, opts.timeout, opts.runs, work)
        ollama.resume()
        # all four hang: the API's two checks share one black hole, as they share one server
        dead = {"api": holes[0][1], "qdrant": holes[1][1], "ollama": holes[2][1]}
        every = scenario(dead, opts.timeout, opts.runs, work)
    finally:
        ollama.resume()
        for sock, _ in holes:
            sock.close()
        api.stop()
        ollama.stop()
        qdrant.stop()
    print(json.dumps({"benchmark": "health_check", "timeout_s": opts.timeout, "runs": opts.runs,
                      "one_hanging": one, "all_hanging": every}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
