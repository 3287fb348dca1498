"""Request bodies read by hand, after the API-key check and within a byte limit.

A declared Content-Length over the limit is refused before reading; a body without one (chunked) is
counted as it arrives and refused as soon as it passes the limit. Uploads are parsed in memory: a
refused upload never reaches a temporary file.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from python_multipart.exceptions import FormParserError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from .auth import REFUSED_HEADERS

MULTIPART_OVERHEAD = 16 * 1024  # boundaries and part headers around the file


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
