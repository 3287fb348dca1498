"""Peak memory of aegis.rag.qdrant_restore for a large snapshot (target: under 150 MB).

Method: a private Qdrant double and moto S3 start on free loopback ports. A collection of few points
with large payloads (`--point-kb` each, `--size-mb` in total) is built in the double, snapshotted by
the double and uploaded to moto by the qdrant_snapshot module (state s3_upload). Then, `--runs`
times, qdrant_restore runs as its own process (the module file executed directly with a JSON args
file, with the collection on PYTHONPATH) and restores the backup into a fresh collection by
streamed download + multipart upload. The module process's peak RSS is the kernel's high-water mark
VmHWM of that process, read from /proc/self/status by an atexit hook of a two-line launcher when the
module exits. (ru_maxrss from wait4 is not used: Linux carries the parent's high-water mark over
fork+exec, so the child would report at least this script's own RSS.) The upload module's peak RSS
is reported too. Prints JSON with per-run figures and medians.

    python -m bench.bench_restore [--size-mb 1024] [--point-kb 1024] [--runs 3] [--recover-via upload]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.stack import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, moto_s3, qdrant_double  # noqa: E402

MODULES = ROOT / "collections" / "ansible_collections" / "aegis" / "rag" / "plugins" / "modules"
TARGET_MB = 150
BUCKET = "aegis-bench-restore"
SOURCE = "bench_source"


def build_collection(qdrant_url: str, size_mb: int, point_kb: int) -> int:
    """A collection of ceil(size/point) points whose payload `blob` is point_kb KiB of text."""
    points = max(1, (size_mb * 1024) // point_kb)
    with httpx.Client(base_url=qdrant_url, timeout=600) as client:
        client.put(f"/collections/{SOURCE}", json={"vectors": {"size": 4, "distance": "Cosine"}}).raise_for_status()
        batch = max(1, (16 * 1024) // point_kb)  # ~16 MiB per request
        for start in range(0, points, batch):
            chunk = [{"id": i + 1, "vector": [1.0, 0.5, 0.25, float(i % 7)],
                      "payload": {"n": i, "blob": (f"{i:08d}" * (point_kb * 128))[: point_kb * 1024]}}
                     for i in range(start, min(points, start + batch))]
            client.put(f"/collections/{SOURCE}/points", params={"wait": "true"},
                       json={"points": chunk}).raise_for_status()
    return points


# Runs the module file as __main__ and, when it exits (exit_json/fail_json call sys.exit), writes the
# process's VmHWM (peak RSS, KiB) to the file named by argv[2].
LAUNCHER = """
import atexit, runpy, sys
module, hwm_file, args_file = sys.argv[1:4]
def hwm():
    with open('/proc/self/status') as fh:
        kib = next(line.split()[1] for line in fh if line.startswith('VmHWM:'))
    with open(hwm_file, 'w') as out:
        out.write(kib)
atexit.register(hwm)
sys.argv = [module, args_file]
runpy.run_path(module, run_name='__main__')
"""


def run_module(name: str, args: dict, workdir: Path) -> tuple[dict, float, float]:
    """Run a module in its own process; returns (result, peak RSS MiB, wall seconds)."""
    args_file = workdir / f"{name}-args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    hwm_file = workdir / f"{name}-hwm"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "collections"))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(MODULES / f"{name}.py"), str(hwm_file),
                           str(args_file)], capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.monotonic() - t0
    try:
        result = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        raise SystemExit(f"{name} printed no JSON (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}") from None
    if result.get("failed"):
        raise SystemExit(f"{name} failed: {result.get('msg')}")
    return result, int(hwm_file.read_text()) / 1024.0, wall


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "runs": [round(v, 2) for v in values]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024, help="snapshot payload size in MiB (default 1024)")
    ap.add_argument("--point-kb", type=int, default=1024, help="payload size of one point in KiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--recover-via", choices=["upload", "url"], default="upload")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (printed) for inspection")
    opts = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    qdrant = qdrant_double(work, api_key=None, extra=("--optimize-seconds", "0.2"))
    s3 = moto_s3(work)
    try:
        qdrant.start(timeout=60)
        s3.start(timeout=60)
        connection = {"qdrant_url": qdrant.url, "s3_endpoint_url": s3.url, "region": S3_REGION,
                      "access_key": S3_ACCESS_KEY, "secret_key": S3_SECRET_KEY}
        boto3.client("s3", endpoint_url=s3.url, region_name=S3_REGION, aws_access_key_id=S3_ACCESS_KEY,
                     aws_secret_access_key=S3_SECRET_KEY).create_bucket(Bucket=BUCKET)
        t0 = time.monotonic()
        points = build_collection(qdrant.url, opts.size_mb, opts.point_kb)
        build_s = time.monotonic() - t0
        staging = work / "staging"
        staging.mkdir()
        upload, upload_rss, upload_s = run_module("qdrant_snapshot", dict(
            connection, collection=SOURCE, state="s3_upload", bucket=BUCKET, tmp_dir=str(staging),
            wait_timeout=3600), work)
        size = upload["snapshot"]["size"]

        rss, wall, steps = [], [], {}
        for i in range(opts.runs):
            target = f"bench_restore_{i}"
            result, peak, seconds = run_module("qdrant_restore", dict(
                connection, collection=target, source_collection=SOURCE, bucket=BUCKET, tmp_dir=str(staging),
                recover_via=opts.recover_via, wait_timeout=3600), work)
            if result["points_count"] != points:
                raise SystemExit(f"run {i}: restored {result['points_count']} points, expected {points}")
            if any(staging.iterdir()):
                raise SystemExit(f"run {i}: the module left files in {staging}: {list(staging.iterdir())}")
            rss.append(peak)
            wall.append(seconds)
            for step, value in result["durations"].items():
                steps.setdefault(step, []).append(value)
            httpx.delete(f"{qdrant.url}/collections/{target}", timeout=600).raise_for_status()

        report = {
            "benchmark": "qdrant_restore peak RSS",
            "snapshot_bytes": size, "points": points, "point_kb": opts.point_kb,
            "recover_via": opts.recover_via, "runs": opts.runs,
            "restore_peak_rss_mb": summary(rss),
            "restore_wall_s": summary(wall),
            "restore_step_s": {k: summary(v) for k, v in steps.items()},
            "upload_peak_rss_mb": round(upload_rss, 2), "upload_wall_s": round(upload_s, 2),
            "build_collection_s": round(build_s, 2),
            "target_mb": TARGET_MB,
            "meets_target": max(rss) < TARGET_MB,
            "python": sys.version.split()[0],
        }
        print(json.dumps(report, indent=2))
        return 0 if report["meets_target"] else 1
    finally:
        qdrant.stop()
        s3.stop()
        if opts.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
