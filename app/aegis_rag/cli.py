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
from pydantic import ValidationError

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
        print(f"aegis-rag: invalid settings: {settings_problem(exc)}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve_cmd(settings, args)
    return ingest_cmd(settings, args)


def settings_problem(exc: Exception) -> str:
    """One line (the journal's unit of search) naming each bad setting, its variable and, unless it is a
    secret, the value given: `top_k (AEGIS_TOP_K): Input should be a valid integer, ... (given 'x')`."""
    if not isinstance(exc, ValidationError):
        return " ".join(str(exc).split())
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        where = f"{name} (AEGIS_{name.upper()})" if error["loc"] else name
        secret = any(word in name for word in ("key", "password", "secret", "token"))
        given = "" if secret or "input" not in error else f" (given {error['input']!r:.80})"
        problems.append(f"{where}: {error['msg']}{given}")
    return "; ".join(problems)


def serve_cmd(settings: Settings, args) -> int:
    import uvicorn

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    if workers > 1 and settings.embedded:
        print("aegis-rag: embedded mode is one process; set AEGIS_QDRANT_URL to run several workers", file=sys.stderr)
        return 2
    if workers > 1:  # shared metric files and the serving workers' marks (api/recycle.py), wiped at each start
        for shared in ("prometheus-multiproc", "serving-workers"):
            shutil.rmtree(settings.data_dir / shared, ignore_errors=True)
            (settings.data_dir / shared).mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.data_dir / "prometheus-multiproc")
        os.environ["AEGIS_WORKERS"] = str(workers)  # the workers' settings: they recycle one at a time
    # uvicorn's own request limit would let every worker exit at once: the app recycles them (api/recycle.py).
    uvicorn.run("aegis_rag.api:app_factory", factory=True, host=host, port=port, workers=workers,
                backlog=settings.backlog, timeout_keep_alive=settings.keep_alive_s, log_level=settings.log_level,
                timeout_graceful_shutdown=settings.shutdown_timeout_s)
    stop_resource_tracker()
    return 0


def stop_resource_tracker() -> None:
    """Wait for multiprocessing's resource tracker (started with the workers) to end before this process does. Left
    running, systemd kills it after the main process (KillMode=mixed) and, where it cannot see the unit's cgroup
    empty (systemd in a container on cgroup v1), waits out TimeoutStopSec: every stop took 32 s on the test hosts."""
    from multiprocessing import resource_tracker

    stop = getattr(resource_tracker._resource_tracker, "_stop", None)  # CPython's own (3.8+), not public
    if stop is not None:
        stop()


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


class StopRun(Exception):
    """Every remaining file would fail the same way (API gone, store unusable): stop the run."""


class FileFailed(Exception):
    """This file could not be indexed; the others may still be."""


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
    try:
        send = _http_sender(url, args.api_key) if url else _direct_sender(settings)
    except StopRun as exc:
        print(f"aegis-rag: {exc}", file=sys.stderr)
        return 1
    print(f"ingesting {len(files)} file(s) {'through ' + url if url else 'directly into the store'}", file=sys.stderr)
    counts = {"created": 0, "updated": 0, "unchanged": 0, "failed": 0}
    done, stop = 0, None
    try:
        for path in tqdm(files, unit="file", disable=args.quiet or not files, file=sys.stderr):
            done += 1
            try:
                counts[send(path)] += 1
            except FileFailed as exc:
                counts["failed"] += 1
                tqdm.write(f"{path}: {exc}", file=sys.stderr)
            except StopRun as exc:
                counts["failed"] += 1
                stop = f"{path}: {exc}"
                break
    except KeyboardInterrupt:
        stop = "interrupted"
    print(" ".join(f"{k}={v}" for k, v in counts.items()) + f" skipped={len(files) - done}")
    if stop:
        print(f"aegis-rag: {stop}; stopped after {done} of {len(files)} file(s)", file=sys.stderr)
        return 130 if stop == "interrupted" else 1
    return 1 if counts["failed"] else 0


def _api_alive(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


_STOP_STATUSES = {401, 403, 502, 503, 504}  # every further file would get the same answer


def _http_sender(url: str, api_key: str | None):
    headers = {"X-API-Key": api_key} if api_key else {}
    client = httpx.Client(base_url=url, timeout=300, headers=headers)

    def send(path: Path) -> str:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            with path.open("rb") as fh:
                r = client.post("/documents", files={"file": (_document_name(path), fh, ctype)})
        except OSError as exc:
            raise FileFailed(f"cannot read: {exc.strerror or exc}") from None
        except httpx.ReadTimeout:
            raise FileFailed(f"the API at {url} did not answer within 300 s") from None
        except httpx.TransportError as exc:
            raise StopRun(f"the API at {url} is unreachable or closed the connection "
                          f"({_transport_reason(exc)})") from None
        if r.status_code != 200:
            failure = StopRun if r.status_code in _STOP_STATUSES else FileFailed
            raise failure(f"the API answered HTTP {r.status_code}: {_reply_detail(r)}")
        try:
            status = r.json()["status"]
        except (ValueError, KeyError, TypeError):
            raise FileFailed(f"unexpected reply from the API: {r.text[:200]!r}") from None
        if status not in ("created", "updated", "unchanged"):
            raise FileFailed(f"unexpected status from the API: {status!r}")
        return status

    return send


def _transport_reason(exc: httpx.TransportError) -> str:
    return str(exc) or type(exc).__name__


def _reply_detail(r: httpx.Response) -> str:
    try:
        body = r.json()
        detail = body.get("detail") or body.get("error") if isinstance(body, dict) else body
    except ValueError:
        detail = r.text
    return str(detail)[:200]


def _direct_sender(settings: Settings):
    from .service import RagService

    try:
        service = RagService(settings)
        service.open()
        known = {d["id"]: d["content_hash"] for d in service.store.documents()}
    except Exception as exc:  # any failure to open the store ends the run with one line
        raise StopRun(f"cannot open the vector store: {type(exc).__name__}: {_one_line(exc)}") from None

    def send(path: Path) -> str:
        try:
            return service.ingest_bytes(_document_name(path), path.read_bytes(), known=known)["status"]
        except (ConfigurationError, DependencyError) as exc:
            raise StopRun(_one_line(exc)) from None
        except BadDocument as exc:
            raise FileFailed(str(exc)) from None
        except OSError as exc:
            raise FileFailed(f"cannot read: {exc.strerror or exc}") from None
        except Exception as exc:  # a bug on one file must not hide the others' results
            raise FileFailed(f"unexpected error: {type(exc).__name__}: {_one_line(exc)}") from None

    return send


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
