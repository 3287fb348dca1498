"""Aegis: a retrieval-augmented chat service."""

__version__ = "0.1.0"
