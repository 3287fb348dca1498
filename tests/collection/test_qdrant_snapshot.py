"""qdrant_snapshot through ansible-playbook against the Qdrant double and moto S3."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.collection.qdrant_helpers import Rest, play

pytestmark = pytest.mark.slow


def task(name="snapshot", **args):
    return {"name": name, "aegis.rag.qdrant_snapshot": args}


@pytest.fixture
def seeded(qdrant, collection_name):
    rest = Rest(qdrant)
    rest.create(collection_name)
    rest.upsert(collection_name, range(1, 11))
    return rest


def test_present_absent_and_listing(run_tasks, qdrant, collection_name, seeded):
    defaults = play(qdrant)
    checked = run_tasks([task(collection=collection_name)], check=True, diff=True, play=defaults).result(0)
    assert checked["changed"] is True and checked["snapshot"] is None
    assert checked["diff"]["after"]["snapshots"] == ["(new snapshot)"]
    assert seeded.snapshots(collection_name) == [], "check mode created a snapshot"

    # one play: the snapshot (--diff), then the listing (no diff, a read: the snapshots stay as created)
    created_then_listed = run_tasks([task(collection=collection_name),
                                     {"aegis.rag.qdrant_collection_info": {"name": collection_name}, "diff": False}],
                                    diff=True, play=defaults)
    created, listed = created_then_listed.result(0), created_then_listed.result(1)
    snap = created["snapshot"]
    assert created["changed"] is True and snap["name"].startswith(collection_name)
    assert len(snap["checksum"]) == 64 and snap["size"] > 0
    assert seeded.snapshots(collection_name) == [snap["name"]]

    assert listed["changed"] is False and listed["collections"][0]["snapshots"] == [snap]

    absent = [task(collection=collection_name, state="absent", snapshot_name=snap["name"])]
    checked = run_tasks(absent, check=True, diff=True, play=defaults).result(0)
    assert checked["changed"] is True and checked["deleted"] == [snap["name"]]
    assert checked["diff"] == {"before": {"snapshots": [snap["name"]]}, "after": {"snapshots": []}}
    assert seeded.snapshots(collection_name) == [snap["name"]], "check mode deleted the snapshot"

    deleted_twice = run_tasks(absent + absent, play=defaults)  # one play: the deletion, then the same task again
    deleted, again = deleted_twice.result(0), deleted_twice.result(1)
    assert deleted["changed"] is True and seeded.snapshots(collection_name) == []
    assert again["changed"] is False and again["deleted"] == []


def test_prune_keeps_newest(run_tasks, qdrant, collection_name, seeded):
    names = [seeded.snapshot(collection_name)["name"] for _ in range(4)]  # the double spaces them >= 1 s apart
    defaults = play(qdrant)
    prune = [task(collection=collection_name, state="prune", keep_last=2)]

    checked = run_tasks(prune, check=True, diff=True, play=defaults).result(0)
    assert checked["changed"] is True and checked["deleted"] == names[:2]
    assert seeded.snapshots(collection_name) == sorted(names), "check mode pruned"

    # one play: the prune, the same prune again, then max_age alone (none of the last two deletes anything)
    pruned_again_young = run_tasks(prune + prune + [task(collection=collection_name, state="prune", max_age="1d")],
                                   play=defaults)
    pruned = pruned_again_young.result(0)
    assert pruned["deleted"] == names[:2] and seeded.snapshots(collection_name) == sorted(names[2:])
    assert pruned_again_young.result(1)["changed"] is False

    # max_age alone: all current snapshots are younger than a day, so nothing goes ...
    young = pruned_again_young.result(2)
    assert young["changed"] is False
    # ... and with a 1 s age limit and keep_last 1, only the newest stays
    time.sleep(1.1)
    old = run_tasks([task(collection=collection_name, state="prune", max_age="1s", keep_last=1)],
                    play=defaults).result(0)
    assert old["deleted"] == [names[2]] and seeded.snapshots(collection_name) == [names[3]]


def test_download_verified_atomic_idempotent(run_tasks, qdrant, collection_name, seeded, tmp_path):
    snap = seeded.snapshot(collection_name)
    dest_dir = tmp_path / "backups"
    dest_dir.mkdir()
    defaults = play(qdrant)
    download = [task(collection=collection_name, state="download", dest=str(dest_dir))]

    checked = run_tasks(download, check=True, diff=True, play=defaults).result(0)
    assert checked["changed"] is True and list(dest_dir.iterdir()) == []

    # one play: the download (--diff), then the same task again (no diff) finding the file in place
    got_twice = run_tasks(download + [dict(download[0], diff=False)], diff=True, play=defaults)
    got = got_twice.result(0)
    path = dest_dir / snap["name"]
    assert got["changed"] is True and got["dest"] == str(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == snap["checksum"] == got["sha256"]
    assert [p.name for p in dest_dir.iterdir()] == [snap["name"]], "a partial file was left behind"
    assert got_twice.result(1)["changed"] is False

    path.write_bytes(b"damaged")
    repaired = run_tasks(download, diff=True, play=defaults).result(0)
    assert repaired["changed"] is True and repaired["diff"]["before"]["sha256"] == hashlib.sha256(b"damaged").hexdigest()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == snap["checksum"]


def test_download_unknown_snapshot_or_missing_dir_fails(run_tasks, qdrant, collection_name, seeded, tmp_path):
    defaults = play(qdrant)
    out = run_tasks([task(collection=collection_name, state="download", snapshot_name="nope.snapshot",
                          dest=str(tmp_path))], expect_failure=True, play=defaults).result(0)
    assert out["msg"] == f"snapshot nope.snapshot not found in collection {collection_name} (existing: none)"
    seeded.snapshot(collection_name)
    out = run_tasks([task(collection=collection_name, state="download", dest=str(tmp_path / "no" / "f"))],
                    expect_failure=True, play=defaults).result(0)
    assert "does not exist" in out["msg"]


def test_s3_upload_layout_metadata_idempotence(run_tasks, qdrant, s3, s3_bucket, collection_name, seeded):
    defaults = play(qdrant, s3)
    client = s3.client()

    checked = run_tasks([task(collection=collection_name, state="s3_upload", bucket=s3_bucket, prefix="nightly")],
                        check=True, play=defaults).result(0)
    assert checked["changed"] is True and checked["key"] is None
    assert seeded.snapshots(collection_name) == [] and client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0

    up = run_tasks([task(collection=collection_name, state="s3_upload", bucket=s3_bucket, prefix="nightly")],
                   diff=True, play=defaults).result(0)
    snap = up["snapshot"]
    day = snap["creation_time"][:10].replace("-", "")
    assert up["changed"] is True and up["key"] == f"nightly/{collection_name}/{day}/{snap['name']}"
    head = client.head_object(Bucket=s3_bucket, Key=up["key"])
    assert head["ContentLength"] == snap["size"]
    assert head["Metadata"] == {"sha256": snap["checksum"], "points-count": "10", "collection": collection_name,
                                "snapshot": snap["name"]}
    body = client.get_object(Bucket=s3_bucket, Key=up["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == snap["checksum"]

    same = [task(collection=collection_name, state="s3_upload", bucket=s3_bucket, prefix="nightly",
                 snapshot_name=snap["name"])]
    assert run_tasks(same, check=True, play=defaults).result(0)["changed"] is False
    assert run_tasks(same, play=defaults).result(0)["changed"] is False
    assert seeded.snapshots(collection_name) == [snap["name"]]

    # another object at that key: refuse, then replace with force
    client.put_object(Bucket=s3_bucket, Key=up["key"], Body=b"other", Metadata={"sha256": "0" * 64})
    refused = run_tasks(same, expect_failure=True, play=defaults).result(0)
    assert f"exists with sha256 {'0' * 64}, not {snap['checksum']}; set force: true" in refused["msg"]
    assert client.get_object(Bucket=s3_bucket, Key=up["key"])["Body"].read() == b"other"
    forced = run_tasks([dict(same[0], **{"aegis.rag.qdrant_snapshot": dict(same[0]["aegis.rag.qdrant_snapshot"],
                                                                          force=True)})], play=defaults).result(0)
    assert forced["changed"] is True
    assert client.head_object(Bucket=s3_bucket, Key=up["key"])["Metadata"]["sha256"] == snap["checksum"]


def test_s3_upload_to_missing_bucket_fails_cleanly(run_tasks, qdrant, s3, collection_name, seeded, tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    out = run_tasks([task(collection=collection_name, state="s3_upload", bucket="aegis-no-such-bucket",
                          tmp_dir=str(staging))], expect_failure=True, play=play(qdrant, s3)).result(0)
    assert out["msg"].startswith("S3 request on s3://aegis-no-such-bucket/") and "NoSuchBucket" in out["msg"]
    assert list(staging.iterdir()) == [], "the staged snapshot was left behind"


BAD_PARAMETERS = [
    ({"state": "prune", "max_age": "7 years"}, "invalid duration '7 years'"),
    ({"state": "prune", "keep_last": -1}, "keep_last must be 0 or more"),
    ({"state": "absent"}, "state is absent but all of the following are missing: snapshot_name"),
    ({"state": "s3_upload"}, "state is s3_upload but all of the following are missing: bucket"),
    ({"state": "list"}, "value of state must be one of: present, absent, prune, download, s3_upload"),
]
_bad_parameter_results: list[dict] = []


@pytest.mark.parametrize("args,message", BAD_PARAMETERS)
def test_bad_parameters(run_tasks, qdrant, collection_name, seeded, args, message):
    """Every case is a task of one play, made by the first of these tests (on its seeded collection) and read by
    all: ignore_errors lets each task run and fail on its own; each case's result must be its own failure."""
    if not _bad_parameter_results:
        tasks = [dict(task(collection=collection_name, **case), ignore_errors=True) for case, _ in BAD_PARAMETERS]
        _bad_parameter_results.extend(run_tasks(tasks, play=play(qdrant)).results)
    out = _bad_parameter_results[BAD_PARAMETERS.index((args, message))]
    assert out.get("failed") is True, out
    assert message in out["msg"]


def test_missing_collection_and_qdrant_down(run_tasks, qdrant, collection_name):
    out = run_tasks([task(collection=collection_name, state="prune", keep_last=1)], expect_failure=True,
                    play=play(qdrant)).result(0)
    assert out["msg"] == f"collection {collection_name} does not exist"
    qdrant.stop()
    out = run_tasks([task(collection=collection_name)], expect_failure=True,
                    play=play(qdrant, timeout=2)).result(0)
    assert out["msg"].startswith(f"Qdrant request for snapshots of {collection_name} failed")
    assert "module_stderr" not in out
