"""playbooks/awx_configure.yml with the real awx.awx modules against the AWX stand-in (tests/doubles/awx.py).

The tests of this module share one stand-in and run in order: create, unchanged second run, an edited
schedule, then bad input (each bad run must leave what exists untouched).
"""

from __future__ import annotations

import copy

import pytest

from tests.awx.conftest import load_data, write_data

pytestmark = pytest.mark.timeout(900)


def job_template(awx, name):
    (found,) = awx.standin.find("job_templates", name=name)
    return found


def schedule(awx, name):
    (found,) = awx.standin.find("schedules", name=name)
    return found


@pytest.fixture(scope="module")
def first_run(apply):
    return apply()


def test_first_run_creates_everything(first_run, awx):
    assert first_run.rc == 0, first_run.describe()
    assert first_run.changed > 0
    data = load_data()
    store = awx.standin.store
    (org,) = awx.standin.find("organizations", name="Aegis")
    (project,) = awx.standin.find("projects", name="Aegis")
    assert project["scm_url"] == "https://git.example.org/aegis.git" and project["organization"] == org["id"]
    for inventory in data["inventories"]:
        (inv,) = awx.standin.find("inventories", name=inventory["name"])
        (source,) = awx.standin.find("inventory_sources", inventory=inv["id"])
        assert (source["source"], source["source_path"], source["source_project"]) == (
            "scm", inventory["source_path"], project["id"])
    for job in data["job_templates"]:
        jt = job_template(awx, job["name"])
        assert (jt["playbook"], jt["project"], jt["allow_simultaneous"]) == (job["playbook"], project["id"], False)
        linked = [store.get("credentials", i)["name"] for i in store.linked("job_templates", jt["id"], "credentials")]
        assert sorted(linked) == sorted(job["credentials"])
        errors = store.linked("job_templates", jt["id"], "notification_templates_error")
        assert [store.get("notification_templates", i)["name"] for i in errors] == ["Aegis on-call"]
        assert store.surveys.get(jt["id"], {}) == job.get("survey", {})
        assert jt["survey_enabled"] is ("survey" in job)
        if "schedule" not in job:  # a runbook an operator launches on a symptom
            assert awx.standin.find("schedules", unified_job_template=jt["id"]) == []
            continue
        sched = schedule(awx, job["schedule"]["name"])
        assert sched["rrule"] == job["schedule"]["rrule"] and sched["unified_job_template"] == jt["id"]
        assert sched["timezone"] == "UTC" and sched["next_run"]


def test_secrets_come_from_the_vault_file_and_are_not_shown_back(first_run, awx):
    assert first_run.rc == 0, first_run.describe()
    (s3,) = awx.standin.find("credentials", name="Aegis S3")
    assert s3["inputs"]["secret_key"] == "$encrypted$" and s3["inputs"]["bucket"] == "aegis-backups"
    stored = awx.standin.store.get("credentials", s3["id"])["inputs"]
    assert stored["secret_key"] == "example-secret"
    assert "example-secret" not in first_run.stdout and "example-qdrant-key" not in first_run.stdout


def test_second_run_changes_nothing(first_run, apply, awx):
    assert first_run.rc == 0, first_run.describe()
    before = {kind: copy.deepcopy(objs) for kind, objs in awx.standin.store.objects.items()}
    again = apply()
    assert again.rc == 0, again.describe()
    assert again.changed == 0, again.describe()
    assert {kind: objs for kind, objs in awx.standin.store.objects.items() if kind != "project_updates"} == {
        kind: objs for kind, objs in before.items() if kind != "project_updates"}


def test_edited_schedule_is_updated(first_run, apply, awx, tmp_path):
    data = load_data()
    backup = next(job for job in data["job_templates"] if job["name"] == "Aegis backup")
    new_rule = "DTSTART;TZID=Europe/Berlin:20250101T003000 RRULE:FREQ=DAILY;INTERVAL=1"
    backup["schedule"]["rrule"] = new_rule
    edited = write_data(tmp_path / "aegis.yml", data)
    sched_id = schedule(awx, "Aegis backup nightly")["id"]
    jobs_only = ("--tags", "awx_jobs")  # the rest of the file is unchanged: test_second_run_changes_nothing

    checked = apply(edited, "--check", *jobs_only)
    assert checked.rc == 0, checked.describe()
    assert checked.changed_tasks == ["Schedules: Aegis backup nightly"], checked.describe()
    assert schedule(awx, "Aegis backup nightly")["rrule"] != new_rule

    result = apply(edited, *jobs_only)
    assert result.rc == 0, result.describe()
    assert result.changed_tasks == ["Schedules: Aegis backup nightly"], result.describe()
    updated = schedule(awx, "Aegis backup nightly")
    assert (updated["id"], updated["rrule"], updated["timezone"]) == (sched_id, new_rule, "Europe/Berlin")
    assert apply(edited, *jobs_only).changed == 0


def test_rrule_without_time_zone_is_refused_before_awx(apply, awx, tmp_path):
    data = load_data()
    data["job_templates"][1]["schedule"]["rrule"] = "DTSTART:20250101T013000Z RRULE:FREQ=DAILY;INTERVAL=1"
    before = awx.standin.find("schedules")
    result = apply(write_data(tmp_path / "aegis.yml", data))
    assert result.rc != 0
    assert 'job template "Aegis backup"' in result.failure, result.describe()
    assert "explicit time zone" in result.failure and "DTSTART:20250101T013000Z" in result.failure
    assert awx.standin.find("schedules") == before


def test_missing_playbook_is_refused_before_awx(apply, tmp_path):
    data = load_data()
    data["job_templates"][0]["playbook"] = "playbooks/no_such_runbook.yml"
    result = apply(write_data(tmp_path / "aegis.yml", data))
    assert result.rc != 0
    assert 'job template "Aegis health check"' in result.failure, result.describe()
    assert "needs an existing playbook (playbooks/no_such_runbook.yml)" in result.failure


def test_missing_vault_secret_is_named(apply, tmp_path):
    data = load_data()
    data["credentials"][2]["inputs_from_vault"]["secret_key"] = "vault_aegis_awx_not_in_the_vault"
    result = apply(write_data(tmp_path / "aegis.yml", data))
    assert result.rc != 0
    assert "lacks vault_aegis_awx_not_in_the_vault" in result.failure, result.describe()


def test_awx_refuses_an_rrule_without_interval(apply, awx, tmp_path):
    """The playbook's check passes (the zone is there); AWX's own RRULE rules refuse it, and say why."""
    data = load_data()
    data["job_templates"][2]["schedule"]["rrule"] = "DTSTART;TZID=UTC:20250105T030000 RRULE:FREQ=WEEKLY;BYDAY=SU"
    before = schedule(awx, "Aegis Qdrant maintenance weekly")
    result = apply(write_data(tmp_path / "aegis.yml", data), "--tags", "awx_jobs")
    assert result.rc != 0
    assert "Unable to update schedule" in result.failure or "INTERVAL required" in result.failure, result.describe()
    assert "INTERVAL required in rrule: RULE:FREQ=WEEKLY;BYDAY=SU" in result.failure
    assert schedule(awx, "Aegis Qdrant maintenance weekly")["rrule"] == before["rrule"]
