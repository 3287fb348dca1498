"""`aegis-rag serve` and `aegis-rag ingest`."""

from __future__ import annotations

import argparse
import logging
import mimetypes
import os
import shutil
import sys
from pathlib import Path

import httpx

from .errors import BadDocument, ConfigurationError, DependencyError
from .ingest.parsing import SUPPORTED_SUFFIXES
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aegis-rag", description="Aegis RAG service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API with uvicorn (production settings from AEGIS_* settings)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)

    ingest = sub.add_parser("ingest", help="index files and folders (recursively)")
    ingest.add_argument("paths", nargs="+", type=Path)
    how = ingest.add_mutually_exclusive_group()
    how.add_argument("--url", help="send files to this running API (default: the local API if it answers)")
    how.add_argument("--direct", action="store_true", help="write to the vector store directly")
    ingest.add_argument("--api-key", default=os.environ.get("AEGIS_API_KEY"), help="key for the API (env AEGIS_API_KEY)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except Exception as exc:
        print(f"aegis-rag: invalid settings: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve_cmd(settings, args)
    return ingest_cmd(settings, args)


def serve_cmd(settings: Settings, args) -> int:
    import uvicorn

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    if workers > 1 and settings.embedded:
        print("aegis-rag: embedded mode is one process; set AEGIS_QDRANT_URL to run several workers", file=sys.stderr)
        return 2
    if workers > 1:  # shared metric files for all workers, wiped at each start
        prom_dir = settings.data_dir / "prometheus-multiproc"
        shutil.rmtree(prom_dir, ignore_errors=True)
        prom_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom_dir)
    uvicorn.run("aegis_rag.api:app_factory", factory=True, host=host, port=port, workers=workers,
                backlog=settings.backlog, timeout_keep_alive=settings.keep_alive_s,
                limit_max_requests=settings.limit_max_requests if workers > 1 else None,
                limit_max_requests_jitter=settings.limit_max_requests_jitter, log_level=settings.log_level)
    return 0


def collect_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return files


def _document_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def ingest_cmd(settings: Settings, args) -> int:
    from tqdm import tqdm

    try:
        files = collect_files(args.paths)
    except FileNotFoundError as exc:
        print(f"aegis-rag: {exc}", file=sys.stderr)
        return 2
    url = args.url
    if not url and not args.direct:
        local = f"http://{settings.host}:{settings.port}"
        url = local if _api_alive(local) else None
    send = _http_sender(url, args.api_key) if url else _direct_sender(settings)
    print(f"ingesting {len(files)} file(s) {'through ' + url if url else 'directly into the store'}", file=sys.stderr)
    counts = {"created": 0, "updated": 0, "unchanged": 0, "failed": 0}
    for path in tqdm(files, unit="file", disable=args.quiet or not files, file=sys.stderr):
        try:
            result = send(path)
            counts[result["status"]] += 1
        except (BadDocument, DependencyError, ConfigurationError, OSError, RuntimeError) as exc:
            counts["failed"] += 1
            tqdm.write(f"{path}: {exc}", file=sys.stderr)
            if isinstance(exc, (ConfigurationError, DependencyError)):
                break  # the store or embedder is unusable: stop instead of failing every file
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 1 if counts["failed"] else 0


def _api_alive(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _http_sender(url: str, api_key: str | None):
    headers = {"X-API-Key": api_key} if api_key else {}
    client = httpx.Client(base_url=url, timeout=300, headers=headers)

    def send(path: Path) -> dict:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as fh:
            r = client.post("/documents", files={"file": (_document_name(path), fh, ctype)})
        if r.status_code != 200:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text[:200]
            raise RuntimeError(f"HTTP {r.status_code}: {detail}")
        return r.json()

    return send


def _direct_sender(settings: Settings):
    from .service import RagService

    service = RagService(settings)
    service.open()
    known = {d["id"]: d["content_hash"] for d in service.store.documents()}

    def send(path: Path) -> dict:
        return service.ingest_bytes(_document_name(path), path.read_bytes(), known=known)

    return send


if __name__ == "__main__":
    sys.exit(main())
