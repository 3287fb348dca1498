"""Argument validation of the qdrant_* modules, run in-process: every case must fail with a clear
msg before any request is sent (the Qdrant URL points at a closed port to prove it)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ansible.module_utils.testing")
from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.aegis.rag.plugins.module_utils.base import service_argument_spec  # noqa: E402
from ansible_collections.aegis.rag.plugins.modules import (  # noqa: E402
    qdrant_collection, qdrant_restore, qdrant_snapshot)

NOWHERE = {"qdrant_url": "http://127.0.0.1:9", "timeout": 1}


def run(module, args, capsys):
    with patch_module_args(dict(NOWHERE, **args)):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("args,message", [
    ({"name": "c", "optimizers_config": {"deleted_threshold": 1.5}}, "deleted_threshold must be between 0 and 1"),
    ({"name": "c", "optimizers_config": {"indexing_threshold": -1}}, "indexing_threshold must not be negative"),
    ({"name": "c", "optimizers_config": {"vacuum_min": 1}}, "vacuum_min"),
    ({"name": "c", "vectors": {"size": 4, "distance": "hamming"}}, "distance must be one of"),
    ({"name": "c", "state": "gone"}, "value of state must be one of"),
    ({}, "missing required arguments: name"),
])
def test_collection_bad_args(args, message, capsys):
    out = run(qdrant_collection, args, capsys)
    assert out["failed"] and message in out["msg"]


@pytest.mark.parametrize("args,message", [
    ({"collection": "c", "state": "absent"}, "snapshot_name"),
    ({"collection": "c", "state": "prune"}, "keep_last, max_age"),
    ({"collection": "c", "state": "download"}, "dest"),
    ({"collection": "c", "state": "s3_upload"}, "bucket"),
    ({"collection": "c", "state": "prune", "keep_last": "many"}, "keep_last"),
])
def test_snapshot_bad_args(args, message, capsys):
    out = run(qdrant_snapshot, args, capsys)
    assert out["failed"] and message in out["msg"]


@pytest.mark.parametrize("args,message", [
    ({"collection": "c", "bucket": "b", "backup_date": "2025-01-31"}, "backup_date must be YYYYMMDD"),
    ({"collection": "c", "bucket": "b", "backup_date": "20250231"}, "not a calendar date"),
    ({"collection": "c", "bucket": "b", "backup_date": "20250131", "key": "k"}, "mutually exclusive"),
    ({"collection": "c", "bucket": "b", "recover_via": "s3"}, "value of recover_via must be one of"),
    ({"collection": "c"}, "missing required arguments: bucket"),
])
def test_restore_bad_args(args, message, capsys):
    out = run(qdrant_restore, args, capsys)
    assert out["failed"] and message in out["msg"]


def test_secrets_are_no_log():
    collection_spec = service_argument_spec(("qdrant",), qdrant_collection.argument_spec())
    restore_spec = service_argument_spec(("qdrant", "s3"), qdrant_restore.argument_spec())
    snapshot_spec = service_argument_spec(("qdrant", "s3"), qdrant_snapshot.argument_spec())
    assert collection_spec["api_key"]["no_log"] is True
    for name in ("api_key", "access_key", "secret_key", "session_token"):
        assert restore_spec[name]["no_log"] is True, name
        assert snapshot_spec[name]["no_log"] is True, name


def test_qdrant_down_fails_cleanly(capsys):
    out = run(qdrant_collection, {"name": "c", "vectors": {"size": 4, "distance": "Cosine"}}, capsys)
    assert out["failed"] and out["msg"].startswith("Qdrant request for collection c failed: GET http://127.0.0.1:9")
    assert out["status"] is None and "Traceback" not in out["msg"]


def test_presigned_url_signature_is_redacted_from_messages():
    text = ("Failed to download snapshot from http://127.0.0.1:9000/b/k.snapshot?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIA%2F20250101&X-Amz-Security-Token=secret-token&X-Amz-Signature=abc: status 403")
    assert qdrant_restore.redact_signature(text) == \
        "Failed to download snapshot from http://127.0.0.1:9000/b/k.snapshot?<signature redacted>: status 403"
    assert qdrant_restore.redact_signature("no url here") == "no url here"
    assert qdrant_restore.redact_signature(None) == ""
