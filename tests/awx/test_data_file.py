"""awx/aegis.yml, the one scheduling data file: paths, surveys, RRULEs and the documented cadence table."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from ansible_collections.awx.awx.plugins.lookup.schedule_rrule import LookupModule
from dateutil import rrule as du_rrule
from dateutil import tz

from tests.awx.conftest import REPO, load_data
from tests.doubles.awx import ApiError, parse_rrule, validate_rrule, validate_survey

DATA = load_data()
JOBS = [DATA["job_template_defaults"] | job for job in DATA["job_templates"]]
COLLECTION = REPO / "collections" / "ansible_collections" / "aegis" / "rag"
SCHEDULING_DOC = REPO / "docs" / "operations" / "scheduling.md"
DOC_REFERENCE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)  # the doc's "next runs after" moment
LOOKUP_FREQUENCIES = {du_rrule.HOURLY: "hour", du_rrule.DAILY: "day", du_rrule.WEEKLY: "week",
                      du_rrule.MONTHLY: "month", du_rrule.MINUTELY: "minute"}
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
SET_POSITIONS = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}


def by_name(jobs):
    return pytest.mark.parametrize("job", jobs, ids=[job["name"] for job in jobs])


SCHEDULED = [job for job in JOBS if "schedule" in job]


def play_text(playbook: Path, seen: set[Path] | None = None) -> str:
    """A playbook with everything it imports: collection playbooks, task files and the roles it uses."""
    seen = seen if seen is not None else set()
    if playbook in seen or not playbook.is_file():
        return ""
    seen.add(playbook)
    text = playbook.read_text()
    parts = [text]
    for name in re.findall(r"import_playbook:\s*aegis\.rag\.(\w+)", text):
        parts.append(play_text(COLLECTION / "playbooks" / f"{name}.yml", seen))
    for rel in re.findall(r"(?:import_tasks|include_tasks|import_playbook|file):\s*['\"]?([\w./-]+\.ya?ml)", text):
        parts.append(play_text((playbook.parent / rel).resolve(), seen))
    for rel in re.findall(r"^\s*-\s*(vars/[\w./-]+\.ya?ml)\s*$", text, re.MULTILINE):  # vars_files entries
        parts.append(play_text((playbook.parent / rel).resolve(), seen))
    for role in set(re.findall(r"aegis\.rag\.(\w+)", text)):
        role_dir = COLLECTION / "roles" / role
        if role_dir.is_dir() and role_dir not in seen:
            seen.add(role_dir)
            parts += [path.read_text() for path in sorted(role_dir.rglob("*.y*ml"))]
    return "\n".join(parts)


def lookup_arguments(rrule_text: str) -> tuple[str, dict]:
    """The awx.awx.schedule_rrule lookup's arguments that describe this RRULE (read back with dateutil)."""
    rule = parse_rrule(rrule_text)._rrule[0]
    tzid = re.search(r"DTSTART;TZID=([^:]+):", rrule_text).group(1)
    kwargs = {"start_date": rule._dtstart.strftime("%Y-%m-%d %H:%M:%S"), "timezone": tzid}
    if rule._interval != 1:
        kwargs["every"] = rule._interval
    frequency = LOOKUP_FREQUENCIES[rule._freq]
    if frequency == "week" and rule._byweekday:
        kwargs["on_days"] = ",".join(WEEKDAYS[day] for day in sorted(rule._byweekday))
    if frequency == "month" and rule._bysetpos:
        kwargs["on_the"] = f"{SET_POSITIONS[rule._bysetpos[0]]} {WEEKDAYS[rule._byweekday[0]]}"
    elif frequency == "month" and rule._bymonthday:
        kwargs["month_day_number"] = str(rule._bymonthday[0])
    return frequency, kwargs


def next_runs(rrule_text: str, after: dt.datetime, count: int = 3) -> list[str]:
    ruleset, runs, moment = parse_rrule(rrule_text), [], after
    for _ in range(count):
        moment = ruleset.after(moment)
        runs.append(moment.strftime("%Y-%m-%d %H:%M"))
    return runs


def cadence_table() -> dict[str, dict[str, str]]:
    """The rows of the cadence table in docs/operations/scheduling.md, by job template name."""
    lines = SCHEDULING_DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Job template |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


@by_name(JOBS)
def test_playbook_exists(job):
    assert (REPO / job["playbook"]).is_file(), f"{job['name']}: {job['playbook']} does not exist"


@by_name([job for job in JOBS if "survey" in job])
def test_survey_variables_are_used_by_the_playbook(job):
    text = play_text(REPO / job["playbook"])
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))  # not the headers
    unused = [q["variable"] for q in job["survey"]["spec"] if not re.search(rf"\b{q['variable']}\b", code)]
    assert not unused, f"{job['name']}: {job['playbook']} never reads {unused}"


@by_name([job for job in JOBS if "survey" in job])
def test_survey_is_one_awx_accepts(job):
    assert validate_survey(job["survey"]) is None


@by_name(SCHEDULED)
def test_schedule_answers_only_survey_questions(job):
    questions = {q["variable"] for q in job.get("survey", {}).get("spec", [])}
    assert set(job["schedule"].get("extra_data", {})) <= questions


@by_name(SCHEDULED)
def test_rrule_has_an_explicit_time_zone_and_parses(job):
    text = job["schedule"]["rrule"]
    tzid = re.match(r"DTSTART;TZID=([^:]+):\d{8}T\d{6} RRULE:", text)
    assert tzid, f"{job['name']}: {text!r} has no DTSTART;TZID=<zone>"
    first = next(iter(parse_rrule(text)))
    assert tz.gettz(tzid.group(1)) is not None, f"{tzid.group(1)} is no time zone dateutil knows"
    assert first.tzinfo == tz.gettz(tzid.group(1))


@by_name(SCHEDULED)
def test_rrule_is_what_the_collections_lookup_writes(job):
    """The same string awx.awx.schedule_rrule produces for the rule's frequency, start, days and zone."""
    text = job["schedule"]["rrule"]
    frequency, kwargs = lookup_arguments(text)
    assert LookupModule().get_rrule(frequency, kwargs) == text


@by_name(SCHEDULED)
def test_rrule_passes_awxs_validation(job):
    validate_rrule(job["schedule"]["rrule"])


def test_awx_validation_refuses_a_naive_start():
    with pytest.raises(ApiError) as refused:
        validate_rrule("DTSTART:20250101T013000 RRULE:FREQ=DAILY;INTERVAL=1")
    assert "DTSTART cannot be a naive datetime" in str(refused.value.body["rrule"])


@by_name(SCHEDULED)
def test_next_runs_are_the_documented_ones(job):
    row = cadence_table().get(job["name"])
    assert row is not None, f"{SCHEDULING_DOC.name} has no cadence row for {job['name']}"
    assert row["RRULE"] == job["schedule"]["rrule"]
    assert row["Playbook"] == job["playbook"]
    documented = [run.strip() for run in row["First runs after 2026-01-01 00:00 UTC"].split(",")]
    assert documented == next_runs(job["schedule"]["rrule"], DOC_REFERENCE)


def test_every_documented_row_is_a_job():
    assert set(cadence_table()) == {job["name"] for job in SCHEDULED}


@by_name(JOBS)
def test_references_resolve(job):
    credentials = {c["name"] for c in DATA["credentials"]}
    notifications = {n["name"] for n in DATA["notification_templates"]}
    assert set(job["credentials"]) <= credentials
    assert set(job["notify_error"] + job["notify_success"]) <= notifications
    assert job["inventory"] in {i["name"] for i in DATA["inventories"]}


def test_inventory_sources_exist():
    for inventory in DATA["inventories"]:
        assert (REPO / inventory["source_path"]).is_file(), inventory


def test_credential_types_used_by_credentials_are_defined_or_built_in():
    known = {t["name"] for t in DATA["credential_types"]} | {"Machine", "Vault"}
    assert {c["credential_type"] for c in DATA["credentials"]} <= known
