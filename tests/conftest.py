"""Shared fixtures for every test suite: the test stack (doubles, S3, Redis, Prometheus), the local embedder."""

import sys

import pytest

pytest_plugins = ["tests.fixtures"]


@pytest.fixture(scope="session")
def local_embedder(tmp_path_factory):
    """The bundled MiniLM embedder, exported to ONNX once per session and shared by every test."""
    from aegis_rag.embeddings import LocalEmbedder

    # Importing ansible.module_utils (the collection's unit tests do) replaces sys.intern with a callable
    # object, which torch's exporter (torch._dynamo) refuses; export with the original function in place.
    patched = sys.intern
    sys.intern = getattr(patched, "unpatched_implementation", patched)
    try:
        return LocalEmbedder.bundled("onnx", tmp_path_factory.mktemp("aegis-models"))
    finally:
        sys.intern = patched


def pytest_collection_modifyitems(items):
    """The Molecule scenarios first: the fleet, then the others. `make test` runs pytest with `-n 2 --dist loadfile
    --no-loadscope-reorder`: one worker takes the fleet (~41 min) at once, the other the other scenarios (~20 min)
    and then, with the first once the fleet is done, the rest of the suite."""
    first = ["tests/molecule/test_fleet_scenario.py", "tests/molecule/test_scenarios.py"]
    items.sort(key=lambda item: first.index(path) if (path := item.nodeid.split("::")[0]) in first else len(first))
