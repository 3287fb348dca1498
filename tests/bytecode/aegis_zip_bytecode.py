"""A bytecode cache for Python source imported from zip files: Ansible's module payloads (AnsiballZ).

Each module run unpacks a zip of the module and the module_utils it needs, and Python compiles every source in it
again: zipimport writes no bytecode. Compiling is about half the CPU of a module run that does little (measured in
bench/RESULTS.md). This keeps the compiled code per user, keyed by the source's sha256 and the interpreter's magic
number, in ~/.cache/aegis/zip-bytecode; the code a file compiles to depends on nothing else, so no entry goes stale.
Only the test runs use it: tests/conftest.py puts this folder's sitecustomize.py on the controller's PYTHONPATH, and
scripts/testhosts.sh installs this file with a .pth line in the test hosts' Python. Any error: compiled as before."""

import zipimport

_compile_source = zipimport._compile_source


def _cached_compile_source(pathname, source):
    import _imp
    import hashlib
    import marshal
    import os
    from importlib.util import MAGIC_NUMBER

    key = hashlib.sha256(MAGIC_NUMBER + source).hexdigest()
    path = os.path.join(os.path.expanduser("~"), ".cache", "aegis", "zip-bytecode", key[:2], key)
    try:
        with open(path, "rb") as f:
            code = marshal.loads(f.read())
        _imp._fix_co_filename(code, pathname)  # the path of this run's zip, as a fresh compile names it
        return code
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = _compile_source(pathname, source)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{os.getpid()}"
        with open(partial, "wb") as f:
            f.write(marshal.dumps(code))
        os.replace(partial, path)  # whole or absent: concurrent runs write the same bytes
    except OSError:
        pass
    return code


zipimport._compile_source = _cached_compile_source
