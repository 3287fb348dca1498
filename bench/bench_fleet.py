"""The fleet's deploy figures: a first and a second `site.yml` run, and a rolling upgrade and a rollback
of the API under a client loop, on Molecule's `default` scenario (five podman systemd hosts: load
balancer, two API hosts, Qdrant+Redis, Ollama; the Qdrant and Ollama servers are the stand-ins).

Method, per run: `molecule destroy`, `create`, `prepare` (untimed), then `molecule converge` twice, each
timed as a whole (the first installs everything; the second finds everything in place; the release
build cache under ~/.cache/aegis/molecule-artifacts is warm after the first run ever), then
molecule/default/unannounced_stop.yml and upgrade_rollback.yml (as tests/fleet runs them), whose client-loop steps
(molecule/default/tasks/under_client_loop.yml) record each playbook's duration and the loop's answered and failed
requests in the file named by AEGIS_FLEET_STEPS (bench/out/fleet-steps.jsonl). `molecule destroy` at the end
unless --keep. Prints JSON: every run and the medians. Never while another fleet run (tests/fleet, `make fleet`)
uses the same hosts.

With --converge-only the side effect is skipped. With --connections A B each run converges a new fleet once per
connection, in turn (A B A B ...: paired), Ansible reaching the hosts over that connection plugin
(AEGIS_MOLECULE_CONNECTION: podman_nsenter, the default, podman_pipelined, or containers.podman's podman); the medians are
per connection and the ratios pair each run's A with its B. Each converge's output, with a task profile
(ansible.posix.profile_tasks), is kept in bench/out/fleet-<connection>-<run>-<first|second>.log.

    python -m bench.bench_fleet [--runs 3] [--keep] [--converge-only] [--connections podman_nsenter podman]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from tests.fleet.conftest import SCENARIO, Fleet
from tests.molecule.conftest import ROOT, VENV_BIN, molecule_env, scenario_lock

CONNECTIONS = ["podman_nsenter", "podman_pipelined", "podman"]


RECORD = ROOT / "bench" / "out" / "fleet-steps.jsonl"


def molecule(command: str, connection: str = CONNECTIONS[0], log: Path | None = None) -> float:
    """Runs `molecule <command> -s default` from the repository root; returns its wall time in seconds."""
    env = {**molecule_env("default"), "AEGIS_MOLECULE_CONNECTION": connection,
           "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}
    started = time.monotonic()
    proc = subprocess.run([str(VENV_BIN / "molecule"), command, "-s", "default"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    took = round(time.monotonic() - started, 1)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"molecule {command} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return took


def steps(path: Path) -> list[dict]:
    """The recorded steps; `duration` ("H:MM:SS.ffffff", the playbook command's delta) becomes `seconds`."""
    found = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    for step in found:
        duration = step.pop("duration", None)
        hours, minutes, seconds = duration.split(":") if duration else (0, 0, 0)
        step["seconds"] = round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 1) if duration else None
    return found


def one_run(keep: bool, connection: str, converge_only: bool, name: str) -> dict:
    molecule("destroy")
    molecule("create")
    molecule("prepare")
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.unlink(missing_ok=True)
    first = molecule("converge", connection, RECORD.parent / f"fleet-{connection}-{name}-first.log")
    second = molecule("converge", connection, RECORD.parent / f"fleet-{connection}-{name}-second.log")
    if not converge_only:
        os.environ["AEGIS_FLEET_STEPS"] = str(RECORD)
        for playbook in ("unannounced_stop.yml", "upgrade_rollback.yml"):
            Fleet().playbook(SCENARIO / playbook, timeout_s=1800)
    if not keep:
        molecule("destroy")
    return {"connection": connection, "site_first_s": first, "site_second_s": second, "steps": steps(RECORD)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the last run's fleet up")
    parser.add_argument("--converge-only", action="store_true", help="no side effect (upgrade, rollback, ...)")
    parser.add_argument("--connections", nargs="+", default=CONNECTIONS[:1], choices=CONNECTIONS)
    args = parser.parse_args()
    last = args.runs * len(args.connections) - 1
    with scenario_lock("default"):  # the fleet's hosts, which tests/fleet and `make fleet` use too
        runs = [one_run(args.keep and n * len(args.connections) + i == last, connection, args.converge_only, str(n))
                for n in range(args.runs) for i, connection in enumerate(args.connections)]

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 1)

    if len(args.connections) > 1:
        first, second = args.connections[:2]
        pairs = list(zip(runs[0::len(args.connections)], runs[1::len(args.connections)]))
        print(json.dumps({"runs": [{k: v for k, v in r.items() if k != "steps"} for r in runs], "median": {
            c: {"site_first_s": median([r["site_first_s"] for r in runs if r["connection"] == c]),
                "site_second_s": median([r["site_second_s"] for r in runs if r["connection"] == c])}
            for c in args.connections},
            f"{first}_to_{second}": {
                "site_first": round(statistics.median([a["site_first_s"] / b["site_first_s"] for a, b in pairs]), 2),
                "site_second": round(statistics.median([a["site_second_s"] / b["site_second_s"] for a, b in pairs]), 2)}},
            indent=2))
        return

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
