"""aegis.rag.aegis_api's release cache (roles/aegis_api/files/build_release.py) keeps only the most recently used
archives and wheel sets; no containers, no pip."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "collections/ansible_collections/aegis/rag/roles/aegis_api/files/build_release.py"


def load():
    spec = importlib.util.spec_from_file_location("build_release", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fill(cache: Path, count: int) -> tuple[list[Path], list[Path]]:
    """count archives and wheel sets (oldest first), each archive with its index entry, and a killed build's
    leftovers."""
    (cache / "index").mkdir(parents=True)
    archives, wheel_sets = [], []
    now = time.time()
    for i in range(count):
        archive = cache / f"aegis-api-0.1.{i}-{i:012x}.tar"
        archive.write_bytes(b"archive %d" % i)
        (cache / "index" / f"{i:064x}.json").write_text(json.dumps({"archive": str(archive), "sha256": "x"}))
        wheels = cache / "wheels" / f"{i:016x}"
        wheels.mkdir(parents=True)
        (wheels / "aegis_rag-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
        for path in (archive, wheels):
            os.utime(path, (now - 1000 + i, now - 1000 + i))
        archives.append(archive)
        wheel_sets.append(wheels)
    (cache / "aegis-api-build-abc123" / "wheels").mkdir(parents=True)
    (cache / f".{archives[0].name}.4242.tmp").write_bytes(b"half an archive")
    (cache / "index" / "feed.4242.tmp").write_text("{")
    (cache / "model").mkdir()
    (cache / "model" / "model.onnx").write_bytes(b"onnx")
    return archives, wheel_sets


def test_prune_keeps_the_newest_archives_and_wheel_sets(tmp_path):
    build_release = load()
    archives, wheel_sets = fill(tmp_path, 5)

    removed = build_release.prune(tmp_path, 3)

    assert sorted(tmp_path.glob("aegis-api-*.tar")) == archives[2:]
    assert sorted(p for p in (tmp_path / "wheels").iterdir()) == wheel_sets[2:]
    entries = {json.loads(e.read_text())["archive"] for e in (tmp_path / "index").glob("*.json")}
    assert entries == {str(a) for a in archives[2:]}
    assert not list(tmp_path.glob("aegis-api-build-*")) and not list(tmp_path.glob(".*.tmp"))
    assert not list((tmp_path / "index").glob("*.tmp"))
    assert (tmp_path / "model" / "model.onnx").exists()  # the exported model is not a release
    assert set(archives[:2]) | set(wheel_sets[:2]) <= set(removed)
    assert len(removed) == 2 + 2 + 2 + 3  # archives, wheel sets, their index entries, a killed build's leftovers


def test_keep_zero_keeps_every_release_but_not_a_killed_build(tmp_path):
    build_release = load()
    archives, wheel_sets = fill(tmp_path, 5)

    build_release.prune(tmp_path, 0)

    assert sorted(tmp_path.glob("aegis-api-*.tar")) == archives
    assert sorted((tmp_path / "wheels").iterdir()) == wheel_sets
    assert len(list((tmp_path / "index").glob("*.json"))) == 5
    assert not list(tmp_path.glob("aegis-api-build-*")) and not list(tmp_path.glob(".*.tmp"))


def test_a_reused_archive_counts_as_used(tmp_path):
    """A call whose inputs are in the index reuses the archive, and that keeps it (and its wheels) from pruning."""
    build_release = load()
    source = tmp_path / "source"
    (source / "app").mkdir(parents=True)
    (source / "pyproject.toml").write_text("[project]\nname = 'aegis-rag'\n")
    (source / "app" / "x.py").write_text("")
    cache = tmp_path / "cache"
    archives, _wheel_sets = fill(cache, 4)
    args = argparse.Namespace(extras=[], host_python=["3.11.2"], version="0.1.0", model=False)
    files = build_release.source_files(source)
    entry = cache / "index" / f"{build_release.input_key(source, files, args, release=True)}.json"
    oldest = archives[0]
    entry.write_text(json.dumps({"archive": str(oldest), "sha256": hashlib.sha256(oldest.read_bytes()).hexdigest()}))
    wheels = cache / "wheels" / build_release.input_key(source, files, args, release=False)[:16]
    wheels.mkdir()
    os.utime(wheels, (1, 1))

    result = build_release.build(source, files, args, cache, entry)
    build_release.prune(cache, 1)

    assert result["built"] is False and result["archive"] == str(oldest)
    assert list(cache.glob("aegis-api-*.tar")) == [oldest]
    assert list((cache / "wheels").iterdir()) == [wheels]
    assert {json.loads(e.read_text())["archive"] for e in (cache / "index").glob("*.json")} == {str(oldest)}
    assert entry.exists()
