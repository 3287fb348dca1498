"""qdrant_collection and qdrant_collection_info through ansible-playbook against the Qdrant double."""

from __future__ import annotations

import pytest

from tests.collection.qdrant_helpers import Rest, play

pytestmark = pytest.mark.slow

VECTORS = {"dense": {"size": 4, "distance": "cosine"}}
SPARSE = {"bm25": {"modifier": "idf"}}


def task(**args):
    return {"name": "collection", "aegis.rag.qdrant_collection": args}


def test_create_check_mode_then_create_then_idempotent(run_tasks, qdrant, collection_name):
    rest, defaults = Rest(qdrant), play(qdrant)
    args = dict(name=collection_name, vectors=VECTORS, sparse_vectors=SPARSE,
                optimizers_config={"deleted_threshold": 0.3, "default_segment_number": 3})

    checked = run_tasks([task(**args)], check=True, diff=True, play=defaults).result(0)
    assert checked["changed"] is True
    assert checked["diff"]["before"] == {"state": "absent"}
    assert checked["diff"]["after"]["vectors"] == {"dense": {"size": 4, "distance": "Cosine"}}
    assert rest.info(collection_name) is None, "check mode created the collection"

    first = run_tasks([task(**args)], diff=True, play=defaults).result(0)
    assert first["changed"] is True and first["state"] == "present"
    info = rest.info(collection_name)
    dense = info["config"]["params"]["vectors"]["dense"]
    assert (dense["size"], dense["distance"]) == (4, "Cosine")
    assert info["config"]["params"]["sparse_vectors"]["bm25"]["modifier"] == "idf"
    assert info["config"]["optimizer_config"]["deleted_threshold"] == 0.3
    assert first["points_count"] == 0 and first["segments_count"] == 3

    second = run_tasks([task(**args, wait=True)], diff=True, play=defaults).result(0)
    assert second["changed"] is False and second["updated"] == {} and "diff" not in second
    assert second["status"] == "green"


def test_optimizers_patched_only_when_different(run_tasks, qdrant, collection_name):
    rest, defaults = Rest(qdrant), play(qdrant)
    rest.create(collection_name)
    before = rest.info(collection_name)["config"]["optimizer_config"]

    wanted = {"deleted_threshold": 0.25, "vacuum_min_vector_number": before["vacuum_min_vector_number"]}
    checked = run_tasks([task(name=collection_name, optimizers_config=wanted)], check=True, diff=True,
                        play=defaults).result(0)
    assert checked["changed"] is True and checked["updated"] == {"deleted_threshold": 0.25}
    assert checked["diff"]["before"]["optimizers_config"] == {"deleted_threshold": before["deleted_threshold"]}
    assert checked["diff"]["after"]["optimizers_config"] == {"deleted_threshold": 0.25}
    assert rest.info(collection_name)["config"]["optimizer_config"] == before, "check mode patched"

    changed = run_tasks([task(name=collection_name, optimizers_config=wanted, wait=True, wait_timeout=30)],
                        diff=True, play=defaults).result(0)
    assert changed["changed"] is True and changed["updated"] == {"deleted_threshold": 0.25}
    assert changed["status"] == "green"  # waited through the double's simulated optimisation
    after = rest.info(collection_name)["config"]["optimizer_config"]
    assert after == dict(before, deleted_threshold=0.25)

    again = run_tasks([task(name=collection_name, optimizers_config=wanted)], play=defaults).result(0)
    assert again["changed"] is False


def test_vector_mismatch_fails_and_never_recreates(run_tasks, qdrant, collection_name):
    rest, defaults = Rest(qdrant), play(qdrant)
    rest.create(collection_name)
    rest.upsert(collection_name, range(1, 6))
    out = run_tasks([task(name=collection_name, vectors={"dense": {"size": 8, "distance": "Dot"}})],
                    expect_failure=True, play=defaults).result(0)
    assert out["failed"] and "vectors.dense.size is 4, wanted 8" in out["msg"]
    assert "never recreates" in out["msg"]
    assert rest.info(collection_name)["points_count"] == 5


def test_absent_needs_force_for_points(run_tasks, qdrant, collection_name):
    rest, defaults = Rest(qdrant), play(qdrant)
    rest.create(collection_name)
    rest.upsert(collection_name, range(1, 4))

    refused = run_tasks([task(name=collection_name, state="absent")], expect_failure=True, play=defaults).result(0)
    assert "holds 3 points; set force: true" in refused["msg"]
    assert rest.info(collection_name)["points_count"] == 3

    checked = run_tasks([task(name=collection_name, state="absent", force=True)], check=True, diff=True,
                        play=defaults).result(0)
    assert checked["changed"] is True and checked["diff"]["after"] == {"state": "absent"}
    assert rest.info(collection_name) is not None

    gone = run_tasks([task(name=collection_name, state="absent", force=True)], play=defaults).result(0)
    assert gone["changed"] is True and rest.info(collection_name) is None
    again = run_tasks([task(name=collection_name, state="absent")], play=defaults).result(0)
    assert again["changed"] is False


def test_empty_collection_is_deleted_without_force(run_tasks, qdrant, collection_name):
    rest = Rest(qdrant)
    rest.create(collection_name)
    out = run_tasks([task(name=collection_name, state="absent")], play=play(qdrant)).result(0)
    assert out["changed"] is True and rest.info(collection_name) is None


def test_grey_collection_is_resumed(run_tasks, start_double, collection_name):
    private = start_double("qdrant")
    rest, defaults = Rest(private), play(private)
    rest.create(collection_name)
    private.stop()
    private.start()  # the double restarts every stored collection grey, like a paused server
    assert rest.info(collection_name)["status"] == "grey"

    checked = run_tasks([task(name=collection_name)], check=True, diff=True, play=defaults).result(0)
    assert checked["changed"] is True and checked["resumed"] is True
    assert checked["diff"]["before"]["status"] == "grey" and checked["diff"]["after"]["status"] == "resumed"
    assert rest.info(collection_name)["status"] == "grey", "check mode resumed the collection"

    resumed = run_tasks([task(name=collection_name, wait=True, wait_timeout=30)], play=defaults).result(0)
    assert resumed["changed"] is True and resumed["resumed"] is True and resumed["updated"] == {}
    assert resumed["status"] == "green"
    assert run_tasks([task(name=collection_name)], play=defaults).result(0)["changed"] is False


def test_missing_collection_without_vectors_fails_clearly(run_tasks, qdrant, collection_name):
    out = run_tasks([task(name=collection_name)], expect_failure=True, play=play(qdrant)).result(0)
    assert out["msg"] == f"collection {collection_name} does not exist: give vectors and/or sparse_vectors to create it"


@pytest.mark.parametrize("args,message", [
    ({"vectors": {"dense": {"size": 4, "distance": "hamming"}}}, "distance must be one of"),
    ({"optimizers_config": {"deleted_threshold": 2}}, "deleted_threshold must be between 0 and 1"),
    ({"optimizers_config": {"no_such_field": 1}}, "no_such_field"),
])
def test_bad_parameters_fail_with_clear_msg(run_tasks, qdrant, collection_name, args, message):
    out = run_tasks([task(name=collection_name, **args)], expect_failure=True, play=play(qdrant)).result(0)
    assert message in out["msg"]
    assert Rest(qdrant).info(collection_name) is None


def test_qdrant_rejection_is_reported(run_tasks, qdrant, collection_name):
    # below Qdrant's minimum of 100: the server's 4xx answer becomes the msg, with the status
    rest = Rest(qdrant)
    rest.create(collection_name)
    out = run_tasks([task(name=collection_name, optimizers_config={"vacuum_min_vector_number": 10})],
                    expect_failure=True, play=play(qdrant)).result(0)
    assert out["msg"].startswith(f"Qdrant request for collection {collection_name} failed: PATCH")
    assert out["status"] in (400, 422) and "vacuum_min_vector_number" in out["msg"]


def test_qdrant_down_fails_cleanly(run_tasks, qdrant, collection_name):
    qdrant.stop()
    out = run_tasks([task(name=collection_name, vectors=VECTORS)], expect_failure=True,
                    play=play(qdrant, timeout=2)).result(0)
    assert out["msg"].startswith(f"Qdrant request for collection {collection_name} failed: GET {qdrant.url}")
    assert "Connection refused" in out["msg"] and out["status"] is None
    assert "module_stderr" not in out  # a handled failure, not a crashed module


def test_api_key_is_required_and_never_shown(run_tasks, qdrant, collection_name):
    if not qdrant.api_key:
        pytest.skip("the Qdrant under test has no api key")
    out = run_tasks([task(name=collection_name, vectors=VECTORS)], expect_failure=True,
                    play=play(qdrant, api_key="wrong-key-value")).result(0)
    assert out["status"] in (401, 403)
    ok = run_tasks([task(name=collection_name, vectors=VECTORS)], play=play(qdrant))
    assert qdrant.api_key not in ok.stdout


def test_info_one_and_all(run_tasks, qdrant, collection_name):
    rest = Rest(qdrant)
    rest.create(collection_name, sparse_vectors={"bm25": {}})
    rest.upsert(collection_name, range(1, 8))
    snap = rest.snapshot(collection_name)
    tasks = [{"name": "one", "aegis.rag.qdrant_collection_info": {"name": collection_name}},
             {"name": "all", "aegis.rag.qdrant_collection_info": {}},
             {"name": "missing", "aegis.rag.qdrant_collection_info": {"name": collection_name + "_nope"}}]
    out = run_tasks(tasks, check=True, play=play(qdrant))
    one = out.result("one")
    assert one["changed"] is False and one["exists"] is True
    facts = one["collections"][0]
    assert facts["name"] == collection_name and facts["points_count"] == 7
    assert facts["snapshots_count"] == 1 and facts["snapshots"] == [snap]
    assert facts["optimizer_status"] == "ok" and facts["status"] in ("green", "yellow")
    assert facts["vectors"]["dense"]["size"] == 4 and "bm25" in facts["sparse_vectors"]
    assert "deleted_threshold" in facts["optimizer_config"]
    assert collection_name in [c["name"] for c in out.result("all")["collections"]]
    assert out.result("missing")["exists"] is False and out.result("missing")["collections"] == []
