"""tests/bytecode/aegis_zip_bytecode.py: code imported from a zip is compiled once, then read from the cache."""

import hashlib
import marshal
import os
import subprocess
import sys
import zipfile
from importlib.util import MAGIC_NUMBER
from pathlib import Path

BYTECODE = Path(__file__).parent / "bytecode"
SOURCE = b"VALUE = 1\n\ndef where():\n    return where.__code__.co_filename\n"


def cache_entry(home: Path) -> Path:
    key = hashlib.sha256(MAGIC_NUMBER + SOURCE).hexdigest()
    return home / ".cache" / "aegis" / "zip-bytecode" / key[:2] / key


def import_from_zip(tmp_path: Path, name: str) -> list[str]:
    """VALUE and where() of a module `payload` imported from a fresh zip, in a Python with the cache loaded."""
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.py", SOURCE)
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(BYTECODE)}
    run = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(archive)!r}); import payload; "
                          "print(payload.VALUE); print(payload.where())"],
                         env=env, capture_output=True, text=True, check=True)
    return run.stdout.split()


def test_the_first_import_fills_the_cache_and_the_next_reads_it_under_its_own_path(tmp_path):
    assert import_from_zip(tmp_path, "first") == ["1", f"{tmp_path}/first.zip/payload.py"]
    entry = cache_entry(tmp_path)
    assert marshal.loads(entry.read_bytes()).co_filename == f"{tmp_path}/first.zip/payload.py"
    # the cached code, not the zip's source, is what runs next: an entry for the same source that says 2
    entry.write_bytes(marshal.dumps(compile(SOURCE.replace(b"1", b"2"), "x.py", "exec", dont_inherit=True)))
    assert import_from_zip(tmp_path, "second") == ["2", f"{tmp_path}/second.zip/payload.py"]


def test_a_broken_entry_is_compiled_again_and_replaced(tmp_path):
    entry = cache_entry(tmp_path)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"not marshal data")
    assert import_from_zip(tmp_path, "archive") == ["1", f"{tmp_path}/archive.zip/payload.py"]
    assert marshal.loads(entry.read_bytes()).co_filename == f"{tmp_path}/archive.zip/payload.py"
    assert list(entry.parent.iterdir()) == [entry]  # no partial file left


def test_an_unwritable_cache_still_imports(tmp_path):
    (tmp_path / ".cache").write_text("a file where the folder would be")
    assert import_from_zip(tmp_path, "archive") == ["1", f"{tmp_path}/archive.zip/payload.py"]
