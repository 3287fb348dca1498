"""aegis.rag.schedules turns each RRULE of awx/aegis.yml into a systemd OnCalendar that fires at the same times.

Runs the role's preflight (the conversion) through ansible-playbook, then asks systemd-analyze for the next
elapses of each OnCalendar and compares them with the RRULE's runs (dateutil). No Molecule host here: the
units themselves are not installed by these tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.awx.conftest import DATA_FILE, REPO, load_data, write_data
from tests.awx.test_data_file import DOC_REFERENCE, next_runs

VENV_BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


def converted_units(tmp_path: Path, data_file: Path = DATA_FILE) -> tuple[int, str, list[dict]]:
    play = tmp_path / "convert.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: aegis.rag.schedules\n        tasks_from: preflight\n"
        "    - ansible.builtin.debug:\n        var: _schedules_units\n")
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(play),
                           "-e", f"schedules_data_file={data_file}"], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    units = []
    if proc.returncode == 0:
        tasks = json.loads(proc.stdout[proc.stdout.find("{"):])["plays"][0]["tasks"]
        units = tasks[-1]["hosts"]["localhost"]["_schedules_units"]
    return proc.returncode, proc.stdout, units


def systemd_elapses(calendar: str, count: int = 3) -> list[str]:
    proc = subprocess.run(["systemd-analyze", "calendar", f"--iterations={count}",
                           "--base-time=" + DOC_REFERENCE.strftime("%Y-%m-%d %H:%M:%S UTC"), calendar],
                          capture_output=True, text=True, check=True, timeout=30)
    return re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d):\d\d", proc.stdout)


def test_every_scheduled_job_becomes_a_timer_firing_at_its_rrules_times(tmp_path):
    rc, out, units = converted_units(tmp_path)
    assert rc == 0, out[-4000:]
    jobs = {job["name"]: job for job in load_data()["job_templates"] if "schedule" in job}
    assert sorted(unit["job"]["name"] for unit in units) == sorted(jobs)
    for unit in units:
        rrule = jobs[unit["job"]["name"]]["schedule"]["rrule"]
        assert systemd_elapses(unit["calendar"]) == next_runs(rrule, DOC_REFERENCE), (unit["name"], unit["calendar"])
    assert len({unit["name"] for unit in units}) == len(units)


def test_an_rrule_systemd_cannot_express_is_refused_with_the_jobs_name(tmp_path):
    data = load_data()
    data["job_templates"][1]["schedule"]["rrule"] = "DTSTART;TZID=UTC:20250101T013000 RRULE:FREQ=DAILY;INTERVAL=2"
    rc, out, _ = converted_units(tmp_path, write_data(tmp_path / "aegis.yml", data))
    assert rc != 0
    assert '\\"Aegis backup\\": cannot turn' in out and "INTERVAL=2" in out  # the msg, JSON-escaped
