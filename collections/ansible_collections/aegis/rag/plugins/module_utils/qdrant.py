# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Qdrant helpers for the qdrant_* modules, over the shared HttpClient (module_utils/http_client.py,
built by AegisModule.qdrant_client).

Reading a collection and waiting for green; pure decisions (vector parameter checks, optimizer
diffing) that unit tests call directly; thin REST calls for collections and snapshots."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from urllib.parse import quote, urlencode

GREEN = "green"


class QdrantWaitTimeout(Exception):
    """wait_green gave up; `info` is the last collection info seen (or None)."""

    def __init__(self, msg, info=None):
        super(QdrantWaitTimeout, self).__init__(msg)
        self.msg = msg
        self.info = info


def get_collection(client, name):
    """The `result` of GET /collections/{name}, or None when the collection does not exist."""
    resp = client.get("/collections/%s" % name, expect=(200, 404))
    if resp.status == 404:
        return None
    return resp.json().get("result") or {}


def collection_facts(info):
    """The figures reports need from a collection info (names as Qdrant 1.16+ returns them)."""
    optimizer = info.get("optimizer_status")
    if isinstance(optimizer, dict):  # {"error": "..."} when the optimiser failed
        optimizer = "error: %s" % optimizer.get("error", optimizer)
    return {
        "status": info.get("status"),
        "optimizer_status": optimizer,
        "points_count": info.get("points_count"),
        "indexed_vectors_count": info.get("indexed_vectors_count"),
        "segments_count": info.get("segments_count"),
    }


def wait_green(client, name, timeout, interval=0.5):
    """Poll until the collection is green; returns its info, raises QdrantWaitTimeout after `timeout` s."""
    deadline = time.monotonic() + timeout
    info = None
    while True:
        info = get_collection(client, name)
        if info is not None and info.get("status") == GREEN:
            return info
        if time.monotonic() >= deadline:
            state = "missing" if info is None else info.get("status")
            raise QdrantWaitTimeout("collection %s not green after %ss (status: %s)" % (name, timeout, state),
                                    info)
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


# Writable optimizer fields (PATCH /collections/{n} {"optimizers_config": {...}}) and their types.
OPTIMIZER_FIELDS = {
    "deleted_threshold": float,
    "vacuum_min_vector_number": int,
    "default_segment_number": int,
    "max_segment_size": int,
    "indexing_threshold": int,
    "flush_interval_sec": int,
    "max_optimization_threads": int,
}
DISTANCES = {"cosine": "Cosine", "euclid": "Euclid", "dot": "Dot", "manhattan": "Manhattan"}


# ---------------------------------------------------------------- pure decisions

def normalize_vector(name, params):
    """Validate one dense vector's params; returns a copy with a canonical distance."""
    if not isinstance(params, dict):
        raise ValueError("vector %s: expected a dict with size and distance, got %r" % (name, params))
    out = dict(params)
    size = out.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        try:
            size = int(str(size))
        except ValueError:
            size = 0
        if size <= 0:
            raise ValueError("vector %s: size must be a positive integer, got %r" % (name, params.get("size")))
    out["size"] = size
    distance = str(out.get("distance", "")).lower()
    if distance not in DISTANCES:
        raise ValueError("vector %s: distance must be one of %s, got %r"
                         % (name, ", ".join(DISTANCES.values()), params.get("distance")))
    out["distance"] = DISTANCES[distance]
    return out


def is_single_vector(vectors):
    """True when `vectors` describes one unnamed vector ({size, distance}) rather than a name map."""
    return "size" in vectors or "distance" in vectors


def normalize_vectors(vectors):
    """The `vectors` option -> the body Qdrant expects (unnamed params or {name: params})."""
    if vectors is None:
        return None
    if not isinstance(vectors, dict) or not vectors:
        raise ValueError("vectors must be {size, distance} or a non-empty map of name -> {size, distance}")
    if is_single_vector(vectors):
        return normalize_vector("(unnamed)", vectors)
    return {name: normalize_vector(name, params) for name, params in vectors.items()}


def normalize_sparse(sparse_vectors):
    if sparse_vectors is None:
        return None
    if not isinstance(sparse_vectors, dict):
        raise ValueError("sparse_vectors must be a map of name -> params (params may be {})")
    out = {}
    for name, params in sparse_vectors.items():
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ValueError("sparse vector %s: params must be a dict, got %r" % (name, params))
        out[name] = dict(params)
    return out


def _differences(path, existing, wanted):
    """Leaves given in `wanted` whose value differs in `existing` (keys not given are not compared)."""
    found = []
    for key, value in wanted.items():
        here = "%s.%s" % (path, key)
        current = existing.get(key) if isinstance(existing, dict) else None
        if isinstance(value, dict) and isinstance(current, dict):
            found.extend(_differences(here, current, value))
        elif current != value:
            found.append("%s is %r, wanted %r" % (here, current, value))
    return found


def vector_mismatches(params, vectors=None, sparse_vectors=None):
    """How an existing collection's `config.params` differs from the wanted (normalized) vector
    parameters: a list of readable strings, empty when compatible."""
    found = []
    if vectors is not None:
        current = params.get("vectors") or {}
        current_single = isinstance(current, dict) and "size" in current
        if is_single_vector(vectors) != current_single:
            have = "one unnamed vector" if current_single else "named vectors %s" % sorted(current)
            want = "one unnamed vector" if is_single_vector(vectors) else "named vectors %s" % sorted(vectors)
            found.append("vectors: collection has %s, wanted %s" % (have, want))
        elif current_single:
            found.extend(_differences("vectors", current, vectors))
        else:
            if set(current) != set(vectors):
                found.append("vectors: collection has names %s, wanted %s" % (sorted(current), sorted(vectors)))
            for name in sorted(set(current) & set(vectors)):
                found.extend(_differences("vectors.%s" % name, current[name], vectors[name]))
    if sparse_vectors is not None:
        current = params.get("sparse_vectors") or {}
        if set(current) != set(sparse_vectors):
            found.append("sparse_vectors: collection has names %s, wanted %s"
                         % (sorted(current), sorted(sparse_vectors)))
        for name in sorted(set(current) & set(sparse_vectors)):
            found.extend(_differences("sparse_vectors.%s" % name, current[name] or {}, sparse_vectors[name]))
    return found


def _same(kind, current, wanted):
    if current is None:
        return False
    if kind is float:
        return abs(float(current) - float(wanted)) < 1e-9
    return int(current) == int(wanted)


def optimizer_changes(current, wanted):
    """The optimizer fields to PATCH: those given in `wanted` (not None) that differ from `current`
    (the collection's `config.optimizer_config`)."""
    current = current or {}
    changes = {}
    for field, kind in OPTIMIZER_FIELDS.items():
        value = (wanted or {}).get(field)
        if value is None:
            continue
        if not _same(kind, current.get(field), value):
            changes[field] = kind(value)
    return changes


# ---------------------------------------------------------------- REST calls

def _path(*parts, **query):
    path = "/" + "/".join(quote(str(p), safe="") for p in parts)
    query = {k: v for k, v in query.items() if v is not None}
    return path + ("?" + urlencode(query) if query else "")


def _result(response):
    body = response.json()
    return body.get("result") if isinstance(body, dict) else None


def list_collection_names(client):
    result = _result(client.request("GET", "/collections")) or {}
    return sorted(c["name"] for c in result.get("collections", []))


def create_collection(client, name, body, timeout=None):
    client.request("PUT", _path("collections", name), json=body, timeout=timeout)


def delete_collection(client, name, timeout=None):
    client.request("DELETE", _path("collections", name), timeout=timeout)


def patch_collection(client, name, body, timeout=None):
    client.request("PATCH", _path("collections", name), json=body, timeout=timeout)


def list_snapshots(client, name):
    """Snapshot descriptions of a collection: [{name, creation_time, size, checksum}]."""
    return _result(client.request("GET", _path("collections", name, "snapshots"))) or []


def create_snapshot(client, name, timeout=None):
    """Create a snapshot and wait for it; returns its description."""
    return _result(client.request("POST", _path("collections", name, "snapshots", wait="true"), timeout=timeout))


def delete_snapshot(client, name, snapshot, timeout=None):
    """Delete a snapshot; returns False when it was already absent (404)."""
    response = client.request("DELETE", _path("collections", name, "snapshots", snapshot, wait="true"),
                              expect=(200, 404), timeout=timeout)
    return response.status != 404


def download_snapshot(client, name, snapshot, dest_path, timeout=None):
    """Stream a snapshot to `dest_path`; returns (bytes, sha256 hex)."""
    return client.stream_to_file("GET", _path("collections", name, "snapshots", snapshot), dest_path,
                                 timeout=timeout)


def recover_by_upload(client, name, snapshot_path, checksum, filename, priority="snapshot", timeout=None):
    """Recover `name` from a local snapshot file by streamed multipart upload (field `snapshot`).
    Qdrant checks `checksum` (sha256) before touching the collection."""
    path = _path("collections", name, "snapshots", "upload", wait="true", priority=priority, checksum=checksum)
    client.upload_file("POST", path, snapshot_path, "snapshot", filename, timeout=timeout)


def recover_from_url(client, name, url, checksum, priority="snapshot", timeout=None):
    """Recover `name` from a snapshot Qdrant downloads itself (http(s) URL, e.g. presigned S3)."""
    body = {"location": url, "priority": priority, "checksum": checksum}
    client.request("PUT", _path("collections", name, "snapshots", "recover", wait="true"), json=body,
                   timeout=timeout)


def count_points(client, name):
    """Exact number of points (POST /collections/{n}/points/count {"exact": true})."""
    result = _result(client.request("POST", _path("collections", name, "points", "count"), json={"exact": True}))
    return int((result or {}).get("count", 0))
