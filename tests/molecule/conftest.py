"""Shared by the Molecule scenario runs (test_scenarios.py, test_fleet_scenario.py): podman usable and the test
hosts' base image in place, and `molecule test -s <scenario>` run from the repository root. Skips only where
podman cannot run at all, and never in CI (CI set): there a missing podman is a failure."""

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


def molecule_test(scenario: str, timeout_s: int) -> None:
    """`molecule test -s scenario` passes; on failure the assertion shows the end of its output."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    run = subprocess.run([str(VENV_BIN / "molecule"), "test", "-s", scenario], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False, timeout=timeout_s)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"molecule test -s {scenario} failed:\n{output[-12000:]}"
