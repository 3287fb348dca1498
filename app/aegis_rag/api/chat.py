"""POST /chat: JSON answer, or Server-Sent Events with `stream: true`.

The body is read by hand after the API-key check (see auth.py), within a byte limit, then validated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import chain

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from ..settings import Settings
from .auth import api_key_dependencies
from .body import read_body
from .schemas import CHAT_RESPONSE, SSE_EVENT, ChatResponse, chat_body_limit, error_responses

Event = tuple[str, dict]


def chat_router(settings: Settings, request_model: type[BaseModel]) -> APIRouter:
    router = APIRouter(dependencies=api_key_dependencies(settings))
    limit = chat_body_limit(settings)
    statuses = (401, 413, 422, 503) if settings.api_keys else (413, 422, 503)

    @router.post("/chat", response_model=ChatResponse, responses={
        200: {"description": "the answer, as JSON or (stream: true) as Server-Sent Events",
              "content": {"text/event-stream": {"schema": SSE_EVENT}}},
        **error_responses(*statuses)},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{request_model.__name__}"}}}}})
    async def chat(request: Request) -> Response:
        # async with one explicit thread hop for the blocking work: a sync endpoint would cost extra hops.
        body = _validated(request_model, await read_body(request, limit))
        service = request.app.state.service
        history = [t.model_dump() for t in body.history]
        if not body.stream:
            result = await run_in_threadpool(service.chat, body.question, history, body.top_k)
            return Response(CHAT_RESPONSE.dump_json(result), media_type="application/json")
        # retrieval errors, and LLM errors before the first token when configured to fail, raise here -> 503
        events = await run_in_threadpool(_started, service.chat_stream, body.question, history, body.top_k)
        return StreamingResponse(_sse(events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def _validated(model: type[BaseModel], raw: bytes):
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:  # same reply as FastAPI's own body validation (see the 422 handler)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _started(chat_stream, *args) -> Iterator[Event]:
    """Pulls the first event before any header is sent, so a failure before it can still be a 503."""
    events = chat_stream(*args)
    first = next(events)
    return chain([first], events)


def _sse(events: Iterator[Event]) -> Iterator[str]:
    for name, data in events:
        yield f"event: {name}\ndata: {json.dumps(data)}\n\n"
