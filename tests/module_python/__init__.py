"""The tests' interpreter for the modules they run on loopback (aegis_module_python.py): MODULE_PYTHON.
AEGIS_MODULE_PYTHON=plain: this Python itself, every module run a new interpreter (to compare, or to rule it out)."""

import os
import sys

from tests.module_python.aegis_module_python import launcher

MODULE_PYTHON = sys.executable if os.environ.get("AEGIS_MODULE_PYTHON") == "plain" else launcher()
