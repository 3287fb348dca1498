"""Document ingestion: upload, list, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile

from .auth import require_api_key

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/documents", status_code=200)
def upload(file: UploadFile, request: Request):
    service = request.app.state.service
    limit = service.settings.max_upload_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(status_code=413, detail=f"upload is over the limit of {limit} bytes")
    result = service.ingest_bytes(file.filename or "upload.txt", data, file.content_type)
    service.refresh_gauges()
    return result


@router.get("/documents")
def list_documents(request: Request):
    docs = request.app.state.service.documents()
    return {"documents": docs, "count": len(docs)}


@router.delete("/documents/{doc_id}")
def delete_document(doc_id: str, request: Request):
    if not request.app.state.service.delete_document(doc_id):
        raise HTTPException(status_code=404, detail=f"no document with id {doc_id}")
    return {"id": doc_id, "status": "deleted"}
