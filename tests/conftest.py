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
