"""playbooks/restore_drill.yml: the newest backup restored into a scratch collection and compared with
the live one, in a report; the scratch collection never stays. A drill that matches: the fleet's
test_the_backup_is_in_s3_and_the_restore_drill_matches_it_leaving_the_live_collection_alone."""

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


def test_check_mode_plans_the_drill_then_a_difference_is_reported(run_playbook, backed_up, s3_bucket):
    service, rest = backed_up
    dry = run_playbook("restore_drill", hosts={"qdrant-a": service}, check=True, aegis_backup_s3_bucket=s3_bucket)
    assert dry.host()["status"] == "would change" and rest.info("docs_restore_drill") is None
    assert dry.host()["tables"][0]["rows"][0][7] == "would restore"
    assert "would drop docs_restore_drill" in dry.host()["actions"]

    # the live collection moves on after the backup: the strict drill fails and says how
    rest.upsert("docs", range(41, 46))
    rest.http.post("/collections/docs/points/payload", params={"wait": "true"},
                   json={"payload": {"text": "edited"}, "points": [1]}).raise_for_status()
    bad = run_playbook("restore_drill", hosts={"qdrant-a": service}, expect_failure=True,
                       aegis_backup_s3_bucket=s3_bucket, aegis_restore_drill_sample=40)
    [finding] = bad.host()["findings"]
    assert finding == "docs: point count: backup 40, live 45; point 1: payload differs"
    assert bad.host()["data"]["drills"][0]["live_points"] == 45
    assert bad.host()["data"]["drills"][0]["sample"] == 40  # aegis_restore_drill_sample, not the default 20
    assert rest.info("docs_restore_drill") is None
    assert len(rest.points("docs")) == 45, "the live collection was changed"


def test_drill_without_backup_fails(run_playbook, start_double, s3_bucket):
    service = start_double("qdrant")
    Rest(service).create("lonely")
    out = run_playbook("restore_drill", hosts={"qdrant-a": service}, expect_failure=True,
                       aegis_backup_s3_bucket=s3_bucket)
    assert out.host()["findings"] == [f"lonely: no backup found under s3://{s3_bucket}/qdrant/qdrant-a/lonely/"]
