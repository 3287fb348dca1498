"""Run at the start of every Python process with this folder on PYTHONPATH (tests/conftest.py)."""

import os
import sys

import aegis_zip_bytecode  # noqa: F401

if os.path.basename((getattr(sys, "argv", None) or [""])[0]) == "ansible-playbook":
    import aegis_ansiballz_deps
    from aegis_after_import import patch_after_import

    aegis_ansiballz_deps.install()
    # The implicit localhost's modules run by the tests' module interpreter (tests/module_python), as the inventories'
    # local hosts' do: Ansible gives it its own Python (sys.executable) otherwise.
    if localhost_python := os.environ.get("AEGIS_LOCALHOST_PYTHON"):

        def use_localhost_python(data):
            create = data.InventoryData._create_implicit_localhost

            def create_implicit_localhost(self, pattern):
                host = create(self, pattern)
                host.set_variable("ansible_python_interpreter", localhost_python)
                return host

            data.InventoryData._create_implicit_localhost = create_implicit_localhost

        patch_after_import("ansible.inventory.data", use_localhost_python)
