"""POST /chat: JSON answer, or Server-Sent Events with `stream: true`."""

import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .auth import require_api_key
from .schemas import ChatResponse, ErrorResponse


def chat_router(request_model) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_api_key)])

    @router.post("/chat", response_model=ChatResponse,
                 responses={503: {"model": ErrorResponse}, 401: {"model": ErrorResponse}})
    async def chat(body: request_model, request: Request):  # type: ignore[valid-type]
        # async with one explicit thread hop for the blocking work: a sync endpoint would cost extra hops
        # (response validation runs in the pool too); the service already builds ChatResponse's shape.
        service = request.app.state.service
        history = [t.model_dump() for t in body.history]
        if not body.stream:
            result = await run_in_threadpool(service.chat, body.question, history, body.top_k)
            return JSONResponse(result.as_dict())
        # retrieval errors raise here -> 503; tokens are then produced in the pool by Starlette
        events = await run_in_threadpool(service.chat_stream, body.question, history, body.top_k)
        return StreamingResponse(_sse(events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def _sse(events):
    for name, data in events:
        yield f"event: {name}\ndata: {json.dumps(data)}\n\n"
