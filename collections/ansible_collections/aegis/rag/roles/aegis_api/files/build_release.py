# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Builds an Aegis API release archive on the controller, once per version and input (aegis.rag.aegis_api).

    python build_release.py --source CHECKOUT --version V --cache DIR [--extras a,b] [--model]

The archive (<cache>/aegis-api-<version>-<digest>.tar, <digest> from its manifest: the wheel set and the
model) holds wheels/ (the project and every dependency, from `pip wheel`), model/ (with --model: the exported
ONNX all-MiniLM-L6-v2, from `python -m aegis_rag.embeddings bundle`) and RELEASE.json. An index keyed by the
inputs (the project's files, version, extras, --model, Python and platform) makes a second call with the same
inputs print the same archive without running pip. Prints one JSON line: archive, sha256, built, pruned, ...

After each call the cache keeps the --keep (default 5) most recently used archives and wheel sets (a call that
reuses one counts as a use), drops index entries whose archive is gone and what a killed build left (its
temporary folder and archive); --keep 0 keeps everything.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

SOURCE_ITEMS = ("pyproject.toml", "README.md", "LICENSE", "app")  # what setuptools needs to build the wheel
SKIPPED = {"__pycache__", ".pytest_cache", ".mypy_cache"}
KEEP = 5  # archives and wheel sets kept in the cache (--keep)


def source_files(source: Path) -> list[Path]:
    files = []
    for item in SOURCE_ITEMS:
        path = source / item
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not SKIPPED & set(p.parts)
                            and not any(part.endswith(".egg-info") for part in p.parts) and p.suffix != ".pyc")
    if not (source / "pyproject.toml").is_file():
        raise SystemExit(f"build_release: {source} has no pyproject.toml (aegis_api_source_dir)")
    return files


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def input_key(source: Path, files: list[Path], args, *, release: bool) -> str:
    """Digest of what the wheels are built from; with release=True also of the version and the model."""
    digest = hashlib.sha256()
    target = {"extras": sorted(args.extras), "python": python_tag(), "platform": sysconfig.get_platform(),
              "host_pythons": sorted(args.host_python)}
    if release:
        target.update(version=args.version, model=args.model)
    digest.update(json.dumps(target, sort_keys=True).encode())
    for f in files:
        digest.update(str(f.relative_to(source)).encode() + b"\0" + sha256_file(f).encode())
    return digest.hexdigest()


def python_tag() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"build_release: {what} failed (exit {done.returncode}):\n{tail}")


def build_wheels(source: Path, files: list[Path], extras: list[str], wheels: Path, work: Path) -> None:
    """`pip wheel` of a copy of the project (a build never writes into the checkout)."""
    copy = work / "source"
    for f in files:
        target = copy / f.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    requirement = f"{copy}[{','.join(extras)}]" if extras else str(copy)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), requirement], "pip wheel")


def requirements_of(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(name).decode()
    return [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]


def complete_for_hosts(wheels: Path, host_pythons: list[str]) -> None:
    """pip resolves markers for the controller's Python: add what the hosts' Python needs besides
    (for example async-timeout for redis where python_full_version < 3.11.3)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    for _round in range(10):
        have = {canonicalize_name(w.name.split("-")[0]) for w in wheels.glob("*.whl")}
        missing = set()
        for wheel in wheels.glob("*.whl"):
            for line in requirements_of(wheel):
                req = Requirement(line)
                for full in host_pythons:
                    env = {**default_environment(), "python_full_version": full,
                           "python_version": ".".join(full.split(".")[:2]), "extra": ""}
                    if canonicalize_name(req.name) not in have and (not req.marker or req.marker.evaluate(env)):
                        missing.add(f"{req.name}{req.specifier}")
        if not missing:
            return
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), *sorted(missing)],
            f"pip wheel of {', '.join(sorted(missing))} for the hosts' Python")
    raise SystemExit("build_release: the hosts' requirements did not settle after 10 rounds")


def export_model(model: Path) -> None:
    """The exported model for AEGIS_LOCAL_MODEL_DIR; `bundle` exports only when the folder has no valid export."""
    model.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "aegis_rag.embeddings", "bundle", str(model)],
        "the ONNX export (needs aegis-rag[local-export] in the controller's Python)")


def add_file(tar: tarfile.TarFile, name: str, data: bytes | None = None, path: Path | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if data is not None else path.stat().st_size
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "root", "root"
    if data is not None:
        tar.addfile(info, io.BytesIO(data))
    else:
        with path.open("rb") as fh:
            tar.addfile(info, fh)


def write_archive(cache: Path, version: str, wheels: Path, model: Path | None) -> Path:
    """A reproducible tar (sorted names, no times or owners) named after its manifest's digest."""
    manifest = {
        "version": version, "python": python_tag(), "platform": sysconfig.get_platform(),
        "wheels": {w.name: sha256_file(w) for w in sorted(wheels.glob("*.whl"))},
        "model": {f.name: sha256_file(f) for f in sorted(model.iterdir()) if f.is_file()} if model else {},
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    archive = cache / f"aegis-api-{version}-{hashlib.sha256(body).hexdigest()[:12]}.tar"
    if archive.exists():
        return archive
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        add_file(tar, "RELEASE.json", data=body)
        for name in manifest["wheels"]:
            add_file(tar, f"wheels/{name}", path=wheels / name)
        for name in manifest["model"]:
            add_file(tar, f"model/{name}", path=model / name)
    tmp.replace(archive)
    return archive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="the project checkout (pyproject.toml)")
    parser.add_argument("--version", required=True, help="the release name (aegis_api_version)")
    parser.add_argument("--cache", type=Path, required=True, help="controller cache directory")
    parser.add_argument("--extras", default="", help="comma-separated extras of aegis-rag to install")
    parser.add_argument("--model", action=argparse.BooleanOptionalAction, default=False,
                        help="ship the exported ONNX model (local embeddings)")
    parser.add_argument("--host-python", default="",
                        help="the hosts' full Python versions, comma-separated (e.g. 3.11.2), for the markers")
    parser.add_argument("--keep", type=int, default=KEEP,
                        help="archives and wheel sets to keep in the cache, most recently used first (0: all)")
    args = parser.parse_args()
    args.host_python = sorted({v.strip() for v in args.host_python.split(",") if v.strip()})
    bad = [v for v in args.host_python if v.count(".") != 2 or ".".join(v.split(".")[:2]) != python_tag()]
    if bad:
        raise SystemExit(f"build_release: the hosts run Python {', '.join(bad)}, the build runs {python_tag()}: "
                         "build with a Python of the hosts' minor version (aegis_api_build_python)")
    args.extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    source, cache = args.source.expanduser().resolve(), args.cache.expanduser().resolve()
    index = cache / "index"
    index.mkdir(parents=True, exist_ok=True)

    files = source_files(source)
    entry = index / f"{input_key(source, files, args, release=True)}.json"
    # One build at a time per cache: concurrent runs (two playbooks, two Molecule scenarios) share its wheels
    # and model, and the second finds the first one's archive.
    with (cache / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = build(source, files, args, cache, entry)
        # Under the lock: no other build is running, so temporary files are a killed build's.
        result["pruned"] = [str(p) for p in prune(cache, args.keep)]
        print(json.dumps(result))
        return 0


def build(source: Path, files: list[Path], args: argparse.Namespace, cache: Path, entry: Path) -> dict:
    """The archive for these inputs, from the index or built; marks the archive and its wheel set as used."""
    # The wheel set of these sources is kept: another release name of the same sources only re-packs it.
    wheels = cache / "wheels" / input_key(source, files, args, release=False)[:16]
    try:
        known = json.loads(entry.read_text())
        if sha256_file(Path(known["archive"])) == known["sha256"]:
            touch(Path(known["archive"]), wheels)
            return {**known, "built": False}
    except (OSError, ValueError, KeyError):
        pass

    if not wheels.is_dir():
        with tempfile.TemporaryDirectory(prefix="aegis-api-build-", dir=cache) as work:
            build_wheels(source, files, args.extras, Path(work) / "wheels", Path(work))
            complete_for_hosts(Path(work) / "wheels", args.host_python)
            wheels.parent.mkdir(parents=True, exist_ok=True)
            (Path(work) / "wheels").replace(wheels)
    model = cache / "model" if args.model else None
    if model:
        export_model(model)
    archive = write_archive(cache, args.version, wheels, model)
    names = sorted(w.name.split("-")[0].lower() for w in wheels.glob("*.whl"))
    result = {"archive": str(archive), "sha256": sha256_file(archive), "version": args.version,
              "python": python_tag(), "platform": sysconfig.get_platform(), "machine": platform.machine(),
              "wheels": len(names), "torch": "torch" in names, "model": bool(args.model)}
    tmp = entry.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(entry)
    touch(archive, wheels)
    return {**result, "built": True}


def touch(*paths: Path) -> None:
    """Mark as just used (prune keeps the most recently used)."""
    for path in paths:
        if path.exists():
            os.utime(path)


def prune(cache: Path, keep: int) -> list[Path]:
    """Keep the `keep` most recently used archives and wheel sets; remove the others, index entries whose archive
    is gone and a killed build's leftovers (temporary folders and archives). Returns what it removed."""
    removed = [p for p in cache.glob("aegis-api-build-*") if p.is_dir()]
    removed += list(cache.glob(".aegis-api-*.tmp")) + list((cache / "index").glob("*.tmp"))
    if keep > 0:
        def newest_first(paths):
            return sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True)

        removed += newest_first(cache.glob("aegis-api-*.tar"))[keep:]
        wheel_sets = (cache / "wheels").glob("*")
        removed += newest_first(p for p in wheel_sets if p.is_dir())[keep:]
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for entry in (cache / "index").glob("*.json"):
        try:
            archive = Path(json.loads(entry.read_text())["archive"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not archive.exists():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


if __name__ == "__main__":
    sys.exit(main())
