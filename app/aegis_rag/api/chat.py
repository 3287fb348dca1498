"""POST /chat: JSON answer, or Server-Sent Events with `stream: true`."""

import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from .auth import require_api_key
from .schemas import ChatResponse, ErrorResponse


def chat_router(request_model) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_api_key)])

    @router.post("/chat", response_model=ChatResponse,
                 responses={503: {"model": ErrorResponse}, 401: {"model": ErrorResponse}})
    def chat(body: request_model, request: Request):  # type: ignore[valid-type]
        service = request.app.state.service
        history = [t.model_dump() for t in body.history]
        if not body.stream:
            return service.chat(body.question, history, body.top_k).as_dict()
        events = service.chat_stream(body.question, history, body.top_k)  # retrieval errors raise here -> 503
        return StreamingResponse(_sse(events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def _sse(events):
    for name, data in events:
        yield f"event: {name}\ndata: {json.dumps(data)}\n\n"
