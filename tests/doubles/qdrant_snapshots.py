"""Snapshots of the Qdrant double: its own archive format, uploads streamed to disk, recovery.

A snapshot is an uncompressed tar holding ``snapshot.json`` (collection config, metadata, payload schema,
point count) and ``points.jsonl`` (one point per line), stored as
``<data-dir>/snapshots/<collection>/<collection>-<peer id>-<UTC time>.snapshot`` with a ``.checksum``
sidecar (sha256), like the real server lays them out. Recovery validates the whole archive before it
touches the collection.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qdrant_client.http import models as m
from starlette.requests import Request

try:
    from .qdrant_store import ApiError, Store, dump, parse
except ImportError:  # run as a plain script next to qdrant_store.py
    from qdrant_store import ApiError, Store, dump, parse

SNAPSHOT_FORMAT = "aegis-qdrant-double/1"


class Snapshots:
    """The double's snapshot files: `<snapshots>/<collection>/<name>.snapshot` plus `.checksum`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def dir(self, name: str) -> Path:
        return self.store.snapshots_dir / name

    @staticmethod
    def describe(path: Path) -> dict:
        stat = path.stat()
        checksum_file = path.with_name(path.name + ".checksum")
        return {"name": path.name,
                "creation_time": datetime.fromtimestamp(stat.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "size": stat.st_size,
                "checksum": checksum_file.read_text().strip() if checksum_file.exists() else None}

    def list(self, name: str) -> list[dict]:
        folder = self.dir(name)
        if not folder.is_dir():
            return []
        return [self.describe(p) for p in sorted(folder.glob("*.snapshot"))]

    def path(self, name: str, snapshot: str) -> Path:
        path = self.dir(name) / snapshot
        if "/" in snapshot or snapshot.startswith(".") or not path.is_file():
            raise ApiError(404, f"Not found: Snapshot {snapshot} not found")
        return path

    def create(self, name: str) -> dict:
        store = self.store
        with store.lock:
            name = store.resolve(name)
            folder = self.dir(name)
            folder.mkdir(parents=True, exist_ok=True)
            while True:
                stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H-%M-%S")
                final = folder / f"{name}-{store.peer_id}-{stamp}.snapshot"
                if not final.exists():
                    break
                time.sleep(0.05)
            meta = store.meta[name]
            cfg = store.engine.get_collection(name).config.params
            header = {
                "format": SNAPSHOT_FORMAT, "collection": name,
                "vectors": dump(cfg.vectors), "sparse_vectors": dump(cfg.sparse_vectors) or {},
                "meta": meta,
            }
            with tempfile.TemporaryDirectory(dir=store.tmp_dir) as work:
                points_file = Path(work) / "points.jsonl"
                count = 0
                with points_file.open("w") as fh:
                    offset = None
                    while True:
                        records, offset = store.engine.scroll(name, limit=1000, offset=offset,
                                                              with_payload=True, with_vectors=True)
                        for r in records:
                            fh.write(json.dumps({"id": r.id, "vector": dump(r.vector), "payload": r.payload}) + "\n")
                            count += 1
                        if offset is None:
                            break
                header["points_count"] = count
                header_file = Path(work) / "snapshot.json"
                header_file.write_text(json.dumps(header))
                partial = Path(work) / "out.tar"
                with tarfile.open(partial, "w") as tar:
                    tar.add(header_file, arcname="snapshot.json")
                    tar.add(points_file, arcname="points.jsonl")
                checksum = sha256_file(partial)
                partial.replace(final)
            final.with_name(final.name + ".checksum").write_text(checksum)
            store.snapshots_created[name] = store.snapshots_created.get(name, 0) + 1
            return self.describe(final)

    def delete(self, name: str, snapshot: str) -> bool:
        with self.store.lock:
            path = self.path(self.store.resolve(name), snapshot)
            path.unlink()
            path.with_name(path.name + ".checksum").unlink(missing_ok=True)
            return True

    def recover(self, name: str, archive: Path) -> bool:
        """Replace the collection's points with the archive's (creating the collection if needed)."""
        header = read_header(archive)
        store = self.store
        with store.lock:
            existing = name in store.meta
            if existing:
                cfg = store.engine.get_collection(name).config.params
                if dump(cfg.vectors) != header["vectors"]:
                    raise ApiError(400, "Wrong input: Snapshot is not compatible with existing collection: "
                                        f"Collection vectors: {dump(cfg.vectors)} Snapshot Vectors: {header['vectors']}")
                store.engine.delete(name, points_selector=m.FilterSelector(filter=m.Filter()))
            else:
                vectors = parse(m.VectorsConfig, header["vectors"]) if header["vectors"] else {}
                sparse = {k: m.SparseVectorParams(**v) for k, v in header["sparse_vectors"].items()}
                store.engine.create_collection(name, vectors_config=vectors, sparse_vectors_config=sparse or None)
                store.meta[name] = header["meta"]
            if existing:
                store.meta[name]["payload_schema"].update(header["meta"].get("payload_schema", {}))
            count = 0
            for batch in iter_points(archive):
                store.engine.upsert(name, points=batch)
                count += len(batch)
            store._save()
            store.touched(name, points=count, optimize="indexing")
        return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_header(archive: Path) -> dict:
    """Validate a snapshot archive completely before anything is changed."""
    try:
        with tarfile.open(archive, "r:") as tar:
            member = tar.extractfile("snapshot.json")
            header = json.loads(member.read()) if member else None
            points = tar.extractfile("points.jsonl")
            lines = sum(1 for line in points if line.strip()) if points else -1
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise ApiError(400, f"Wrong input: Snapshot is not a valid archive of this server: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT or lines != header.get("points_count"):
        raise ApiError(400, "Wrong input: Snapshot is not a valid archive of this server")
    return header


def iter_points(archive: Path, size: int = 500):
    with tarfile.open(archive, "r:") as tar:
        batch = []
        for line in tar.extractfile("points.jsonl"):
            if not line.strip():
                continue
            rec = json.loads(line)
            vector = rec["vector"]
            if isinstance(vector, dict):
                vector = {k: m.SparseVector(**v) if isinstance(v, dict) else v for k, v in vector.items()}
            batch.append(m.PointStruct(id=rec["id"], vector=vector, payload=rec["payload"]))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


async def fetch_to(url: str, dest: Path, api_key: str | None = None) -> None:
    import httpx

    headers = {"api-key": api_key} if api_key else {}
    try:
        async with (httpx.AsyncClient(timeout=60, follow_redirects=True, trust_env=False, headers=headers) as client,
                    client.stream("GET", url) as resp):
            if resp.status_code >= 400:
                raise ApiError(400, f"Wrong input: Failed to download snapshot from {url}: status - "
                                    f"{resp.status_code} {resp.reason_phrase}")
            with dest.open("wb") as fh:
                async for chunk in resp.aiter_bytes(1 << 20):
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        raise ApiError(500, f"Service internal error: Http request error: {exc}") from None


async def stream_multipart_file(request: Request, field: str, dest_dir: Path) -> tuple[Path, str, str | None]:
    """Stream the multipart part `field` into a temp file in dest_dir: (path, sha256, client filename)."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(400, "Bad request: expected a multipart/form-data body with a `snapshot` part")
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=".upload-")
    out = os.fdopen(fd, "wb")
    digest = hashlib.sha256()
    st: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "match": False, "found": False, "filename": None}

    def on_part_begin():
        st["headers"] = {}
        st["match"] = False

    def on_header_field(data, start, end):
        st["field"] += data[start:end]

    def on_header_value(data, start, end):
        st["value"] += data[start:end]

    def on_header_end():
        st["headers"][st["field"].lower()] = st["value"]
        st["field"], st["value"] = b"", b""

    def on_headers_finished():
        _, disp = parse_options_header(st["headers"].get(b"content-disposition", b""))
        st["match"] = disp.get(b"name") == field.encode() and not st["found"]
        if st["match"]:
            st["found"] = True
            fname = disp.get(b"filename")
            st["filename"] = fname.decode(errors="replace") if fname else None

    def on_part_data(data, start, end):
        if st["match"]:
            chunk = data[start:end]
            out.write(chunk)
            digest.update(chunk)

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        _discard(out, tmp_name)
        raise ApiError(400, f"Bad request: malformed multipart body: {exc}") from None
    except BaseException:  # client gone, disk full...: keep nothing half-written
        _discard(out, tmp_name)
        raise
    out.close()
    if not st["found"]:
        os.unlink(tmp_name)
        raise ApiError(400, f"Bad request: Multipart form field `{field}` is missing")
    return Path(tmp_name), digest.hexdigest(), st["filename"]


def _discard(handle, name: str) -> None:
    handle.close()
    os.unlink(name)
