"""Fault injection shared by every HTTP double (Qdrant, Ollama, Jina).

Each double wraps its ASGI app with :func:`with_faults`. Rules are switched at run time over HTTP on
the double itself (the control path is never subject to faults nor to auth):

    GET    /_faults            -> {"rules": [...]}
    POST   /_faults  {rule}    -> {"id": n}       add a rule
    DELETE /_faults            -> {}              clear all rules

A rule (all fields optional)::

    {"path": "^/api/chat$",   # regex on the request path (default: every path)
     "method": "POST",        # only this method
     "model": "llama3",       # only requests whose JSON body has this "model" (or "name")
     "latency_ms": 500,       # sleep before handling
     "error_rate": 0.5,       # fraction of matching requests answered with `status`/`body` (default 0:
                              # a rule with only `status`/`body` never answers; give 1.0 for every request)
     "status": 503, "body": {"error": "..."},
     "garbage": true,         # answer 200 with a body that is not JSON
     "first_token_delay_ms": 2000,   # delay the first body chunk of the response (slow first token)
     "times": 3}              # the rule expires after matching this many requests

Process-level faults (hard down, hung process) are the launcher's job: ``tests.stack`` can stop a
double (connection refused) or SIGSTOP it (connections hang).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

CONTROL_PATH = "/_faults"


@dataclass
class Rule:
    path: str = ".*"
    method: str | None = None
    model: str | None = None
    latency_ms: int = 0
    error_rate: float = 0.0
    status: int = 500
    body: Any = None
    garbage: bool = False
    first_token_delay_ms: int = 0
    times: int | None = None
    id: int = 0
    _regex: re.Pattern = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path)
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be within [0, 1]")

    def public(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def matches(self, method: str, path: str, model: str | None) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if self.model and self.model != model:
            return False
        return bool(self._regex.search(path))


class FaultState:
    """Thread-safe rule list with a seeded RNG, so error rates are reproducible."""

    def __init__(self, seed: int = 1234) -> None:
        self._rules: list[Rule] = []
        self._next_id = 1
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def add(self, spec: dict) -> Rule:
        allowed = {k for k in Rule.__dataclass_fields__ if not k.startswith("_") and k != "id"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        with self._lock:
            rule = Rule(**spec, id=self._next_id)
            self._next_id += 1
            self._rules.append(rule)
            return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict]:
        with self._lock:
            return [r.public() for r in self._rules]

    def pick(self, method: str, path: str, model: str | None) -> list[Rule]:
        with self._lock:
            hits = [r for r in self._rules if r.matches(method, path, model)]
            for r in hits:
                if r.times is not None:
                    r.times -= 1
                    if r.times <= 0:
                        self._rules.remove(r)
            return hits

    def roll(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate


async def _send_json(send, status: int, payload: Any, raw: bytes | None = None) -> None:
    body = raw if raw is not None else json.dumps(payload).encode()
    ctype = b"text/plain" if raw is not None else b"application/json"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _model_of(body: bytes) -> str | None:
    if not body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        model = data.get("model") or data.get("name")
        return model if isinstance(model, str) else None
    return None


def with_faults(app, state: FaultState | None = None):
    """Wrap an ASGI app so rules in ``state`` apply to it; returns the wrapped app.

    The wrapper exposes ``.faults`` (the FaultState) so in-process tests can drive it directly.
    """
    state = state or FaultState()

    async def control(scope, receive, send) -> None:
        method = scope["method"]
        if method == "GET":
            return await _send_json(send, 200, {"rules": state.rules()})
        if method == "DELETE":
            state.clear()
            return await _send_json(send, 200, {})
        if method == "POST":
            body = await _read_body(receive)
            try:
                rule = state.add(json.loads(body or b"{}"))
            except (ValueError, TypeError, re.error) as exc:
                return await _send_json(send, 400, {"error": str(exc)})
            return await _send_json(send, 200, {"id": rule.id})
        return await _send_json(send, 405, {"error": "method not allowed"})

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if scope["path"] == CONTROL_PATH:
            return await control(scope, receive, send)
        if not state._rules:  # fast path: no faults configured
            return await app(scope, receive, send)

        body = await _read_body(receive)
        rules = state.pick(scope["method"], scope["path"], _model_of(body))
        latency = sum(r.latency_ms for r in rules)
        if latency:
            await asyncio.sleep(latency / 1000)
        for r in rules:
            if r.garbage:
                return await _send_json(send, 200, None, raw=b"<html>upstream garbage \x00\xff")
            if r.error_rate and state.roll(r.error_rate):
                payload = r.body if r.body is not None else {"error": f"injected fault (rule {r.id})"}
                return await _send_json(send, r.status, payload)

        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        delay = max((r.first_token_delay_ms for r in rules), default=0)
        if not delay:
            return await app(scope, replay, send)

        first = True

        async def slow_send(message):
            nonlocal first
            if message["type"] == "http.response.body" and first:
                first = False
                await asyncio.sleep(delay / 1000)
            await send(message)

        return await app(scope, replay, slow_send)

    wrapped.faults = state
    return wrapped


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)
