"""AegisModule, the base of every aegis.rag module: connection options per service, clients, the boto3
check and failure reporting with the partial result."""

from __future__ import annotations

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.aegis.rag.plugins.doc_fragments import ollama as ollama_doc
from ansible_collections.aegis.rag.plugins.doc_fragments import qdrant as qdrant_doc
from ansible_collections.aegis.rag.plugins.doc_fragments import s3 as s3_doc
from ansible_collections.aegis.rag.plugins.module_utils import s3
from ansible_collections.aegis.rag.plugins.module_utils.base import (
    SERVICE_OPTIONS,
    AegisModule,
    service_argument_spec,
)
from ansible_collections.aegis.rag.plugins.module_utils.http_client import HttpError
from ansible_collections.aegis.rag.plugins.module_utils.staging import StagingError
from ansible_collections.aegis.rag.plugins.modules import qdrant_restore, qdrant_snapshot
from botocore.exceptions import ClientError


def module_with(monkeypatch, call_module, services=(), **args):
    """An AegisModule built from `args`, with exit_json/fail_json raising (see conftest)."""
    call_module  # noqa: B018 - the fixture patches AnsibleModule's exit_json and fail_json
    with patch_module_args(dict(args, _ansible_check_mode=False, _ansible_diff=False)):
        return AegisModule(dict(bucket=dict(type="str")), services=services, supports_check_mode=True)


def failure(module, action):
    """The result `action(module)` failed with (call_module's fail_json raises it as ModuleExit)."""
    with pytest.raises(Exception) as exc:
        action(module)
    assert type(exc.value).__name__ == "ModuleExit", exc.value
    assert exc.value.result["failed"] is True
    return exc.value.result


@pytest.mark.parametrize("service,fragment", [("qdrant", qdrant_doc), ("ollama", ollama_doc), ("s3", s3_doc)])
def test_service_options_match_their_doc_fragment(service, fragment):
    documented = yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"]
    spec = SERVICE_OPTIONS[service]
    assert set(spec) == set(documented)
    for name, doc in documented.items():
        assert spec[name]["type"] == doc["type"], name
        assert spec[name].get("default") == doc.get("default"), name
        assert spec[name].get("aliases", []) == doc.get("aliases", []), name


def test_argument_spec_merges_services_and_own_options_win():
    spec = service_argument_spec(("qdrant", "s3"), {"timeout": {"type": "int", "default": 5}, "bucket": {}})
    assert {"qdrant_url", "api_key", "s3_endpoint_url", "secret_key", "bucket"} <= set(spec)
    assert spec["timeout"] == {"type": "int", "default": 5}
    spec["qdrant_url"]["default"] = "changed"  # a copy: the shared table stays as it was
    assert SERVICE_OPTIONS["qdrant"]["qdrant_url"]["default"] == "http://127.0.0.1:6333"
    with pytest.raises(ValueError, match="unknown service 'redis'"):
        service_argument_spec(("redis",), {})


def test_missing_boto3_fails_with_a_clear_message_and_the_partial_result(monkeypatch, call_module):
    monkeypatch.setattr(s3, "HAS_BOTO3", False)
    monkeypatch.setattr(s3, "BOTO3_IMPORT_ERROR", "Traceback: No module named boto3")
    module = module_with(monkeypatch, call_module, services=("s3",), bucket="b")
    module.result["bucket"] = "b"
    result = failure(module, lambda m: m.s3_client())
    assert "Failed to import the required Python library (boto3)" in result["msg"]
    assert result["bucket"] == "b" and result["changed"] is False


def test_s3_modules_check_boto3_before_any_request(monkeypatch, call_module, closed_port_url):
    monkeypatch.setattr(s3, "HAS_BOTO3", False)
    monkeypatch.setattr(s3, "BOTO3_IMPORT_ERROR", "Traceback: No module named boto3")
    restore = call_module(qdrant_restore.main, {"qdrant_url": closed_port_url, "collection": "c", "bucket": "b"})
    upload = call_module(qdrant_snapshot.main, {"qdrant_url": closed_port_url, "collection": "c",
                                                "state": "s3_upload", "bucket": "b"})
    for result in (restore, upload):
        assert result["failed"] and "required Python library (boto3)" in result["msg"], result


def test_snapshot_states_without_s3_do_not_need_boto3(monkeypatch, call_module, closed_port_url):
    monkeypatch.setattr(s3, "HAS_BOTO3", False)
    result = call_module(qdrant_snapshot.main, {"qdrant_url": closed_port_url, "collection": "c", "timeout": 1})
    assert result["failed"] and "boto3" not in result["msg"]
    assert result["msg"].startswith("Qdrant request for snapshots of c failed: GET %s" % closed_port_url)


def test_reporting_turns_an_http_error_into_a_failure_with_the_partial_result(monkeypatch, call_module):
    module = module_with(monkeypatch, call_module)
    module.result["step"] = "listing"

    def broken(m):
        with m.reporting(http="cannot list things", s3="unused", hint="h"):
            raise HttpError("GET http://x/y returned HTTP 500: boom", 500, "http://x/y", '{"error": "boom"}')

    result = failure(module, broken)
    assert result["msg"] == "cannot list things: GET http://x/y returned HTTP 500: boom"
    assert (result["status"], result["url"], result["body"]) == (500, "http://x/y", '{"error": "boom"}')
    assert result["step"] == "listing" and result["hint"] == "h"


def test_reporting_describes_s3_errors_and_staging_errors(monkeypatch, call_module):
    module = module_with(monkeypatch, call_module)

    def s3_denied(m):
        with m.reporting(s3="S3 request failed"):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    def no_dir(m):
        with m.reporting():
            raise StagingError("cannot stage a download in /nowhere: no such directory")

    assert failure(module, s3_denied)["msg"] == "S3 request failed: AccessDenied: no"
    assert failure(module, no_dir)["msg"] == "cannot stage a download in /nowhere: no such directory"


def test_reporting_lets_errors_of_a_kind_it_was_not_told_about_through(monkeypatch, call_module):
    module = module_with(monkeypatch, call_module)
    with pytest.raises(HttpError):
        with module.reporting(s3="S3 request failed"):
            raise HttpError("GET http://x failed: timed out")
    with pytest.raises(ClientError):
        with module.reporting(http="Qdrant request failed"):
            raise ClientError({"Error": {"Code": "NoSuchBucket", "Message": "m"}}, "ListObjectsV2")
