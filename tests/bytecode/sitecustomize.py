"""Run at the start of every Python process with this folder on PYTHONPATH (tests/conftest.py)."""

import os
import sys

import aegis_zip_bytecode  # noqa: F401

if os.path.basename((getattr(sys, "argv", None) or [""])[0]) == "ansible-playbook":
    import aegis_ansiballz_deps

    aegis_ansiballz_deps.install()
