#!/usr/bin/env python3
"""Builds the stand-in Ollama release archive that the Molecule scenarios hand to aegis.rag.ollama.

The real ``ollama`` binary cannot run on the test hosts, so this archive is laid out like the real
``ollama-linux-amd64.tar.zst`` (``bin/ollama``, ``lib/ollama/``, unpacked into ``/usr``) but its
``bin/ollama serve`` runs the project's Ollama double (tests/doubles/ollama.py) with the host's
``python3``. The double reads the same environment as the real server (``OLLAMA_HOST``,
``OLLAMA_MODELS``, ``OLLAMA_NUM_PARALLEL``, ``OLLAMA_MAX_QUEUE``) and pulls the models of its registry
offline. Its Python dependencies (starlette, uvicorn and theirs, pure Python) are copied from the
interpreter running this script, so the hosts need no package index.

    python molecule/standins/ollama.py [--cache-dir DIR]

prints ``{"path": ..., "sha256": ...}``. The archive is cached under its inputs' hash (this script, the
double, the bundled package versions) and is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = ROOT / "tests" / "doubles"
DOUBLE_FILES = ("ollama.py", "faults.py")
TOP_LEVEL_PACKAGES = ("starlette", "uvicorn")
LIB = "lib/ollama/aegis-standin"
FIXED_MTIME = 1_700_000_000  # reproducible archives

LAUNCHER = f"""#!/bin/sh
# Stand-in for the ollama binary, for tests only (molecule/standins/ollama.py): `ollama serve` runs
# the Aegis Ollama double, configured from the same OLLAMA_* environment as the real server.
set -eu
lib="$(dirname "$(readlink -f "$0")")/../{LIB}"
case "${{1:-}}" in
  serve) PYTHONPATH="$lib/site-packages" PYTHONDONTWRITEBYTECODE=1 exec python3 -s "$lib/ollama.py" serve ;;
  -v|--version) echo "ollama version is 0.0.0 (Aegis stand-in)" ;;
  *) echo "this stand-in ollama only runs 'ollama serve'" >&2; exit 2 ;;
esac
"""


def distributions() -> list[metadata.Distribution]:
    """The top-level packages and everything they require here (extras left out), by name."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(TOP_LEVEL_PACKAGES)
    while todo:
        name = todo.pop()
        key = name.lower().replace("-", "_")
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed for {sys.executable}; run this with the project's .venv") \
                from None
        found[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(found.values(), key=lambda d: d.metadata["Name"].lower())


def package_files(dist: metadata.Distribution) -> list[tuple[str, Path]]:
    """(path in site-packages, file here) of a distribution; refuses compiled code."""
    out = []
    for rel in dist.files or []:
        if rel.parts[0] == ".." or "__pycache__" in rel.parts:
            continue
        if rel.suffix in (".so", ".pyd"):
            raise SystemExit(f"{dist.metadata['Name']} has compiled code ({rel}); the stand-in bundles pure Python only")
        out.append((rel.as_posix(), Path(str(dist.locate_file(rel)))))
    return out


def archive_members(dists: list[metadata.Distribution]) -> list[tuple[str, bytes, int]]:
    """(name in the archive, content, mode), sorted."""
    members = [("./bin/ollama", LAUNCHER.encode(), 0o755)]
    members += [(f"./{LIB}/{name}", (DOUBLES / name).read_bytes(), 0o644) for name in DOUBLE_FILES]
    for dist in dists:
        members += [(f"./{LIB}/site-packages/{rel}", path.read_bytes(), 0o644) for rel, path in package_files(dist)]
    return sorted(members)


def cache_key(dists: list[metadata.Distribution]) -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for name in DOUBLE_FILES:
        digest.update((DOUBLES / name).read_bytes())
    for dist in dists:
        digest.update(f"{dist.metadata['Name']}=={dist.version}\n".encode())
    return digest.hexdigest()[:16]


def tar_bytes(members: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs = sorted({f"./{Path(name).parent}" for name, _, _ in members if name.startswith(f"./{LIB}")})
        for directory in dirs:  # every directory of the bundle with a fixed mode (bin/ and lib/ exist in /usr)
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
            tar.addfile(info)
        for name, content, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, FIXED_MTIME
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def build(cache_dir: Path) -> tuple[Path, str]:
    """The cached archive (built when missing) and its sha256."""
    dists = distributions()
    target = cache_dir / f"ollama-standin-{cache_key(dists)}-linux-amd64.tar.zst"
    if not target.exists():
        zstd = shutil.which("zstd")
        if zstd is None:
            raise SystemExit("zstd is not installed on this machine (Debian: apt-get install zstd)")
        cache_dir.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run([zstd, "-q", "-c", "-19"], input=tar_bytes(archive_members(dists)),
                                capture_output=True, check=True).stdout
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(packed)
        tmp.replace(target)
    return target, hashlib.sha256(target.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aegis" / "standins"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=default_cache, help=f"default {default_cache}")
    args = ap.parse_args(argv)
    path, sha256 = build(args.cache_dir)
    print(json.dumps({"path": str(path), "sha256": sha256}))


if __name__ == "__main__":
    main()
