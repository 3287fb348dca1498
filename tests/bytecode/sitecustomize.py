"""Run at the start of every Python process with this folder on PYTHONPATH (tests/conftest.py)."""

import aegis_zip_bytecode  # noqa: F401
