"""The machine-wide lock of a scenario (tests/molecule/conftest.py, and the Makefile's fleet targets through
flock(1)): a second run waits for the first and says who holds the lock; a dead holder frees it. No containers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from tests.molecule.conftest import lock_path, scenario_lock


@pytest.fixture
def scenario():
    name = f"lock-test-{uuid.uuid4().hex[:8]}"  # never a real scenario: a real run on the other worker is untouched
    yield name
    lock_path(name).unlink(missing_ok=True)


def test_a_second_run_waits_for_the_lock_and_names_it(scenario):
    # as `make fleet` holds it: flock(1) and its command (which inherits the lock) in a group of their own
    holder = subprocess.Popen(["flock", str(lock_path(scenario)), "sleep", "30"], start_new_session=True)
    try:
        for _ in range(100):
            if lock_path(scenario).exists():
                break
            time.sleep(0.05)
        time.sleep(0.2)
        with pytest.raises(TimeoutError, match=f"another run of the {scenario} scenario has held"), \
                scenario_lock(scenario, wait_s=1.5):
            pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    with scenario_lock(scenario, wait_s=5):  # the holders died: the kernel released the lock
        taken = subprocess.run(["flock", "--nonblock", str(lock_path(scenario)), "true"], check=False)
        assert taken.returncode == 1  # held by us now
