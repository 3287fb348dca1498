"""playbooks/backup.yml against a fresh Qdrant double and moto S3: keys and checksums, the retention
policy, loud failures, check mode, and the reports."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.collection.qdrant_helpers import Rest

pytestmark = pytest.mark.slow

PREFIX = "qdrant/qdrant-a"


@pytest.fixture
def node(start_double):
    """A fresh Qdrant double holding two collections (12 and 30 points)."""
    service = start_double("qdrant")
    rest = Rest(service)
    for name, count in (("docs", 12), ("faq", 30)):
        rest.create(name)
        rest.upsert(name, range(1, count + 1), blob="y" * 100)
    return service, rest


def keys(s3, bucket):
    return sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", []))


def test_backup_uploads_every_collection_with_checksums_then_second_run_keeps_both(run_playbook, node, s3,
                                                                                  s3_bucket):
    service, rest = node
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    first = run_playbook("backup", hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket)

    stored = keys(s3, s3_bucket)
    assert [k.rsplit("/", 1)[0] for k in stored] == [f"{PREFIX}/docs/{today}", f"{PREFIX}/faq/{today}"]
    client = s3.client()
    for key, points in zip(stored, (12, 30)):
        head = client.head_object(Bucket=s3_bucket, Key=key)
        assert head["Metadata"]["points-count"] == str(points) and len(head["Metadata"]["sha256"]) == 64
    host = first.host()
    assert first.report["status"] == "changed" and host["status"] == "changed"
    assert {row[0]: (row[1], row[2]) for row in host["tables"][0]["rows"]} == {
        "docs": ("uploaded", stored[0]), "faq": ("uploaded", stored[1])}
    assert host["data"]["deleted"] == [] and host["findings"] == []
    assert f"| docs | uploaded | {stored[0]} |" in first.markdown

    # a second run the same day adds a second backup per collection; within retention nothing goes
    second = run_playbook("backup", hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket)
    again = keys(s3, s3_bucket)
    assert len(again) == 4 and set(stored) <= set(again)
    assert second.host()["data"]["deleted"] == []
    newest = {row[0]: row[2] for row in second.host()["tables"][0]["rows"]}
    assert set(newest.values()) == set(again) - set(stored)


def test_retention_prunes_old_backups_and_check_mode_changes_nothing(run_playbook, node, s3, s3_bucket):
    service, rest = node
    client = s3.client()
    old_keys = [f"{PREFIX}/docs/20200101/docs-1-2020-01-01-02-00-00.snapshot",
                f"{PREFIX}/docs/20200102/docs-1-2020-01-02-02-00-00.snapshot"]
    for key in old_keys:
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"old" * 1000, Metadata={"sha256": "0" * 64})
    before = keys(s3, s3_bucket)
    snapshots_before = rest.snapshots("docs")

    dry = run_playbook("backup", hosts={"qdrant-a": service}, check=True, aegis_backup_s3_bucket=s3_bucket,
                       aegis_backup_keep_last=1, aegis_backup_max_age="7d")
    assert keys(s3, s3_bucket) == before and rest.snapshots("docs") == snapshots_before
    assert dry.report["check_mode"] is True and dry.host()["status"] == "would change"
    # check mode uploads nothing, so keep_last=1 still protects the newest existing backup
    assert dry.host()["data"]["deleted"] == old_keys[:1]
    assert [row[1] for row in dry.host()["tables"][0]["rows"]] == ["would upload", "would upload"]
    assert any(a.startswith("would snapshot docs (12 points)") for a in dry.host()["actions"])

    real = run_playbook("backup", hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket,
                        aegis_backup_keep_last=1, aegis_backup_max_age="7d")
    assert real.host()["data"]["deleted"] == old_keys
    assert not set(old_keys) & set(keys(s3, s3_bucket)) and len(keys(s3, s3_bucket)) == 2
    assert f"delete (retention) s3://{s3_bucket}/{old_keys[0]}" in real.host()["actions"]


def test_missing_backup_fails_loudly_with_a_report(run_playbook, node, s3, s3_bucket):
    """Qdrant refuses to create the snapshot of one collection: the other is still backed up, the report
    names the failure, and the run fails; nothing is pruned."""
    service, _ = node
    service.faults.add(path="^/collections/faq/snapshots$", method="POST", error_rate=1.0, status=500,
                       body={"status": {"error": "No space left on device"}})
    out = run_playbook("backup", hosts={"qdrant-a": service}, expect_failure=True, aegis_backup_s3_bucket=s3_bucket)
    host = out.host()
    assert out.report["status"] == "failed" and host["status"] == "failed"
    assert len(host["findings"]) == 1 and host["findings"][0].startswith("faq: ")
    assert "No space left on device" in host["findings"][0]
    assert {row[0]: row[1] for row in host["tables"][0]["rows"]} == {"docs": "uploaded", "faq": "FAILED"}
    assert "backup failed on qdrant-a: 1 of 2 collections failed" in out.stdout
    assert [k.split("/")[2] for k in keys(s3, s3_bucket)] == ["docs"]


def test_verify_only_finds_a_short_backup(run_playbook, node, s3, s3_bucket):
    """A backup truncated in S3 after its upload (same metadata, fewer bytes) is caught by the
    verify-only run, which compares it with the snapshot Qdrant still holds."""
    service, _ = node
    run_playbook("backup", hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket)
    ok = run_playbook("backup", hosts={"qdrant-a": service}, aegis_backup_s3_bucket=s3_bucket,
                      aegis_backup_verify_only=True)
    assert ok.host()["status"] == "ok" and {row[1] for row in ok.host()["tables"][0]["rows"]} == {"verified"}

    client = s3.client()
    key = next(k for k in keys(s3, s3_bucket) if "/faq/" in k)
    head = client.head_object(Bucket=s3_bucket, Key=key)
    body = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    client.put_object(Bucket=s3_bucket, Key=key, Body=body[: len(body) // 2], Metadata=head["Metadata"])
    short = run_playbook("backup", hosts={"qdrant-a": service}, expect_failure=True, aegis_backup_s3_bucket=s3_bucket,
                         aegis_backup_verify_only=True)
    finding = short.host()["findings"]
    assert len(finding) == 1 and finding[0].startswith(f"faq: short: {key} has {len(body) // 2} bytes")
    assert keys(s3, s3_bucket) == sorted(keys(s3, s3_bucket)) and len(keys(s3, s3_bucket)) == 2
