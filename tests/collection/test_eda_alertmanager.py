"""The aegis.rag.alertmanager event source (extensions/eda/plugins/event_source/alertmanager.py): a real
Alertmanager notification becomes one event per alert; bad requests get a clear 4xx and queue nothing."""

from __future__ import annotations

import asyncio
import importlib.util
import json

import httpx
import pytest

from tests.collection.conftest import COLLECTION_ROOT
from tests.stack import free_port

PLUGIN = COLLECTION_ROOT / "extensions" / "eda" / "plugins" / "event_source" / "alertmanager.py"
spec = importlib.util.spec_from_file_location("aegis_alertmanager_source", PLUGIN)
source = importlib.util.module_from_spec(spec)
spec.loader.exec_module(source)

# What Alertmanager 0.25 (Debian 12's) posts to a webhook_config (payload version 4)
NOTIFICATION = {
    "version": "4", "status": "firing", "receiver": "remediation", "groupKey": '{}:{alertname="AegisServiceDown"}',
    "truncatedAlerts": 0, "groupLabels": {"alertname": "AegisServiceDown"},
    "commonLabels": {"alertname": "AegisServiceDown", "severity": "P0"}, "commonAnnotations": {},
    "externalURL": "http://monitor-1:9093",
    "alerts": [
        {"status": "firing", "labels": {"alertname": "AegisServiceDown", "instance": "api-1:8910", "severity": "P0"},
         "annotations": {"summary": "api-1 is down", "runbook_url": "docs/operations/runbooks.md#api"},
         "startsAt": "2026-12-06T04:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://monitor-1:9090/graph", "fingerprint": "a1b2c3d4e5f60718"},
        {"status": "resolved", "labels": {"alertname": "AegisServiceDown", "instance": "api-2:8910", "severity": "P0"},
         "annotations": {}, "startsAt": "2026-12-06T03:50:00Z", "endsAt": "2026-12-06T03:55:00Z",
         "generatorURL": "http://monitor-1:9090/graph", "fingerprint": "0f1e2d3c4b5a6978"},
    ],
}


def serve(args: dict, exchange) -> tuple[list[dict], object]:
    """Runs the source with args on a free port, calls exchange(url) (a coroutine function) and returns
    (the events queued, what exchange returned)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def scenario():
        queue: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(source.main(queue, {"port": port, **args}))
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.01)
        try:
            result = await exchange(url)
        finally:
            task.cancel()
        events = []
        while not queue.empty():
            events.append(queue.get_nowait())
        return events, result

    return asyncio.run(scenario())


async def _chunked():
    yield b"{}"


def post(path="/alerts", **kwargs):
    if kwargs.get("content") == "chunked":  # no Content-Length: Transfer-Encoding chunked
        kwargs["content"] = _chunked()

    async def exchange(url):
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url + path, **kwargs)
    return exchange


def test_each_alert_of_a_notification_becomes_one_event():
    events, r = serve({}, post(json=NOTIFICATION))
    assert r.status_code == 202 and r.json() == {"events": 2}
    assert [e["alert"]["status"] for e in events] == ["firing", "resolved"]
    first = events[0]
    assert first["alert"]["labels"]["instance"] == "api-1:8910"
    assert first["alert"]["annotations"]["runbook_url"] == "docs/operations/runbooks.md#api"
    assert first["alert"]["fingerprint"] == "a1b2c3d4e5f60718" and first["alert"]["startsAt"] == "2026-12-06T04:00:00Z"
    assert first["meta"] == {"receiver": "remediation", "group_key": NOTIFICATION["groupKey"],
                             "external_url": "http://monitor-1:9093"}


def test_a_token_is_required_when_set():
    events, r = serve({"token": "s3cret"}, post(json=NOTIFICATION))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and events == []
    events, r = serve({"token": "s3cret"}, post(json=NOTIFICATION, headers={"Authorization": "Bearer wrong"}))
    assert r.status_code == 401 and events == []
    events, r = serve({"token": "s3cret"}, post(json=NOTIFICATION, headers={"Authorization": "Bearer s3cret"}))
    assert r.status_code == 202 and len(events) == 2


@pytest.mark.parametrize(("request_kwargs", "status", "message"), [
    ({"content": b"{not json"}, 400, "the body is not JSON"),
    ({"json": {"alerts": "none"}}, 400, "not an Alertmanager notification"),
    ({"json": [1, 2]}, 400, "not an Alertmanager notification"),
    ({"json": {"alerts": [{"status": "firing", "labels": {}}, {"status": "pending", "labels": {}}]}}, 400,
     "alerts[1]: expected status firing or resolved"),
    ({"json": {"alerts": [{"status": "firing"}]}}, 400, "alerts[0]: expected status firing or resolved and a labels"),
    ({"content": b"x" * 2048}, 413, "over the limit of 1024 bytes"),
    ({"content": "chunked"}, 411, "a Content-Length is required"),
], ids=["not-json", "alerts-not-a-list", "not-an-object", "bad-status", "no-labels", "too-large", "chunked"])
def test_bad_requests_get_a_clear_4xx_and_queue_nothing(request_kwargs, status, message):
    events, r = serve({"max_body_bytes": 1024}, post(**request_kwargs))
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert events == []  # a notification is queued whole or not at all


def test_other_paths_and_methods_are_refused():
    events, r = serve({}, post(path="/other", json=NOTIFICATION))
    assert r.status_code == 404 and "listens at /alerts" in r.json()["error"] and events == []

    async def get(url):
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(url + "/alerts")

    events, r = serve({}, get)
    assert r.status_code == 405 and r.headers["allow"] == "POST" and events == []


def test_a_misspelt_argument_is_an_error():
    with pytest.raises(ValueError, match=r"unknown arguments \['tokn'\]"):
        asyncio.run(source.main(asyncio.Queue(), {"tokn": "x"}))


def test_the_docstring_example_names_the_plugin_as_rulebooks_do():
    assert "aegis.rag.alertmanager:" in source.__doc__
    assert json.loads(json.dumps(source.DEFAULTS))["path"] == "/alerts"
