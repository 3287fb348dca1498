"""qdrant_restore through ansible-playbook: backups made by qdrant_snapshot in moto S3, restored into
the Qdrant double; the restored points are compared with the originals (ids, payloads, vectors)."""

from __future__ import annotations

import pytest

from tests.collection.qdrant_helpers import Rest, assert_same_vectors, play

pytestmark = pytest.mark.slow


def restore(**args):
    return {"name": "restore", "aegis.rag.qdrant_restore": args}


@pytest.fixture
def staging(tmp_path):
    path = tmp_path / "staging"
    path.mkdir()
    return path


@pytest.fixture
def backed_up(run_tasks, qdrant, s3, s3_bucket, collection_name):
    """A collection of 25 points backed up to S3 by the snapshot module; returns (rest, payloads by id,
    upload result). The vectors are kept in rest.original_vectors."""
    rest = Rest(qdrant)
    rest.create(collection_name, sparse_vectors={"bm25": {"modifier": "idf"}})
    rest.upsert(collection_name, range(1, 26), blob="x" * 200)
    up = run_tasks([{"aegis.rag.qdrant_snapshot": {"collection": collection_name, "state": "s3_upload",
                                                   "bucket": s3_bucket}}], play=play(qdrant, s3)).result(0)
    assert up["changed"] is True
    rest.original_vectors = rest.vectors(collection_name)
    return rest, rest.points(collection_name), up


def test_backup_then_restore_into_emptied_collection(run_tasks, qdrant, s3, s3_bucket, collection_name,
                                                     backed_up, staging):
    rest, original, up = backed_up
    rest.delete_all_points(collection_name)
    assert rest.points(collection_name) == {}
    snapshots_before = rest.snapshots(collection_name)

    out = run_tasks([restore(collection=collection_name, bucket=s3_bucket, tmp_dir=str(staging))], diff=True,
                    play=play(qdrant, s3)).result(0)
    assert out["changed"] is True and out["key"] == up["key"] and out["sha256"] == up["sha256"]
    assert out["points_count"] == out["expected_points_count"] == 25
    assert rest.points(collection_name) == original
    assert_same_vectors(rest.vectors(collection_name), rest.original_vectors)
    assert out["diff"]["before"]["points_count"] == 0 and out["diff"]["after"]["points_count"] == 25
    # the (empty) collection existed, so a safety snapshot was taken first and is still there
    assert out["safety_snapshot_taken"] is True and out["safety_snapshot"] not in snapshots_before
    assert out["safety_snapshot"] in rest.snapshots(collection_name)
    assert set(out["durations"]) == {"download", "safety_snapshot", "recover", "wait", "total"}
    assert list(staging.iterdir()) == [], "the staged download was left behind"

    # the collection holds points now: running the same task again is refused without force
    again = run_tasks([restore(collection=collection_name, bucket=s3_bucket)], expect_failure=True,
                      play=play(qdrant, s3)).result(0)
    assert "holds 25 points; set force: true" in again["msg"]


def test_restore_by_presigned_url_into_new_collection(run_tasks, qdrant, s3, s3_bucket, collection_name, backed_up):
    rest, original, _ = backed_up
    target = collection_name + "_copy"
    out = run_tasks([restore(collection=target, source_collection=collection_name, bucket=s3_bucket,
                             recover_via="url", safety_snapshot=True)], play=play(qdrant, s3)).result(0)
    assert out["changed"] is True and out["points_count"] == 25
    assert out["safety_snapshot"] is None and out["safety_snapshot_taken"] is False  # nothing to protect
    assert "download" not in out["durations"]
    assert rest.points(target) == original
    assert_same_vectors(rest.vectors(target), rest.original_vectors)


def test_check_mode_plans_without_downloading(run_tasks, qdrant, s3, s3_bucket, collection_name, backed_up,
                                              staging):
    """Check mode reads only the listing and the metadata: it plans a restore of an object whose bytes are
    corrupt (it cannot know), and the real run then refuses it on the checksum."""
    rest, original, up = backed_up
    client = s3.client()
    head = client.head_object(Bucket=s3_bucket, Key=up["key"])
    client.put_object(Bucket=s3_bucket, Key=up["key"], Body=b"corrupt" * 1000, Metadata=head["Metadata"])
    snapshots_before = rest.snapshots(collection_name)
    task = restore(collection=collection_name, bucket=s3_bucket, force=True, tmp_dir=str(staging))

    plan = run_tasks([task], check=True, diff=True, play=play(qdrant, s3)).result(0)
    assert plan["changed"] is True and plan["key"] == up["key"] and plan["size"] == 7000
    assert plan["sha256"] == up["sha256"] and plan["safety_snapshot_taken"] is True
    assert plan["plan"] == [f"download s3://{s3_bucket}/{up['key']} (7000 bytes)", f"verify sha256 {up['sha256']}",
                            f"safety snapshot of {collection_name}", f"recover {collection_name} by upload",
                            "wait for green", "check points_count == 25"]
    assert "durations" not in plan and list(staging.iterdir()) == []

    refused = run_tasks([task], expect_failure=True, play=play(qdrant, s3)).result(0)
    assert refused["msg"].startswith(f"checksum mismatch for s3://{s3_bucket}/{up['key']}")
    assert "nothing was restored" in refused["msg"]
    # untouched: same points, no safety snapshot, nothing staged
    assert rest.points(collection_name) == original
    assert rest.snapshots(collection_name) == snapshots_before and refused["safety_snapshot"] is None
    assert list(staging.iterdir()) == []


def test_overwrite_requires_force_then_restores_older_state(run_tasks, qdrant, s3, s3_bucket, collection_name,
                                                            backed_up):
    rest, original, _ = backed_up
    rest.upsert(collection_name, range(26, 31))  # newer data, not in the backup
    snapshots_before = rest.snapshots(collection_name)
    refused = run_tasks([restore(collection=collection_name, bucket=s3_bucket)], expect_failure=True,
                        play=play(qdrant, s3)).result(0)
    assert f"collection {collection_name} holds 30 points; set force: true" in refused["msg"]
    assert len(rest.points(collection_name)) == 30 and rest.snapshots(collection_name) == snapshots_before

    out = run_tasks([restore(collection=collection_name, bucket=s3_bucket, force=True, safety_snapshot=False)],
                    play=play(qdrant, s3)).result(0)
    assert out["changed"] is True and out["safety_snapshot"] is None and out["safety_snapshot_taken"] is False
    assert rest.points(collection_name) == original
    assert rest.snapshots(collection_name) == snapshots_before


def test_backup_date_and_newest(run_tasks, qdrant, s3, s3_bucket, collection_name, backed_up):
    rest, original, up = backed_up
    client = s3.client()
    old_key = f"qdrant/{collection_name}/20200101/{up['snapshot']['name']}"
    client.copy_object(Bucket=s3_bucket, Key=old_key, CopySource={"Bucket": s3_bucket, "Key": up["key"]})
    rest.upsert(collection_name, range(26, 36))
    # one play: the newer backup first, then the two restores
    tasks = [{"aegis.rag.qdrant_snapshot": {"collection": collection_name, "state": "s3_upload", "bucket": s3_bucket}},
             restore(collection=collection_name + "_old", source_collection=collection_name, bucket=s3_bucket,
                     backup_date="20200101"),
             restore(collection=collection_name + "_new", source_collection=collection_name, bucket=s3_bucket)]
    out = run_tasks(tasks, play=play(qdrant, s3))
    newer = out.result(0)
    assert newer["points_count"] == 35

    assert out.result(1)["key"] == old_key and out.result(1)["points_count"] == 25
    assert out.result(2)["key"] == newer["key"] and out.result(2)["points_count"] == 35
    assert rest.points(collection_name + "_old") == original

    missing = run_tasks([restore(collection=collection_name, bucket=s3_bucket, backup_date="20190101")],
                        expect_failure=True, play=play(qdrant, s3)).result(0)
    assert missing["msg"] == f"no backup found under s3://{s3_bucket}/qdrant/{collection_name}/20190101/"


def test_point_count_mismatch_fails_after_restore_naming_the_safety_snapshot(run_tasks, qdrant, s3, s3_bucket,
                                                                           collection_name, backed_up):
    rest, _, up = backed_up
    client = s3.client()
    head = client.head_object(Bucket=s3_bucket, Key=up["key"])
    client.copy_object(Bucket=s3_bucket, Key=up["key"], CopySource={"Bucket": s3_bucket, "Key": up["key"]},
                       Metadata=dict(head["Metadata"], **{"points-count": "99"}), MetadataDirective="REPLACE")
    out = run_tasks([restore(collection=collection_name, bucket=s3_bucket, force=True)], expect_failure=True,
                    play=play(qdrant, s3)).result(0)
    assert out["msg"] == f"restored collection {collection_name} has 25 points, the backup's metadata says 99"
    assert out["safety_snapshot"] in rest.snapshots(collection_name)


def test_object_without_checksum_metadata_is_refused(run_tasks, qdrant, s3, s3_bucket, collection_name):
    key = f"qdrant/{collection_name}/20250101/handmade.snapshot"
    s3.client().put_object(Bucket=s3_bucket, Key=key, Body=b"data")
    out = run_tasks([restore(collection=collection_name, bucket=s3_bucket)], expect_failure=True,
                    play=play(qdrant, s3)).result(0)
    assert out["msg"].startswith(f"s3://{s3_bucket}/{key} has no sha256 metadata")
    assert Rest(qdrant).info(collection_name) is None


def test_qdrant_failing_mid_restore_cleans_up(run_tasks, qdrant, s3, s3_bucket, collection_name, backed_up,
                                              staging):
    rest, original, _ = backed_up
    qdrant.faults.add(path=r"/snapshots/upload$", method="POST", status=500, error_rate=1.0,
                      body={"status": {"error": "Service internal error: disk full"}})
    out = run_tasks([restore(collection=collection_name, bucket=s3_bucket, force=True, tmp_dir=str(staging))],
                    expect_failure=True, play=play(qdrant, s3)).result(0)
    assert out["msg"].startswith(f"Qdrant request during the restore of {collection_name} failed: POST")
    assert "disk full" in out["msg"] and out["status"] == 500
    assert out["safety_snapshot"] in rest.snapshots(collection_name)  # the rollback point is reported
    assert list(staging.iterdir()) == []
    assert rest.points(collection_name) == original


def test_qdrant_down_fails_cleanly(run_tasks, qdrant, s3, s3_bucket, collection_name, backed_up, staging):
    qdrant.stop()
    out = run_tasks([restore(collection=collection_name, bucket=s3_bucket, tmp_dir=str(staging))],
                    expect_failure=True, play=play(qdrant, s3, timeout=2)).result(0)
    assert out["msg"].startswith(f"Qdrant request during the restore of {collection_name} failed: GET")
    assert out["status"] is None and "module_stderr" not in out
    assert list(staging.iterdir()) == []


BAD_PARAMETERS = [
    ({"backup_date": "2025-01-31"}, "backup_date must be YYYYMMDD, got '2025-01-31'"),
    ({"backup_date": "20250131", "key": "a/b"}, "parameters are mutually exclusive: key|backup_date"),
    ({"recover_via": "s3"}, "value of recover_via must be one of: upload, url"),
]
_bad_parameter_results: list[dict] = []


@pytest.mark.parametrize("args,message", BAD_PARAMETERS)
def test_bad_parameters(run_tasks, qdrant, s3, s3_bucket, collection_name, args, message):
    """Every case is a task of one play, made by the first of these tests (with its bucket) and read by all:
    ignore_errors lets each task run and fail on its own; each case's result must be its own failure."""
    if not _bad_parameter_results:
        tasks = [dict(restore(collection=collection_name, bucket=s3_bucket, **case), ignore_errors=True)
                 for case, _ in BAD_PARAMETERS]
        _bad_parameter_results.extend(run_tasks(tasks, play=play(qdrant, s3)).results)
    out = _bad_parameter_results[BAD_PARAMETERS.index((args, message))]
    assert out.get("failed") is True, out
    assert message in out["msg"]


def test_s3_down_fails_cleanly(run_tasks, qdrant, s3, collection_name, staging):
    rest = Rest(qdrant)
    rest.create(collection_name)
    s3.stop()  # the autouse reset starts it again after the test
    out = run_tasks([restore(collection=collection_name, bucket="aegis-any-bucket", tmp_dir=str(staging))],
                    expect_failure=True, play=play(qdrant, s3)).result(0)
    assert out["msg"].startswith(f"S3 request during the restore of {collection_name} failed: ")
    assert "Could not connect to the endpoint URL" in out["msg"] and "module_stderr" not in out
    assert rest.info(collection_name)["points_count"] == 0 and rest.snapshots(collection_name) == []
    assert list(staging.iterdir()) == []
