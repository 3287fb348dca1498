"""Shared fixtures for every test suite: the test stack (doubles, S3, Redis, Prometheus)."""

pytest_plugins = ["tests.fixtures"]
