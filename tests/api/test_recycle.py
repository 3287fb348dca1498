"""Worker recycling (aegis_rag/api/recycle.py): a worker past its request limit exits only while every other worker
of the host serves, so a host never stops answering, nor loses more than one worker, because its workers reached the
limit together."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from aegis_rag.api import recycle
from aegis_rag.api.recycle import Recycler


@pytest.fixture
def live_pids() -> Iterator[list[int]]:
    """Pids of processes alive for the test (other workers of the host)."""
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(5)]
    yield [p.pid for p in procs]
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """recycle.py's clock, moved by the test."""
    now = [1000.0]
    monkeypatch.setattr(recycle.time, "monotonic", lambda: now[0])
    return now


def worker(folder, pid, stops: list, limit: int = 3, workers: int = 2) -> Recycler:
    w = Recycler(folder, limit, 0, workers, stop=lambda: stops.append(pid), pid=pid)
    w.serving()
    return w


def test_two_workers_past_their_limit_together_never_both_leave(tmp_path, live_pids, clock):
    stops: list[int] = []
    first, second = (worker(tmp_path, pid, stops) for pid in live_pids[:2])
    for _ in range(3):
        first.request()
        second.request()
    assert stops == [live_pids[0]]  # the first went, the second saw no other worker serving and stayed
    assert not (tmp_path / f"serving-{live_pids[0]}").exists() and (tmp_path / f"serving-{live_pids[1]}").exists()

    second.request()  # asked again within the second: no new look
    clock[0] += 1
    second.request()
    assert stops == [live_pids[0]]  # still alone

    worker(tmp_path, live_pids[2], [])  # the first's replacement serves
    clock[0] += 1
    second.request()
    assert stops == [live_pids[0], live_pids[1]]
    second.request()
    assert stops == [live_pids[0], live_pids[1]]  # once


def test_of_four_workers_past_their_limit_one_recycles_at_a_time(tmp_path, live_pids, clock):
    stops: list[int] = []
    four = [worker(tmp_path, pid, stops, workers=4) for pid in live_pids[:4]]
    for _ in range(3):
        for w in four:
            w.request()
    assert stops == [live_pids[0]]  # three still served: not the last one, but one at a time all the same
    worker(tmp_path, live_pids[4], [], workers=4)  # its replacement serves
    clock[0] += 1
    for w in four[1:]:
        w.request()
    assert stops == [live_pids[0], live_pids[1]]


def test_a_worker_below_its_limit_stays(tmp_path, live_pids, clock):
    stops: list[int] = []
    one = worker(tmp_path, live_pids[0], stops, limit=5)
    worker(tmp_path, live_pids[1], stops)
    for _ in range(4):
        one.request()
    assert stops == []
    one.request()
    assert stops == [live_pids[0]]


def test_the_mark_of_a_dead_worker_does_not_count(tmp_path, live_pids, clock):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"serving-{dead.pid}").touch()
    (tmp_path / "serving-not-a-pid").touch()
    stops: list[int] = []
    one = worker(tmp_path, live_pids[0], stops, limit=1)
    one.request()
    assert stops == []


def test_a_worker_that_stops_takes_its_mark_away(tmp_path, live_pids, clock):
    stops: list[int] = []
    one = worker(tmp_path, live_pids[0], stops, limit=1)
    other = worker(tmp_path, live_pids[1], [])
    other.stopping()
    one.request()
    assert stops == []


def test_a_missing_folder_leaves_the_worker_serving(tmp_path, live_pids, clock, caplog):
    stops: list[int] = []
    one = worker(tmp_path / "shared", live_pids[0], stops, limit=1)
    worker(tmp_path / "shared", live_pids[1], [])
    (tmp_path / "shared" / f"serving-{live_pids[0]}").unlink()
    (tmp_path / "shared" / f"serving-{live_pids[1]}").unlink()
    (tmp_path / "shared").rmdir()
    one.request()
    assert stops == [] and "cannot recycle" in caplog.text


def test_the_jitter_adds_up_to_its_value():
    limits = {Recycler(None, 100, 5, 2).limit for _ in range(200)}
    assert limits <= set(range(100, 106)) and len(limits) > 1
