"""A cache of the imports Ansible finds in module_utils while it builds a module's payload (AnsiballZ).

Ansible builds each module's payload once per ansible-playbook run: it parses the module and every module_utils file
it imports (about 55 files for a small module) to find their imports, which is about two thirds of a build's 0.2 to
0.3 s of CPU. The tests start hundreds of short runs. This keeps what the parse found (the imports and the optional
ones) per user in ~/.cache/aegis/ansiballz-deps, keyed by the file's sha256, its dotted name, whether it is a package
and Ansible's version: what the parse finds depends on nothing else, so no entry goes stale. The payload itself is
built as before. Only the test runs use it: tests/bytecode/sitecustomize.py installs it in ansible-playbook
processes. Any error: parsed as before."""

import hashlib
import marshal
import os

from aegis_after_import import patch_after_import

TARGET = "ansible.executor.module_common"
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "aegis", "ansiballz-deps")


class _Source:
    """Stands for a parsed tree until someone needs the tree itself."""

    def __init__(self, compile_ast, module_name, source):
        self.compile_ast, self.module_name, self.source = compile_ast, module_name, source

    def tree(self):
        return self.compile_ast(self.module_name, self.source)


def patch(module_common):
    finder = module_common.ModuleDepFinder
    compile_ast, find_deps, get_metadata = module_common._compile_module_ast, finder.__init__, \
        module_common._get_module_metadata
    version = module_common.__version__

    def cached_find_deps(self, module_fqn, tree, is_pkg_init=False, *args, **kwargs):
        if not isinstance(tree, _Source):
            return find_deps(self, module_fqn, tree, is_pkg_init, *args, **kwargs)
        source = tree.source if isinstance(tree.source, bytes) else tree.source.encode("utf-8", "surrogateescape")
        key = hashlib.sha256(f"{version}\0{module_fqn}\0{bool(is_pkg_init)}\0".encode() + source).hexdigest()
        path = os.path.join(CACHE, key[:2], key)
        try:
            with open(path, "rb") as f:
                self.submodules, self.optional_imports = marshal.loads(f.read())
            self.module_fqn, self.is_pkg_init = module_fqn, is_pkg_init
            return
        except (OSError, ValueError, EOFError, TypeError):
            pass
        find_deps(self, module_fqn, tree.tree(), is_pkg_init, *args, **kwargs)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            partial = f"{path}.{os.getpid()}"
            with open(partial, "wb") as f:
                f.write(marshal.dumps((set(self.submodules), set(self.optional_imports))))
            os.replace(partial, path)  # whole or absent: concurrent runs write the same bytes
        except (OSError, ValueError):
            pass

    module_common._compile_module_ast = lambda module_name, source: _Source(compile_ast, module_name, source)
    finder.__init__ = cached_find_deps
    module_common._get_module_metadata = lambda tree: get_metadata(tree.tree() if isinstance(tree, _Source) else tree)


def install():
    patch_after_import(TARGET, patch)
