"""patch_after_import(name, patch): patch(module) runs once `name` has been imported, before anyone uses it. For the
test-only patches that sitecustomize.py installs in ansible-playbook processes; a patch that meets another Ansible
than it was written for (AttributeError) leaves the module as it is."""

import importlib.abc
import importlib.util
import sys


class _PatchAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, target, patch):
        self.target, self.patch = target, patch

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.target:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self.loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        try:
            self.patch(module)
        except AttributeError:
            pass


def patch_after_import(name, patch):
    sys.meta_path.insert(0, _PatchAfterImport(name, patch))
