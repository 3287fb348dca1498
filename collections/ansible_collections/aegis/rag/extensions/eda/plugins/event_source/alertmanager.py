"""aegis.rag.alertmanager: an ansible-rulebook event source that receives Alertmanager's webhook.

Each alert of a notification becomes one event:

    {"alert": {"status": "firing", "labels": {...}, "annotations": {...}, "fingerprint": "...",
               "startsAt": "...", "endsAt": "...", "generatorURL": "..."},
     "meta": {"receiver": "...", "group_key": "...", "external_url": "..."}}

so a rule reads `event.alert.labels.alertname`, `event.alert.labels.instance` and `event.alert.status`.

Arguments (all optional):
    host            address to listen on (default 127.0.0.1)
    port            port to listen on (default 5050)
    path            the webhook's path (default /alerts); other paths get 404
    token           when set, a request needs `Authorization: Bearer <token>` (401 without it); Alertmanager's
                    webhook_config sends it with http_config.authorization.credentials(_file)
    max_body_bytes  larger notifications get 413 without being read (default 1048576)

Replies: 202 with {"events": n} once the events are queued; 400 (not JSON, not a notification, an alert
without status or labels), 401, 404, 405 (Allow: POST), 411 (no Content-Length), 413, each with
{"error": ...}. One request per connection. Only the Python standard library: nothing to install beside
ansible-rulebook.

    - name: Aegis remediation
      hosts: all
      sources:
        - aegis.rag.alertmanager:
            port: 5050
            token: "{{ remediation_webhook_token }}"
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

DEFAULTS = {"host": "127.0.0.1", "port": 5050, "path": "/alerts", "token": None, "max_body_bytes": 1 << 20}
READ_TIMEOUT_S = 10
STATUSES = ("firing", "resolved")
REASONS = {202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 411: "Length Required", 413: "Content Too Large", 431: "Header Fields Too Large"}


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}


def events_of(notification: Any) -> list[dict]:
    """One event per alert of an Alertmanager notification (webhook payload version 4); Refused(400) if it is not one."""
    if not isinstance(notification, dict) or not isinstance(notification.get("alerts"), list):
        raise Refused(400, "not an Alertmanager notification: expected an object with an `alerts` list")
    meta = {"receiver": notification.get("receiver"), "group_key": notification.get("groupKey"),
            "external_url": notification.get("externalURL")}
    events = []
    for index, alert in enumerate(notification["alerts"]):
        if not isinstance(alert, dict) or alert.get("status") not in STATUSES or not isinstance(alert.get("labels"), dict):
            raise Refused(400, f"alerts[{index}]: expected status firing or resolved and a labels object")
        fields = ("status", "labels", "annotations", "fingerprint", "startsAt", "endsAt", "generatorURL")
        event_alert = {name: alert.get(name) for name in fields}
        event_alert["annotations"] = event_alert["annotations"] or {}
        events.append({"alert": event_alert, "meta": meta})
    return events


async def read_request(reader: asyncio.StreamReader, settings: dict) -> Any:
    """The notification of one request, or Refused."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
    except asyncio.LimitOverrunError:
        raise Refused(431, "request headers too large") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise Refused(400, "malformed request line")
    method, target, _version = parts
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if target.split("?", 1)[0] != settings["path"]:
        raise Refused(404, f"no webhook at {target.split('?', 1)[0]}; it listens at {settings['path']}")
    if method != "POST":
        raise Refused(405, "only POST", {"Allow": "POST"})
    if settings["token"]:
        given = headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {settings['token']}".encode()):
            raise Refused(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
    length = headers.get("content-length", "")
    if not length.isdigit():
        raise Refused(411, "a Content-Length is required")
    if int(length) > settings["max_body_bytes"]:
        raise Refused(413, f"notification over the limit of {settings['max_body_bytes']} bytes")
    body = await asyncio.wait_for(reader.readexactly(int(length)), READ_TIMEOUT_S)
    try:
        return json.loads(body)
    except ValueError:
        raise Refused(400, "the body is not JSON") from None


async def handle(queue: asyncio.Queue, settings: dict, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    status, headers, reply = 202, {}, {}
    try:
        events = events_of(await read_request(reader, settings))
        for event in events:
            await queue.put(event)
        reply = {"events": len(events)}
    except Refused as exc:
        status, headers, reply = exc.status, exc.headers, {"error": str(exc)}
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        status, reply = 408, {"error": "the request did not arrive in time"}
    body = json.dumps(reply).encode()
    head = [f"HTTP/1.1 {status} {REASONS[status]}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close"] + [f"{k}: {v}" for k, v in headers.items()]
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(queue: asyncio.Queue, args: dict) -> None:
    """ansible-rulebook's entry point: serve until cancelled."""
    unknown = set(args) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"aegis.rag.alertmanager: unknown arguments {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    settings = {**DEFAULTS, **args}

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle(queue, settings, reader, writer)

    server = await asyncio.start_server(on_connect, settings["host"], int(settings["port"]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":  # a manual try: prints each event

    class _PrintQueue(asyncio.Queue):
        async def put(self, item: Any) -> None:
            print(json.dumps(item))

    asyncio.run(main(_PrintQueue(), {}))
