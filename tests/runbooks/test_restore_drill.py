"""playbooks/restore_drill.yml: the newest backup restored into a scratch collection and compared with
the live one, in a report; the scratch collection never stays."""

from __future__ import annotations

import pytest

from tests.collection.qdrant_helpers import Rest

pytestmark = pytest.mark.slow


@pytest.fixture
def backed_up(run_playbook, start_double, s3_bucket):
    service = start_double("qdrant")
    rest = Rest(service)
    rest.create("docs", sparse_vectors={"bm25": {"modifier": "idf"}})
    rest.upsert("docs", range(1, 41), blob="z" * 50)
    run_playbook("backup", hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket)
    return service, rest


def test_drill_matches_then_reports_a_difference(run_playbook, backed_up, s3_bucket):
    service, rest = backed_up
    dry = run_playbook("restore_drill", hosts={"qdrant-a": service}, check=True, aegis_backup_s3_bucket=s3_bucket)
    assert dry.host()["status"] == "would change" and rest.info("docs_restore_drill") is None
    assert dry.host()["tables"][0]["rows"][0][7] == "would restore"
    assert "would drop docs_restore_drill" in dry.host()["actions"]

    good = run_playbook("restore_drill", hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket,
                        aegis_restore_drill_sample=15)
    host = good.host()
    assert good.report["status"] == "ok" and host["findings"] == []
    [drill] = host["data"]["drills"]
    assert drill["backup_points"] == drill["restored_points"] == drill["live_points"] == 40
    assert drill["sample"] == 15 and drill["differences"] == []
    assert host["tables"][0]["rows"][0][7] == "match"
    assert rest.info("docs_restore_drill") is None, "the scratch collection was left behind"
    assert "| docs |" in good.markdown and "| match |" in good.markdown

    # the live collection moves on after the backup: the strict drill fails and says how
    rest.upsert("docs", range(41, 46))
    rest.http.post("/collections/docs/points/payload", params={"wait": "true"},
                   json={"payload": {"text": "edited"}, "points": [1]}).raise_for_status()
    bad = run_playbook("restore_drill", hosts={"qdrant-a": service}, expect_failure=True,
                       aegis_backup_s3_bucket=s3_bucket, aegis_restore_drill_sample=40)
    [finding] = bad.host()["findings"]
    assert finding == "docs: point count: backup 40, live 45; point 1: payload differs"
    assert bad.host()["data"]["drills"][0]["live_points"] == 45
    assert rest.info("docs_restore_drill") is None
    assert len(rest.points("docs")) == 45, "the live collection was changed"


def test_drill_without_backup_fails(run_playbook, start_double, s3_bucket):
    service = start_double("qdrant")
    Rest(service).create("lonely")
    out = run_playbook("restore_drill", hosts={"qdrant-a": service}, expect_failure=True,
                       aegis_backup_s3_bucket=s3_bucket)
    assert out.host()["findings"] == [f"lonely: no backup found under s3://{s3_bucket}/qdrant/qdrant-a/lonely/"]
