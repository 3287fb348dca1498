"""Request bodies read by hand, after the API-key check and within a byte limit.

A declared Content-Length over the limit is refused before reading; a body without one (chunked) is
counted as it arrives and refused as soon as it passes the limit. Uploads are parsed in memory: a
refused upload never reaches a temporary file. DrainUnreadBody makes sure the client reads the refusal.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import FormParserError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import REFUSED_HEADERS

MULTIPART_OVERHEAD = 16 * 1024  # boundaries and part headers around the file
DRAIN_MAX_BYTES = 8 * 1024 * 1024  # what a refused request may still send before its connection is closed
DRAIN_MAX_S = 5.0


class DrainUnreadBody:
    """ASGI middleware: reads and discards the unread rest of a request body before its response ends.

    Closing a connection with unread bytes makes the kernel answer with a reset, which can destroy a
    refusal (413, 401, 429) before the client reads it. The response is sent first; the rest of the body is
    then read, up to DRAIN_MAX_BYTES or DRAIN_MAX_S, until the client stops sending (most clients stop once
    they read a final refusal), and only then does the response end.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        body_read = False

        async def watched_receive() -> Message:
            nonlocal body_read
            message = await receive()
            body_read = body_read or message["type"] == "http.disconnect" or not message.get("more_body", False)
            return message

        async def draining_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False) and not body_read:
                await send({**message, "more_body": True})
                await _discard_rest(receive)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, watched_receive, draining_send)


def _has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") not in (b"0", b"")


async def _discard_rest(receive: Receive) -> None:
    received = 0
    with anyio.move_on_after(DRAIN_MAX_S):
        while received <= DRAIN_MAX_BYTES:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                return
            received += len(message.get("body", b""))


def too_large(limit: int, what: str) -> HTTPException:
    return HTTPException(status_code=413, detail=f"{what} is over the limit of {limit} bytes",
                         headers={"Connection": REFUSED_HEADERS["Connection"]})


async def bounded_stream(request: Request, limit: int, refusal: HTTPException) -> AsyncGenerator[bytes, None]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise refusal
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise refusal
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in bounded_stream(request, limit, too_large(limit, "request body"))])


async def read_upload(request: Request, limit: int) -> tuple[str | None, str | None, bytes]:
    """The `file` field of a multipart/form-data body: (file name, content type, bytes)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise _missing_file("expected a multipart/form-data body with a `file` field")
    body = bounded_stream(request, limit + MULTIPART_OVERHEAD, too_large(limit, "upload"))
    parser = MultiPartParser(request.headers, body, max_files=1, max_fields=10, max_part_size=MULTIPART_OVERHEAD)
    parser.spool_max_size = limit + MULTIPART_OVERHEAD  # keep the file in memory: it is bounded anyway
    try:
        form = await parser.parse()
    except (MultiPartException, FormParserError) as exc:
        raise HTTPException(status_code=400, detail=f"malformed multipart body: {exc}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _missing_file("Field required")
    data = await upload.read()
    await form.close()
    if len(data) > limit:
        raise too_large(limit, "upload")
    return upload.filename, upload.content_type, data


def _missing_file(message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "missing", "loc": ("body", "file"), "msg": message, "input": None}])
