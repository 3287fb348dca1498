#!/usr/bin/env python3
"""Builds the stand-in Qdrant release archive the Molecule scenarios hand to aegis.rag.qdrant.

The real `qdrant-x86_64-unknown-linux-musl.tar.gz` holds one executable, `qdrant`, at its root. The
stand-in is laid out the same way; its `qdrant` is a launcher that runs the project's Qdrant double
(tests/doubles/qdrant.py) on the test host's python3 with every Python dependency bundled in the archive,
so the host needs no package index. It reads what the real binary reads: `--config-path FILE`, `--uri`,
`--bootstrap`, `--disable-telemetry` and QDRANT__SECTION__KEY variables.

Run it with the project's virtualenv Python (same minor version as Debian 12's python3, 3.11): it prints
one JSON line {"path": ..., "sha256": ...}. The archive is cached under ~/.cache/aegis/standins and rebuilt
only when its inputs change (the double's sources, this file, the bundled package versions, the Python
minor version); archives of earlier inputs are then removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOUBLE_SOURCES = ["qdrant.py", "qdrant_store.py", "qdrant_snapshots.py", "qdrant_validation.py", "faults.py"]
# What the double imports, pinned to the versions of this virtualenv (their dependencies come along).
PACKAGES = ["qdrant-client", "starlette", "uvicorn", "python-multipart", "httpx", "anyio", "pyyaml"]
LAUNCHER = """#!/bin/sh
# Stand-in for the Qdrant binary (Aegis Molecule tests): the project's Qdrant double, same command line.
here=$(dirname "$(readlink -f "$0")")
PYTHONPATH="$here/standin/site-packages" PYTHONDONTWRITEBYTECODE=1 exec python3 -s "$here/standin/double/qdrant.py" "$@"
"""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aegis" / "standins"


def requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in PACKAGES]


def inputs_digest(reqs: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(f"python{sys.version_info.major}.{sys.version_info.minor}\n".encode())
    digest.update("\n".join(reqs).encode())
    digest.update(Path(__file__).read_bytes())
    for name in DOUBLE_SOURCES:
        digest.update((ROOT / "tests" / "doubles" / name).read_bytes())
    return digest.hexdigest()[:16]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stage(tree: Path, reqs: list[str]) -> None:
    """The archive's contents: the launcher, the double, its packages (compiled, so a read-only
    install starts without writing bytecode)."""
    site = tree / "standin" / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--only-binary=:all:", "--no-compile", "--target", str(site), *reqs], check=True)
    double = tree / "standin" / "double"
    double.mkdir(parents=True)
    for name in DOUBLE_SOURCES:
        (double / name).write_bytes((ROOT / "tests" / "doubles" / name).read_bytes())
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    str(tree / "standin")], check=True, stdout=subprocess.DEVNULL)
    launcher = tree / "qdrant"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)


def pack(tree: Path, archive: Path) -> None:
    """A gzipped tar with the entries at its root and fixed times and owners, as a release is."""
    def normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        return info

    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        for entry in sorted(tree.iterdir()):
            tar.add(entry, arcname=entry.name, filter=normalized)


def build() -> Path:
    reqs = requirements()
    archive = cache_dir() / f"qdrant-standin-{inputs_digest(reqs)}.tar.gz"
    if archive.is_file():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qdrant-standin-") as work:
        stage(Path(work) / "tree", reqs)
        partial = Path(work) / archive.name
        pack(Path(work) / "tree", partial)
        partial.replace(archive)
    for stale in archive.parent.glob("qdrant-standin-*.tar.gz"):  # earlier inputs' archives
        if stale != archive:
            stale.unlink()
    return archive


def main() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"run this with Python 3.11 (Debian 12's python3 runs the stand-in), not {sys.version.split()[0]}")
    cache_dir().mkdir(parents=True, exist_ok=True)
    # one build at a time: two scenarios preparing at once share the archive (gzip stamps each build's time)
    with (cache_dir() / ".qdrant-standin.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        archive = build()
        print(json.dumps({"path": str(archive), "sha256": sha256_of(archive)}))


if __name__ == "__main__":
    main()
