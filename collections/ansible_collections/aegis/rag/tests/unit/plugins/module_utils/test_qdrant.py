"""Decisions of qdrant_collection: vector parameter checks (creation only, never recreate) and
optimizer diffing (PATCH only the given fields that differ)."""

from __future__ import annotations

import pytest

from ansible_collections.aegis.rag.plugins.module_utils.qdrant import (
    normalize_sparse, normalize_vectors, optimizer_changes, vector_mismatches)

CURRENT_OPT = {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000, "default_segment_number": 0,
               "max_segment_size": None, "indexing_threshold": 10000, "flush_interval_sec": 5,
               "max_optimization_threads": None, "memmap_threshold": None}
NAMED = {"vectors": {"dense": {"size": 384, "distance": "Cosine", "on_disk": False}},
         "sparse_vectors": {"bm25": {"modifier": "idf"}}}


def test_normalize_single_and_named_vectors():
    assert normalize_vectors({"size": 4, "distance": "cosine"}) == {"size": 4, "distance": "Cosine"}
    assert normalize_vectors({"size": "8", "distance": "DOT"}) == {"size": 8, "distance": "Dot"}
    assert normalize_vectors({"a": {"size": 4, "distance": "euclid", "on_disk": True}}) == \
        {"a": {"size": 4, "distance": "Euclid", "on_disk": True}}
    assert normalize_vectors(None) is None


@pytest.mark.parametrize("vectors,message", [
    ({"size": 0, "distance": "Cosine"}, "size must be a positive integer"),
    ({"size": "many", "distance": "Cosine"}, "size must be a positive integer"),
    ({"size": 4, "distance": "hamming"}, "distance must be one of Cosine, Euclid, Dot, Manhattan"),
    ({"dense": 384}, "vector dense: expected a dict"),
    ({}, "non-empty"),
])
def test_normalize_vectors_rejects(vectors, message):
    with pytest.raises(ValueError, match=message):
        normalize_vectors(vectors)


def test_sparse_params_default_to_empty_and_must_be_dicts():
    assert normalize_sparse({"bm25": None, "splade": {"modifier": "idf"}}) == {"bm25": {}, "splade": {"modifier": "idf"}}
    with pytest.raises(ValueError, match="sparse vector bm25"):
        normalize_sparse({"bm25": "idf"})


def test_same_vectors_match_and_unspecified_keys_are_not_compared():
    wanted = normalize_vectors({"dense": {"size": 384, "distance": "cosine"}})
    assert vector_mismatches(NAMED, wanted, {"bm25": {"modifier": "idf"}}) == []
    assert vector_mismatches(NAMED, wanted, {"bm25": {}}) == []
    assert vector_mismatches(NAMED, None, None) == []


def test_vector_differences_are_listed():
    wanted = normalize_vectors({"dense": {"size": 768, "distance": "dot"}})
    found = vector_mismatches(NAMED, wanted, None)
    assert "vectors.dense.size is 384, wanted 768" in found
    assert "vectors.dense.distance is 'Cosine', wanted 'Dot'" in found
    on_disk = normalize_vectors({"dense": {"size": 384, "distance": "cosine", "on_disk": True}})
    assert vector_mismatches(NAMED, on_disk, None) == ["vectors.dense.on_disk is False, wanted True"]


def test_vector_names_and_shape_differences():
    assert vector_mismatches(NAMED, normalize_vectors({"size": 384, "distance": "cosine"}), None) == \
        ["vectors: collection has named vectors ['dense'], wanted one unnamed vector"]
    assert vector_mismatches(NAMED, normalize_vectors({"dense": {"size": 384, "distance": "cosine"},
                                                       "title": {"size": 384, "distance": "cosine"}}), None) == \
        ["vectors: collection has names ['dense'], wanted ['dense', 'title']"]
    single = {"vectors": {"size": 4, "distance": "Cosine"}}
    assert vector_mismatches(single, normalize_vectors({"size": 4, "distance": "cosine"}), None) == []
    assert vector_mismatches(single, normalize_vectors({"size": 5, "distance": "cosine"}), None) == \
        ["vectors.size is 4, wanted 5"]


def test_sparse_differences():
    assert vector_mismatches(NAMED, None, {"bm25": {"modifier": "none"}}) == \
        ["sparse_vectors.bm25.modifier is 'idf', wanted 'none'"]
    assert vector_mismatches(NAMED, None, {}) == ["sparse_vectors: collection has names ['bm25'], wanted []"]


def test_optimizer_changes_only_given_fields_that_differ():
    assert optimizer_changes(CURRENT_OPT, {}) == {}
    assert optimizer_changes(CURRENT_OPT, {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000}) == {}
    assert optimizer_changes(CURRENT_OPT, {"deleted_threshold": 0.2 + 1e-12}) == {}  # float noise
    assert optimizer_changes(CURRENT_OPT, {"deleted_threshold": 0.3, "default_segment_number": 0,
                                           "indexing_threshold": None}) == {"deleted_threshold": 0.3}
    # a null current value (auto) differs from any given number
    assert optimizer_changes(CURRENT_OPT, {"max_optimization_threads": 2, "max_segment_size": 200000}) == \
        {"max_optimization_threads": 2, "max_segment_size": 200000}
    # fields Qdrant returns that the module does not manage are ignored; missing current config -> all given
    assert optimizer_changes(None, {"flush_interval_sec": 5}) == {"flush_interval_sec": 5}
