"""The fleet's deploy figures: a first and a second `site.yml` run, and a rolling upgrade and a rollback
of the API under a client loop, on Molecule's `default` scenario (five podman systemd hosts: load
balancer, two API hosts, Qdrant+Redis, Ollama; the Qdrant and Ollama servers are the stand-ins).

Method, per run: `molecule destroy`, `create`, `prepare` (untimed), then `molecule converge` twice, each
timed as a whole (the first installs everything; the second finds everything in place; the release
build cache under ~/.cache/aegis/molecule-artifacts is warm after the first run ever), then
`molecule side-effect`, whose client-loop steps (molecule/default/tasks/under_client_loop.yml) record
each playbook's duration and the loop's answered and failed requests in the file named by
AEGIS_FLEET_STEPS (bench/out/fleet-steps.jsonl). `molecule destroy` at the end unless --keep. Prints JSON: every run and the medians.

    python -m bench.bench_fleet [--runs 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"


RECORD = ROOT / "bench" / "out" / "fleet-steps.jsonl"


def molecule(command: str) -> float:
    """Runs `molecule <command> -s default` from the repository root; returns its wall time in seconds."""
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "AEGIS_FLEET_STEPS": str(RECORD)}
    started = time.monotonic()
    proc = subprocess.run([str(VENV_BIN / "molecule"), command, "-s", "default"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"molecule {command} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return round(time.monotonic() - started, 1)


def steps(path: Path) -> list[dict]:
    """The recorded steps; `duration` ("H:MM:SS.ffffff", the playbook command's delta) becomes `seconds`."""
    found = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    for step in found:
        duration = step.pop("duration", None)
        hours, minutes, seconds = duration.split(":") if duration else (0, 0, 0)
        step["seconds"] = round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 1) if duration else None
    return found


def one_run(keep: bool) -> dict:
    molecule("destroy")
    molecule("create")
    molecule("prepare")
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.unlink(missing_ok=True)
    first = molecule("converge")
    second = molecule("converge")
    molecule("side-effect")
    if not keep:
        molecule("destroy")
    return {"site_first_s": first, "site_second_s": second, "steps": steps(RECORD)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the last run's fleet up")
    args = parser.parse_args()
    runs = [one_run(args.keep and n == args.runs - 1) for n in range(args.runs)]

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 1)

    by_step: dict[str, list[dict]] = {}
    for run in runs:
        for step in run["steps"]:
            by_step.setdefault(step["step"], []).append(step)
    print(json.dumps({
        "runs": runs,
        "median": {
            "site_first_s": median([r["site_first_s"] for r in runs]),
            "site_second_s": median([r["site_second_s"] for r in runs]),
            "second_to_first": round(statistics.median([r["site_second_s"] / r["site_first_s"] for r in runs]), 2),
            "steps": {name: {"seconds": median(timed) if (timed := [s["seconds"] for s in found if s["seconds"]]) else None,
                             "answered": sum(s["answered"] for s in found), "failed": sum(s["failed"] for s in found)}
                      for name, found in by_step.items()},
        },
    }, indent=2))


if __name__ == "__main__":
    main()
