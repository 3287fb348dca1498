"""The scenarios' testinfra tests (molecule/<scenario>/tests, run by `molecule verify`): their hosts are
nsenter://<container>, the backend of tests/testinfra_nsenter.py (the verifier's PYTHONPATH holds the repository)."""

import tests.testinfra_nsenter  # noqa: F401  (registers nsenter://)
