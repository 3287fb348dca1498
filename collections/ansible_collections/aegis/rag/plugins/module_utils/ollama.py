# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Thin Ollama REST helpers on top of the shared HttpClient (built by AegisModule.ollama_client)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DEFAULT_REGISTRY_PREFIXES = ("registry.ollama.ai/library/", "registry.ollama.ai/")


def normalize_name(name):
    """Ollama's canonical name: case-insensitive, default registry implied, missing tag = ':latest'."""
    name = name.strip().lower()
    for prefix in DEFAULT_REGISTRY_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last or "@" in last else name + ":latest"


def find_model(models, name):
    """The entry of GET /api/tags `models` that is `name` (tag-insensitive for ':latest'), or None."""
    wanted = normalize_name(name)
    for entry in models or []:
        for key in ("model", "name"):
            if entry.get(key) and normalize_name(entry[key]) == wanted:
                return entry
    return None


def list_models(client, timeout=None):
    """GET /api/tags -> the list of installed models."""
    return client.get("/api/tags", timeout=timeout).json().get("models") or []
