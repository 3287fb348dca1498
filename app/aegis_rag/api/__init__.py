"""The FastAPI application: routers, error handlers, metrics instrumentation, lifecycle."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .. import __version__
from ..errors import Abandoned, BadDocument, ConfigurationError, DependencyError
from ..service import RagService
from ..settings import Settings, get_settings
from . import health
from .body import DrainUnreadBody
from .chat import chat_router
from .documents import documents_router
from .ingestion import Ingests
from .recycle import CountRequests, Recycler
from .schemas import InvalidInput, chat_request_model

log = logging.getLogger("aegis_rag")

HTTP_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60)


def create_app(settings: Settings | None = None, service: RagService | None = None) -> FastAPI:
    settings = settings or get_settings()

    recycler = _recycler(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.service is None:
            app.state.service = RagService(settings)
        try:
            app.state.service.open()
        except DependencyError as exc:  # start anyway: /ready says what is missing, retried on use
            log.warning("starting without %s: %s", exc.dependency, exc.detail)
        except ConfigurationError as exc:  # e.g. embedding model mismatch: /ready and /chat carry the message
            log.error("the vector store cannot be used: %s", exc)
        if recycler:
            recycler.serving()
        yield
        if recycler:
            recycler.stopping()
        app.state.ingests.close()  # every running ingest was abandoned or has finished by now
        app.state.service.close()

    app = FastAPI(title="Aegis", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.service = service
    app.state.ingests = Ingests(settings.max_concurrent_ingests)
    request_model = chat_request_model(settings)
    app.include_router(health.router)
    app.include_router(chat_router(settings, request_model))
    app.include_router(documents_router(settings))
    _true_openapi(app, request_model)
    # HTTP metrics live in the app's own registry, so every app (one per worker; several in tests)
    # records its own; /metrics exposes them with Aegis' stage metrics.
    app.state.http_registry = CollectorRegistry()
    # Latency buckets past the manual's targets (P95 < 2 s; alerts at 2 and 5 s): the library's (0.1, 0.5, 1) put every
    # slower request in +Inf, and histogram_quantile could never say more than 1 s.
    Instrumentator(should_group_status_codes=True, excluded_handlers=["/metrics"],
                   registry=app.state.http_registry).instrument(app, latency_lowr_buckets=HTTP_LATENCY_BUCKETS)
    if recycler:
        app.add_middleware(CountRequests, recycler=recycler)
    app.add_middleware(DrainUnreadBody)  # outermost: every refusal reaches its client
    _error_handlers(app)
    return app


def _error(status: int, error: str, detail: str, dependency: str | None = None, headers=None) -> JSONResponse:
    body = {"error": error, "detail": detail}
    if dependency:
        body["dependency"] = dependency
    return JSONResponse(body, status_code=status, headers=headers)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DependencyError)
    async def dependency_error(request: Request, exc: DependencyError):
        log.warning("%s %s: %s unavailable: %s", request.method, request.url.path, exc.dependency, exc.detail)
        retry_after = getattr(exc, "retry_after_header", "5")  # an open circuit knows the cool-down left
        return _error(exc.status, "dependency unavailable", exc.detail, exc.dependency, {"Retry-After": retry_after})

    @app.exception_handler(ConfigurationError)
    async def configuration_error(request: Request, exc: ConfigurationError):
        return _error(503, "misconfigured", str(exc), "vector_store")

    @app.exception_handler(BadDocument)
    async def bad_document(request: Request, exc: BadDocument):
        return _error(exc.status, "bad document", str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError):
        fields = [{"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "message": e["msg"]}
                  for e in exc.errors()]
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse({"error": "invalid input", "detail": detail, "fields": fields}, status_code=422)

    @app.exception_handler(Abandoned)
    async def abandoned(request: Request, exc: Abandoned):  # the client is gone, or the server is stopping
        return _error(503, "abandoned", str(exc), headers={"Retry-After": "5", "Connection": "close"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # every method of the path, not only those of the first route that matched it
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return _error(exc.status_code, "request refused" if exc.status_code < 500 else "server error",
                      str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal error", "an unexpected error occurred; details are in the server log")


def _allowed_methods(request: Request) -> str:
    routes = request.app.router.routes
    return ", ".join(m for m in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
                     if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes))


def _true_openapi(app: FastAPI, request_model: type[BaseModel]) -> None:
    """/openapi.json as the API behaves: the /chat request model (its body is read by hand, see chat.py)
    and the app's own 422 body instead of FastAPI's default."""
    generate = app.openapi

    def openapi() -> dict:
        doc = app.openapi_schema
        if doc is None:
            doc = generate()
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            request_schema = request_model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(request_schema.pop("$defs", {}))
            schemas[request_model.__name__] = request_schema
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            _replace_refs(doc, "#/components/schemas/HTTPValidationError",
                          f"#/components/schemas/{InvalidInput.__name__}")
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _replace_refs(node, old: str, new: str) -> None:
    if isinstance(node, dict):
        if node.get("$ref") == old:
            node["$ref"] = new
        for value in node.values():
            _replace_refs(value, old, new)
    elif isinstance(node, list):
        for value in node:
            _replace_refs(value, old, new)


def _recycler(settings: Settings) -> Recycler | None:
    """Several workers recycle one at a time (recycle.py); `aegis-rag serve` empties their folder at start."""
    if settings.workers < 2 or not settings.limit_max_requests:
        return None
    return Recycler(settings.data_dir / "serving-workers", settings.limit_max_requests,
                    settings.limit_max_requests_jitter, settings.workers)


def app_factory() -> FastAPI:
    """Entry point for uvicorn workers (`aegis_rag.api:app_factory`, factory=True). A worker of several is a new
    process: it logs as `aegis-rag serve` does (else only warnings, without their source); basicConfig does nothing
    where the root logger has a handler already (one worker: `aegis-rag serve`'s process). The calls to Qdrant, Ollama
    and Jina are in the metrics, not a log line each."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return create_app()
