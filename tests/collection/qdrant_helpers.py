"""Shared helpers of the qdrant_* integration tests: module_defaults for the doubles and moto, and
direct REST access to the Qdrant double to seed and inspect collections independently of the modules."""

from __future__ import annotations

import httpx


def play(qdrant, s3=None, **extra) -> dict:
    """The play keys giving the modules their connection options through the collection's action groups:
    Qdrant options (and `extra`) for group/aegis.rag.qdrant, S3 options for group/aegis.rag.s3."""
    defaults = {"group/aegis.rag.qdrant": qdrant_options(qdrant, **extra)}
    if s3 is not None:
        defaults["group/aegis.rag.s3"] = s3_options(s3)
    return {"module_defaults": defaults}


def qdrant_options(qdrant, **extra) -> dict:
    options = {"qdrant_url": qdrant.url, "timeout": 10}
    if qdrant.api_key:
        options["api_key"] = qdrant.api_key
    options.update(extra)
    return options


def s3_options(s3) -> dict:
    return {"s3_endpoint_url": s3.endpoint_url, "region": s3.region, "access_key": s3.access_key,
            "secret_key": s3.secret_key}


class Rest:
    def __init__(self, qdrant):
        self.http = httpx.Client(base_url=qdrant.url, headers=qdrant.headers, timeout=30)

    def info(self, name):
        resp = self.http.get(f"/collections/{name}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()["result"]

    def create(self, name, size=4, **body):
        body.setdefault("vectors", {"dense": {"size": size, "distance": "Cosine"}})
        self.http.put(f"/collections/{name}", json=body).raise_for_status()

    def upsert(self, name, ids, blob=""):
        points = [{"id": i, "vector": {"dense": [1.0, float(i % 5), 0.5, -float(i % 3)]},
                   "payload": {"n": i, "text": f"point {i} {blob}", "tags": ["a", str(i % 4)]}} for i in ids]
        self.http.put(f"/collections/{name}/points", params={"wait": "true"}, json={"points": points}).raise_for_status()

    def delete_all_points(self, name):
        self.http.post(f"/collections/{name}/points/delete", params={"wait": "true"},
                       json={"filter": {}}).raise_for_status()

    def points(self, name):
        """{id: payload} of every point."""
        return {pid: payload for pid, (payload, _) in self._scroll(name).items()}

    def vectors(self, name):
        """{id: {vector name: [floats]}} of every point."""
        return {pid: vector for pid, (_, vector) in self._scroll(name).items()}

    def _scroll(self, name):
        out, offset = {}, None
        while True:
            body = {"limit": 256, "with_payload": True, "with_vector": True}
            if offset is not None:
                body["offset"] = offset
            resp = self.http.post(f"/collections/{name}/points/scroll", json=body)
            resp.raise_for_status()
            result = resp.json()["result"]
            for p in result["points"]:
                out[p["id"]] = (p["payload"], p["vector"])
            offset = result.get("next_page_offset")
            if offset is None:
                return out

    def snapshots(self, name):
        resp = self.http.get(f"/collections/{name}/snapshots")
        resp.raise_for_status()
        return sorted(s["name"] for s in resp.json()["result"])

    def snapshot(self, name):
        resp = self.http.post(f"/collections/{name}/snapshots", params={"wait": "true"})
        resp.raise_for_status()
        return resp.json()["result"]


def assert_same_vectors(got, want, tolerance=1e-6):
    """Same ids and vector names, values equal to float32 precision (the double re-normalises cosine
    vectors in float64 when it loads a snapshot; a real server restores the stored bytes)."""
    assert got.keys() == want.keys()
    for pid, vectors in want.items():
        assert got[pid].keys() == vectors.keys(), pid
        for name, values in vectors.items():
            assert len(got[pid][name]) == len(values)
            assert all(abs(a - b) <= tolerance for a, b in zip(got[pid][name], values)), (pid, name)
