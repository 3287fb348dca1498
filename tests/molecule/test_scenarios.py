"""Runs each Molecule scenario (molecule/<name>/) on real systemd test hosts: podman containers from the
Debian image that scripts/testhosts.sh builds and caches. Skips only where podman cannot run at all,
and never in CI (CI set): there a missing podman is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
VENV_BIN = Path(sys.executable).parent
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))


def podman_problem() -> str | None:
    """Why podman cannot run containers here, or None."""
    podman = shutil.which("podman")
    if podman is None:
        return "podman is not installed (scripts/testhosts.sh installs it)"
    info = subprocess.run([podman, "info"], capture_output=True, text=True, check=False, timeout=120)
    if info.returncode != 0:
        return f"`podman info` failed: {info.stderr.strip()[-500:]}"
    return None


@pytest.fixture(scope="module")
def test_hosts():
    """podman usable and the base image in place (scripts/testhosts.sh is idempotent and quick once done)."""
    problem = podman_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Molecule scenarios, but {problem}")
        pytest.skip(problem)
    setup = subprocess.run([str(ROOT / "scripts" / "testhosts.sh")], capture_output=True, text=True,
                           check=False, timeout=1200)
    assert setup.returncode == 0, f"scripts/testhosts.sh failed:\n{setup.stdout}{setup.stderr}"


def test_every_tier_has_its_scenario():
    assert {"default", "datatier", "qdrant", "aegis_api", "loadbalancer"} <= set(SCENARIOS)


@pytest.mark.slow
@pytest.mark.timeout(3000)  # the fleet scenario (five hosts) takes ~25 min on a loaded 2-core machine
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(test_hosts, scenario):
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    run = subprocess.run([str(VENV_BIN / "molecule"), "test", "-s", scenario], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False, timeout=2900)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"molecule test -s {scenario} failed:\n{output[-12000:]}"
