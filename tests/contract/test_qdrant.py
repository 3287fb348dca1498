"""Qdrant contract: qdrant-client (REST) and raw HTTP against the double, or a real server when
AEGIS_TEST_QDRANT_URL (+ AEGIS_TEST_QDRANT_API_KEY) is set. Double-only checks skip against a real server."""

from __future__ import annotations

import hashlib
import re
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

DIM = 4


def vec(i: int) -> list[float]:
    return [1.0, float(i % 3), float(i % 5), float(i)]


@pytest.fixture
def client(qdrant):
    with closing(qdrant.client()) as c:
        yield c


@pytest.fixture
def http(qdrant):
    with httpx.Client(base_url=qdrant.url, headers=qdrant.headers, timeout=30) as c:
        yield c


@pytest.fixture
def aegis_collection(client, collection_name):
    """A collection built exactly like Aegis' ServerStore builds it, with 10 chunks of 2 documents."""
    client.create_collection(collection_name,
                             vectors_config={"dense": m.VectorParams(size=DIM, distance=m.Distance.COSINE)},
                             sparse_vectors_config={"bm25": m.SparseVectorParams(modifier=m.Modifier.IDF)},
                             metadata={"embed_model": "test-model", "embed_dim": DIM})
    for field in ("doc_key", "document_id"):
        client.create_payload_index(collection_name, field, field_schema=m.PayloadSchemaType.KEYWORD, wait=True)
    points = [m.PointStruct(id=i, payload={"doc_key": f"doc{i % 2}|hash|doc{i % 2}.md", "document_id": f"doc{i % 2}",
                                           "chunk_index": i // 2, "text": f"chunk {i}"},
                            vector={"dense": vec(i), "bm25": m.SparseVector(indices=[i, 100], values=[1.0, 0.5])})
              for i in range(10)]
    client.upsert(collection_name, points=points, wait=True)
    yield collection_name
    client.delete_collection(collection_name)


def error_of(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body) >= {"status", "time"} and "error" in body["status"], body
    return body["status"]["error"]


# -- service endpoints ------------------------------------------------------------------------------
def test_health_endpoints_are_open_and_api_key_is_enforced(qdrant):
    for path, text in (("/healthz", "healthz check passed"), ("/livez", "healthz check passed"),
                       ("/readyz", "all shards are ready")):
        r = httpx.get(qdrant.url + path)
        assert (r.status_code, r.text) == (200, text)
    root = httpx.get(qdrant.url + "/").json()
    assert root["title"] == "qdrant - vector search engine" and re.match(r"\d+\.\d+\.\d+", root["version"])
    if not qdrant.api_key:
        pytest.skip("server runs without an api key")
    missing = httpx.get(qdrant.url + "/collections")
    assert missing.status_code == 401 and "Must provide an API key" in missing.text
    assert httpx.get(qdrant.url + "/collections", headers={"api-key": "wrong"}).status_code in (401, 403)
    assert httpx.get(qdrant.url + "/collections", headers={"api-key": qdrant.api_key}).status_code == 200
    bearer = httpx.get(qdrant.url + "/collections", headers={"Authorization": f"Bearer {qdrant.api_key}"})
    assert bearer.status_code == 200 and bearer.json()["status"] == "ok"


def test_cluster_reports_disabled(http):
    body = http.get("/cluster").json()
    assert body["status"] == "ok" and body["result"]["status"] == "disabled"


def test_metrics_use_the_real_names(client, http, aegis_collection):
    client.query_points(aegis_collection, query=vec(1), using="dense", limit=3)
    text = http.get("/metrics").text
    for name in ("collections_total", "rest_responses_total", "rest_responses_duration_seconds_bucket",
                 "rest_responses_duration_seconds_count", "app_info"):
        assert re.search(rf"^{name}[{{ ]", text, re.MULTILINE), name
    assert 'endpoint="/collections/{collection_name}/points/query"' in text
    total = re.search(r"^collections_total (\d+)", text, re.MULTILINE)
    assert total and int(total.group(1)) >= 1


# -- the calls Aegis makes --------------------------------------------------------------------------
def test_aegis_server_store_flow(client, aegis_collection):
    name = aegis_collection
    assert client.collection_exists(name) and not client.collection_exists(name + "_absent")
    info = client.get_collection(name)
    assert info.config.metadata == {"embed_model": "test-model", "embed_dim": DIM}
    assert info.config.params.vectors["dense"].size == DIM
    assert info.config.params.sparse_vectors["bm25"].modifier == m.Modifier.IDF
    assert {"doc_key", "document_id"} <= set(info.payload_schema)
    assert info.points_count == 10 and info.status in (m.CollectionStatus.GREEN, m.CollectionStatus.YELLOW)

    # replace doc1 by 2 chunks: upsert then delete the surplus, in one batch, as ServerStore does
    new = [m.PointStruct(id=i, payload={"doc_key": "doc1|new|doc1.md", "document_id": "doc1", "chunk_index": i // 2},
                         vector={"dense": vec(i), "bm25": m.SparseVector(indices=[i], values=[1.0])}) for i in (1, 3)]
    surplus = m.Filter(must=[m.FieldCondition(key="document_id", match=m.MatchValue(value="doc1")),
                             m.FieldCondition(key="chunk_index", range=m.Range(gte=2))])
    results = client.batch_update_points(name, [m.UpsertOperation(upsert=m.PointsList(points=new)),
                                                m.DeleteOperation(delete=m.FilterSelector(filter=surplus))], wait=True)
    assert [r.status for r in results] == [m.UpdateStatus.COMPLETED] * 2
    assert client.count(name, exact=True).count == 7
    facets = {h.value: h.count for h in client.facet(name, key="doc_key", limit=100, exact=True).hits}
    assert facets == {"doc0|hash|doc0.md": 5, "doc1|new|doc1.md": 2}

    hybrid = client.query_points(name, prefetch=[
        m.Prefetch(query=vec(4), using="dense", limit=20),
        m.Prefetch(query=m.SparseVector(indices=[4], values=[1.0]), using="bm25", limit=20)],
        query=m.FusionQuery(fusion=m.Fusion.RRF), limit=3, with_payload=True)
    assert hybrid.points[0].id == 4 and hybrid.points[0].payload["text"] == "chunk 4"
    assert len(hybrid.points) == 3 and hybrid.points[0].score >= hybrid.points[1].score
    dense = client.query_points(name, query=vec(4), using="dense", limit=2, score_threshold=0.5)
    assert dense.points[0].id == 4 and all(p.score >= 0.5 for p in dense.points)


def test_scroll_retrieve_payload_and_delete(client, aegis_collection):
    name = aegis_collection
    seen, offset = [], None
    while True:
        page, offset = client.scroll(name, limit=4, offset=offset, with_payload=False)
        seen += [p.id for p in page]
        if offset is None:
            break
    assert sorted(seen) == list(range(10))
    only_doc0, _ = client.scroll(name, scroll_filter=m.Filter(must=[
        m.FieldCondition(key="document_id", match=m.MatchValue(value="doc0"))]), limit=100)
    assert sorted(p.id for p in only_doc0) == [0, 2, 4, 6, 8]

    client.set_payload(name, payload={"tag": "a"}, points=[0, 1])
    client.overwrite_payload(name, payload={"only": 1}, points=[2])
    client.delete_payload(name, keys=["tag"], points=[1])
    client.clear_payload(name, points_selector=m.PointIdsList(points=[3]))
    got = {r.id: r.payload for r in client.retrieve(name, ids=[0, 1, 2, 3], with_payload=True)}
    assert got[0]["tag"] == "a" and "tag" not in got[1] and got[2] == {"only": 1} and got[3] == {}
    with_vec = client.retrieve(name, ids=[5], with_vectors=True)[0]
    assert with_vec.vector["dense"] and len(with_vec.vector["dense"]) == DIM

    client.delete(name, points_selector=m.PointIdsList(points=[0, 1]), wait=True)
    assert client.count(name, exact=True).count == 8
    client.delete(name, points_selector=m.FilterSelector(filter=m.Filter(must=[
        m.FieldCondition(key="document_id", match=m.MatchValue(value="doc1"))])), wait=True)
    left, _ = client.scroll(name, limit=100)
    assert sorted(p.id for p in left) == [2, 3, 4, 6, 8]  # 3 lost its payload, so the filter spared it


def test_update_collection_optimizers_config_is_persisted(client, aegis_collection):
    client.update_collection(aegis_collection, optimizers_config=m.OptimizersConfigDiff(
        deleted_threshold=0.1, vacuum_min_vector_number=500, indexing_threshold=0))
    cfg = client.get_collection(aegis_collection).config.optimizer_config
    assert (cfg.deleted_threshold, cfg.vacuum_min_vector_number, cfg.indexing_threshold) == (0.1, 500, 0)
    assert cfg.flush_interval_sec > 0 and cfg.default_segment_number is not None  # untouched defaults stay


def test_optimizers_config_out_of_range_is_refused(http, aegis_collection):
    r = http.patch(f"/collections/{aegis_collection}", json={"optimizers_config": {"vacuum_min_vector_number": 5}})
    assert r.status_code == 422 and "vacuum_min_vector_number" in error_of(r)
    assert http.get(f"/collections/{aegis_collection}").json()["result"]["config"]["optimizer_config"][
        "vacuum_min_vector_number"] != 5


def test_aliases(client, aegis_collection, collection_name):
    alias = collection_name + "_alias"
    client.update_collection_aliases(change_aliases_operations=[
        m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name=aegis_collection, alias_name=alias))])
    assert (alias, aegis_collection) in {(a.alias_name, a.collection_name) for a in client.get_aliases().aliases}
    assert client.count(alias, exact=True).count == 10
    client.update_collection_aliases(change_aliases_operations=[
        m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=alias))])
    assert alias not in {a.alias_name for a in client.get_aliases().aliases}


# -- errors look like the server's ------------------------------------------------------------------
def test_bad_requests_get_the_server_error_envelope(http, client, aegis_collection, collection_name):
    r = http.get(f"/collections/{collection_name}_absent")
    assert r.status_code == 404 and "doesn't exist" in error_of(r)
    r = http.put(f"/collections/{collection_name}_x", json={"vectors": {"size": 65537, "distance": "Cosine"}})
    assert r.status_code == 422 and "size" in error_of(r)
    r = http.put(f"/collections/{collection_name}_x", json={"vectors": {"size": 4, "distance": "Nope"}})
    assert r.status_code == 400 and error_of(r)
    assert not client.collection_exists(collection_name + "_x")
    r = http.put(f"/collections/{aegis_collection}", json={"vectors": {"size": 4, "distance": "Cosine"}})
    assert r.status_code in (400, 409) and "already exists" in error_of(r)
    r = http.put(f"/collections/{aegis_collection}/points?wait=true",
                 json={"points": [{"id": 99, "vector": {"dense": [1.0, 2.0]}}]})
    assert r.status_code == 400 and "dim" in error_of(r).lower()
    r = http.post(f"/collections/{aegis_collection}/facet", json={"key": "chunk_index"})
    assert r.status_code == 400 and "index" in error_of(r).lower()
    assert client.count(aegis_collection, exact=True).count == 10


# -- the server's bounds on collection configs and points --------------------------------------------
VALID = {"vectors": {"size": DIM, "distance": "Cosine"}}


def _create(http, name: str, **fields) -> httpx.Response:
    return http.put(f"/collections/{name}", json={**VALID, **fields})


@pytest.mark.parametrize("fields, field", [
    ({"hnsw_config": {"ef_construct": 2}}, "hnsw_config.ef_construct"),
    ({"hnsw_config": {"full_scan_threshold": 5}}, "hnsw_config.full_scan_threshold"),
    ({"wal_config": {"wal_capacity_mb": 0}}, "wal_config.wal_capacity_mb"),
    ({"shard_number": 0}, "shard_number"),
    ({"replication_factor": 0}, "replication_factor"),
    ({"write_consistency_factor": 0}, "write_consistency_factor"),
    ({"optimizers_config": {"deleted_threshold": 1.5}}, "optimizers_config.deleted_threshold"),
    ({"optimizers_config": {"vacuum_min_vector_number": 99}}, "optimizers_config.vacuum_min_vector_number"),
    ({"optimizers_config": {"max_segment_size": 0}}, "optimizers_config.max_segment_size"),
    ({"quantization_config": {"scalar": {"type": "int8", "quantile": 0.2}}}, "quantization_config.scalar.quantile"),
    ({"vectors": {"dense": {"size": DIM, "distance": "Cosine", "hnsw_config": {"ef_construct": 3}}}},
     "hnsw_config.ef_construct"),
    ({"vectors": {"dense": {"size": 70000, "distance": "Cosine"}}}, "size"),
])
def test_create_out_of_range_is_a_422_validation_error(http, client, collection_name, fields, field):
    r = _create(http, collection_name, **fields)
    assert r.status_code == 422, r.text
    assert error_of(r).startswith("Validation error in JSON body") and field in error_of(r)
    assert not client.collection_exists(collection_name)


@pytest.mark.parametrize("fields", [
    {"vectors": {"size": 0, "distance": "Cosine"}},
    {"vectors": {"dense": {"size": -4, "distance": "Cosine"}}},
    {"shard_number": -1},
    {"hnsw_config": {"m": -1}},
    {"wal_config": {"wal_capacity_mb": -1}},
    {"optimizers_config": {"indexing_threshold": -1}},
    {"optimizers_config": {"max_optimization_threads": "many"}},
])
def test_create_with_malformed_numbers_is_a_400_format_error(http, client, collection_name, fields):
    r = _create(http, collection_name, **fields)
    assert r.status_code == 400 and error_of(r).startswith("Format error in JSON body"), r.text
    assert not client.collection_exists(collection_name)


@pytest.mark.parametrize("vectors, sparse, words", [
    ({"text": {"size": DIM, "distance": "Cosine"}}, {"text": {}}, "must be unique"),
    ({"dense": {"size": DIM, "distance": "Cosine"}}, {"": {}}, "cannot be empty"),
    ({"a/b": {"size": DIM, "distance": "Cosine"}}, None, "vector name cannot contain"),
])
def test_bad_vector_names_are_wrong_input(http, client, collection_name, vectors, sparse, words):
    r = http.put(f"/collections/{collection_name}", json={"vectors": vectors, "sparse_vectors": sparse})
    assert r.status_code == 400 and error_of(r).startswith("Wrong input") and words in error_of(r), r.text
    assert not client.collection_exists(collection_name)


def test_unknown_fields_are_ignored_except_in_filters(http, client, collection_name):
    r = _create(http, collection_name, bogus=1, optimizers_config={"deleted_threshold": 0.3, "bogus": 2})
    try:
        assert r.status_code == 200, r.text
        assert client.get_collection(collection_name).config.optimizer_config.deleted_threshold == 0.3
        r = http.put(f"/collections/{collection_name}/points?wait=true",
                     json={"points": [{"id": 1, "vector": vec(1), "bogus": 3}], "bogus": 4})
        assert r.status_code == 200, r.text
        r = http.post(f"/collections/{collection_name}/points/scroll", json={"limit": 5, "bogus": 5})
        assert r.status_code == 200 and [p["id"] for p in r.json()["result"]["points"]] == [1]
        r = http.post(f"/collections/{collection_name}/points/scroll", json={"filter": {"must": [], "bogus": 6}})
        assert r.status_code == 400 and "bogus" in error_of(r)  # Filter is deny_unknown_fields
    finally:
        client.delete_collection(collection_name)


def test_max_optimization_threads_auto_is_stored_as_null(http, client, collection_name):
    assert _create(http, collection_name, optimizers_config={"max_optimization_threads": "auto"}).status_code == 200
    try:
        raw = http.get(f"/collections/{collection_name}").json()["result"]["config"]["optimizer_config"]
        assert raw["max_optimization_threads"] is None
        assert client.get_collection(collection_name).config.optimizer_config.max_optimization_threads is None
        client.update_collection(collection_name, optimizers_config=m.OptimizersConfigDiff(max_optimization_threads=2))
        assert client.get_collection(collection_name).config.optimizer_config.max_optimization_threads == 2
        r = http.patch(f"/collections/{collection_name}", json={"optimizers_config": {"max_optimization_threads": "auto"}})
        assert r.status_code == 200, r.text
        assert client.get_collection(collection_name).config.optimizer_config.max_optimization_threads is None
    finally:
        client.delete_collection(collection_name)


def test_patch_out_of_range_or_malformed_is_refused(http, aegis_collection):
    before = http.get(f"/collections/{aegis_collection}").json()["result"]["config"]
    r = http.patch(f"/collections/{aegis_collection}", json={"hnsw_config": {"ef_construct": 2}})
    assert r.status_code == 422 and "ef_construct" in error_of(r)
    r = http.patch(f"/collections/{aegis_collection}", json={"hnsw_config": {"m": -1}})
    assert r.status_code == 400 and error_of(r).startswith("Format error")
    r = http.patch(f"/collections/{aegis_collection}", json={"params": {"replication_factor": 0}})
    assert r.status_code == 400 and error_of(r).startswith("Format error")  # NonZeroU32
    after = http.get(f"/collections/{aegis_collection}").json()["result"]["config"]
    assert (after["hnsw_config"], after["params"]) == (before["hnsw_config"], before["params"])


@pytest.mark.parametrize("body, applied", [
    ({"vectors": {"dense": {"hnsw_config": {"m": 32}}}},
     lambda cfg: (cfg["params"]["vectors"]["dense"].get("hnsw_config") or {}).get("m") == 32),
    ({"sparse_vectors": {"bm25": {"index": {"full_scan_threshold": 5000}}}},
     lambda cfg: (cfg["params"]["sparse_vectors"]["bm25"].get("index") or {}).get("full_scan_threshold") == 5000),
    ({"strict_mode_config": {"enabled": True, "max_query_limit": 50}},
     lambda cfg: (cfg.get("strict_mode_config") or {}).get("enabled")),
])
def test_patch_features_the_double_lacks_are_refused_not_ignored(qdrant, http, aegis_collection, body, applied):
    r = http.patch(f"/collections/{aegis_collection}", json=body)
    config = http.get(f"/collections/{aegis_collection}").json()["result"]["config"]
    if qdrant.real:  # the server applies them
        assert r.status_code == 200 and applied(config), r.text
    else:
        assert r.status_code == 501 and next(iter(body)) in error_of(r), r.text
        assert not applied(config)


@pytest.mark.parametrize("point_id", [-1, "not-a-uuid", 2**64, 1.5])
def test_invalid_point_ids_are_format_errors(http, client, aegis_collection, point_id):
    r = http.put(f"/collections/{aegis_collection}/points?wait=true",
                 json={"points": [{"id": point_id, "vector": {"dense": vec(1)}}]})
    assert r.status_code == 400 and error_of(r).startswith("Format error"), r.text
    r = http.post(f"/collections/{aegis_collection}/points/batch?wait=true", json={"operations": [
        {"upsert": {"batch": {"ids": [point_id], "vectors": {"dense": [vec(1)]}}}}]})
    assert r.status_code == 400 and error_of(r).startswith("Format error"), r.text
    assert client.count(aegis_collection, exact=True).count == 10


def test_point_ids_are_unsigned_64_bit_integers_or_uuids(client, aegis_collection):
    ids = [2**64 - 1, "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"]
    client.upsert(aegis_collection, points=[m.PointStruct(id=i, vector={"dense": vec(1)}) for i in ids], wait=True)
    assert {p.id for p in client.retrieve(aegis_collection, ids=ids)} == set(ids)


def test_upsert_update_mode_and_update_filter_are_applied(client, aegis_collection):
    def upsert(points, **options):
        client.upsert(aegis_collection, points=[m.PointStruct(id=i, vector={"dense": vec(i)}, payload={"v": v})
                                                for i, v in points], wait=True, **options)

    def payloads():
        return {p.id: p.payload.get("v") for p in client.retrieve(aegis_collection, ids=[1, 2, 3, 4, 50, 51])}

    upsert([(1, "new"), (50, "new")], update_mode=m.UpdateMode.INSERT_ONLY)
    assert payloads() == {1: None, 2: None, 3: None, 4: None, 50: "new"}  # 1 kept its old payload
    upsert([(2, "upd"), (51, "upd")], update_mode=m.UpdateMode.UPDATE_ONLY)
    assert payloads() == {1: None, 2: "upd", 3: None, 4: None, 50: "new"}  # 51 was not inserted
    only_doc0 = m.Filter(must=[m.FieldCondition(key="document_id", match=m.MatchValue(value="doc0"))])
    upsert([(3, "f"), (4, "f"), (60, "f")], update_filter=only_doc0)  # 3 is doc1: spared; new 60 inserted
    assert payloads() == {1: None, 2: "upd", 3: None, 4: "f", 50: "new"}
    assert client.retrieve(aegis_collection, ids=[60])[0].payload == {"v": "f"}


def test_delete_collection(client, http, collection_name):
    client.create_collection(collection_name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT))
    assert client.delete_collection(collection_name) is True
    assert http.delete(f"/collections/{collection_name}").json()["result"] is False
    assert not client.collection_exists(collection_name)


# -- snapshots --------------------------------------------------------------------------------------
def test_snapshot_create_list_download_delete(client, http, aegis_collection):
    snap = client.create_snapshot(aegis_collection, wait=True)
    assert re.fullmatch(r"[0-9a-f]{64}", snap.checksum) and snap.size > 0 and snap.creation_time
    assert snap.name in {s.name for s in client.list_snapshots(aegis_collection)}
    body = http.get(f"/collections/{aegis_collection}/snapshots/{snap.name}")
    assert body.status_code == 200 and len(body.content) == snap.size
    assert hashlib.sha256(body.content).hexdigest() == snap.checksum
    assert client.delete_snapshot(aegis_collection, snap.name, wait=True)
    assert snap.name not in {s.name for s in client.list_snapshots(aegis_collection)}
    assert http.get(f"/collections/{aegis_collection}/snapshots/{snap.name}").status_code == 404


def test_upload_snapshot_restores_points_and_verifies_checksum(client, http, aegis_collection, collection_name):
    snap = client.create_snapshot(aegis_collection, wait=True)
    data = http.get(f"/collections/{aegis_collection}/snapshots/{snap.name}").content
    target = collection_name + "_restored"
    bad = http.post(f"/collections/{target}/snapshots/upload", params={"checksum": "0" * 64},
                    files={"snapshot": (snap.name, data)})
    assert bad.status_code == 400 and "checksum" in error_of(bad).lower()
    assert not client.collection_exists(target)
    ok = http.post(f"/collections/{target}/snapshots/upload", params={"wait": "true", "checksum": snap.checksum,
                                                                     "priority": "snapshot"},
                   files={"snapshot": (snap.name, data)})
    assert ok.status_code == 200 and ok.json()["result"] is True
    try:
        assert client.count(target, exact=True).count == 10
        assert client.get_collection(target).config.metadata["embed_model"] == "test-model"
        hit = client.query_points(target, query=vec(7), using="dense", limit=1, with_payload=True).points[0]
        assert hit.id == 7 and hit.payload["text"] == "chunk 7"
    finally:
        client.delete_collection(target)


def test_recover_from_presigned_s3_url_with_checksum(client, http, aegis_collection, s3, s3_bucket):
    snap = client.create_snapshot(aegis_collection, wait=True)
    data = http.get(f"/collections/{aegis_collection}/snapshots/{snap.name}").content
    s3c = s3.client()
    s3c.put_object(Bucket=s3_bucket, Key=f"qdrant/{snap.name}", Body=data)
    url = s3c.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": f"qdrant/{snap.name}"},
                                     ExpiresIn=600)
    client.delete(aegis_collection, points_selector=m.PointIdsList(points=[0, 1, 2]), wait=True)
    assert client.count(aegis_collection, exact=True).count == 7
    with pytest.raises(UnexpectedResponse) as bad:
        client.recover_snapshot(aegis_collection, location=url, checksum="f" * 64, wait=True)
    assert bad.value.status_code == 400
    assert client.count(aegis_collection, exact=True).count == 7  # a failed recovery changes nothing
    assert client.recover_snapshot(aegis_collection, location=url, checksum=snap.checksum, wait=True)
    assert client.count(aegis_collection, exact=True).count == 10


def test_recover_rejects_s3_scheme(http, aegis_collection):
    r = http.put(f"/collections/{aegis_collection}/snapshots/recover",
                 json={"location": "s3://bucket/some.snapshot"})
    assert r.status_code == 400 and "scheme s3 is not supported" in error_of(r)


# -- double-only: status colours, restart, fault injection ------------------------------------------
def _status(service, name: str) -> str:
    r = httpx.get(f"{service.url}/collections/{name}", headers=service.headers)
    return r.json()["result"]["status"]


def test_status_yellow_after_optimizer_patch_then_green(start_double, collection_name):
    q = start_double("qdrant", optimize_seconds=0.5)
    with closing(q.client()) as c:
        c.create_collection(collection_name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
        assert _status(q, collection_name) == "green"
        c.update_collection(collection_name, optimizers_config=m.OptimizersConfigDiff(indexing_threshold=1))
        assert _status(q, collection_name) == "yellow"
        deadline = time.monotonic() + 5
        while _status(q, collection_name) != "green":
            assert time.monotonic() < deadline, "collection never went back to green"
            time.sleep(0.1)


def test_large_upsert_goes_yellow(start_double, collection_name):
    q = start_double("qdrant", optimize_seconds=30, large_upsert=5)
    with closing(q.client()) as c:
        c.create_collection(collection_name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
        c.upsert(collection_name, points=[m.PointStruct(id=i, vector=vec(i)) for i in range(4)])
        assert _status(q, collection_name) == "green"
        c.upsert(collection_name, points=[m.PointStruct(id=i, vector=vec(i)) for i in range(5)])
        assert _status(q, collection_name) == "yellow"


def test_grey_after_restart_until_next_update(start_double, collection_name, tmp_path):
    q = start_double("qdrant", data_dir=tmp_path / "persisted")
    with closing(q.client()) as c:
        c.create_collection(collection_name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
        c.upsert(collection_name, points=[m.PointStruct(id=i, vector=vec(i), payload={"i": i}) for i in range(3)])
        c.update_collection(collection_name, optimizers_config=m.OptimizersConfigDiff(deleted_threshold=0.3))
    q.stop()
    q.start()
    assert _status(q, collection_name) == "grey"
    with closing(q.client()) as c:
        info = c.get_collection(collection_name)
        assert info.points_count == 3 and info.config.optimizer_config.deleted_threshold == 0.3
        c.update_collection(collection_name, optimizers_config=m.OptimizersConfigDiff())
        assert _status(q, collection_name) in ("green", "yellow")


def test_snapshots_survive_restart_and_file_recovery_stays_inside_snapshots_dir(start_double, collection_name,
                                                                             tmp_path):
    data = tmp_path / "persisted"
    q = start_double("qdrant", data_dir=data)
    with closing(q.client()) as c:
        c.create_collection(collection_name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
        c.upsert(collection_name, points=[m.PointStruct(id=1, vector=vec(1))])
        snap = c.create_snapshot(collection_name)
    q.stop()
    q.start()
    with closing(q.client()) as c:
        assert [s.name for s in c.list_snapshots(collection_name)] == [snap.name]
        path = data / "snapshots" / collection_name / snap.name
        assert c.recover_snapshot(collection_name + "_copy", location=path.as_uri(), checksum=snap.checksum)
        assert c.count(collection_name + "_copy").count == 1
        outside = tmp_path / "elsewhere.snapshot"
        outside.write_bytes(path.read_bytes())
        with pytest.raises(UnexpectedResponse) as exc:
            c.recover_snapshot(collection_name + "_x", location=outside.as_uri())
        assert exc.value.status_code in (400, 403)


def test_fault_injection_latency_errors_and_stop(qdrant, client, aegis_collection):
    qdrant.faults.add(path=r"/points/query$", status=503, error_rate=1.0, times=1)
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points(aegis_collection, query=vec(1), using="dense")
    assert exc.value.status_code == 503
    assert client.query_points(aegis_collection, query=vec(1), using="dense").points  # rule expired
    qdrant.faults.add(path=r"/points/count$", latency_ms=300)
    started = time.monotonic()
    client.count(aegis_collection)
    assert time.monotonic() - started >= 0.3
    qdrant.faults.clear()
    assert qdrant.faults.rules() == []
    qdrant.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(qdrant.url + "/healthz", timeout=2)
    qdrant.start()
    assert httpx.get(qdrant.url + "/healthz").status_code == 200
    assert client.count(aegis_collection).count == 10  # data survived the restart


def test_pause_makes_requests_hang(qdrant):
    qdrant.pause()
    try:
        with pytest.raises(httpx.TimeoutException):
            httpx.get(qdrant.url + "/healthz", timeout=0.5)
    finally:
        qdrant.resume()
    assert httpx.get(qdrant.url + "/healthz", timeout=5).status_code == 200


def test_optimizations_report_follows_the_status(start_double, collection_name):
    q = start_double("qdrant", optimize_seconds=0.4)
    with closing(q.client()) as c:
        c.create_collection(collection_name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
        c.upsert(collection_name, points=[m.PointStruct(id=i, vector=vec(i)) for i in range(3)])
        c.update_collection(collection_name, optimizers_config=m.OptimizersConfigDiff(indexing_threshold=1))
        report = c.get_optimizations(collection_name)
        assert [r.optimizer for r in report.running] == ["config_mismatch"]
        assert report.running[0].progress.total == 3
        time.sleep(0.5)
        report = c.get_optimizations(collection_name, with_=["completed", "idle_segments"])
        assert report.running == [] and [r.status for r in report.completed] == [m.TrackerStatusOneOf.DONE]
        assert report.summary.queued_optimizations == 0 and report.idle_segments
    r = httpx.get(f"{q.url}/collections/{collection_name}/optimizations", params={"with": "bogus"})
    assert r.status_code == 400


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+)", status, re.MULTILINE).group(1))


@pytest.mark.slow
def test_large_upload_is_streamed_to_disk(start_double, tmp_path):
    """A 256 MiB snapshot upload must not be held in memory (the double handles 1 GiB the same way)."""
    import io
    import tarfile

    q = start_double("qdrant")
    with closing(q.client()) as c:
        c.create_collection("src", vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
        c.upsert("src", points=[m.PointStruct(id=i, vector=vec(i)) for i in range(20)])
        snap = c.create_snapshot("src")
    data = httpx.get(f"{q.url}/collections/src/snapshots/{snap.name}", headers=q.headers).content
    big, pad = tmp_path / "big.snapshot", tmp_path / "pad.bin"
    with pad.open("wb") as fh:
        fh.truncate(256 * 1024 * 1024)
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(big, "w") as out:
        for member in src.getmembers():  # the double's own members, plus padding it ignores
            out.addfile(member, src.extractfile(member))
        out.add(pad, arcname="padding.bin")
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    before = _peak_rss_kb(q.process.pid)
    with big.open("rb") as fh:
        r = httpx.post(f"{q.url}/collections/restored/snapshots/upload", params={"checksum": digest},
                       files={"snapshot": ("big.snapshot", fh)}, headers=q.headers, timeout=300)
    assert r.status_code == 200 and r.json()["result"] is True
    assert _peak_rss_kb(q.process.pid) - before < 64 * 1024  # far below the 256 MiB uploaded
    with closing(q.client()) as c:
        assert c.count("restored").count == 20
