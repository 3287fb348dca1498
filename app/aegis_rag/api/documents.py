"""Document ingestion: upload, list, delete.

The upload is read by hand after the API-key check (see auth.py), within AEGIS_MAX_UPLOAD_BYTES and in
memory (body.py), so a refused or oversized upload is never spooled to disk.
Ingestion runs on its own bounded pool and stops, writing nothing, when its client goes away (ingestion.py).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from ..settings import Settings
from .auth import api_key_dependencies
from .body import read_upload
from .schemas import Deleted, DocumentList, UploadResult, error_responses

_UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "Markdown, text, HTML or PDF; the file name is the document's name"}}}}}}


def documents_router(settings: Settings) -> APIRouter:
    router = APIRouter(dependencies=api_key_dependencies(settings))
    auth = (401,) if settings.api_keys else ()

    @router.post("/documents", response_model=UploadResult, openapi_extra={"requestBody": _UPLOAD_BODY},
                 responses=error_responses(400, *auth, 413, 415, 422, 429, 503))
    async def upload(request: Request) -> UploadResult:
        service, ingests = request.app.state.service, request.app.state.ingests
        with ingests.slot():  # before the body is read: a busy server refuses at once
            name, content_type, data = await read_upload(request, service.settings.max_upload_bytes)
            result = await ingests.run(request, service.ingest_bytes, name or "upload.txt", data, content_type)
        await run_in_threadpool(service.refresh_gauges)
        return UploadResult.model_validate(result)

    @router.get("/documents", response_model=DocumentList, responses=error_responses(*auth, 503))
    def list_documents(request: Request) -> DocumentList:
        docs = request.app.state.service.documents()
        return DocumentList.model_validate({"documents": docs, "count": len(docs)})

    @router.delete("/documents/{doc_id}", response_model=Deleted, responses=error_responses(*auth, 404, 503))
    def delete_document(doc_id: str, request: Request) -> Deleted:
        if not request.app.state.service.delete_document(doc_id):
            raise HTTPException(status_code=404, detail=f"no document with id {doc_id}")
        return Deleted(id=doc_id, status="deleted")

    return router
