# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Thin Qdrant REST helpers on top of the shared HttpClient (append new helpers; keep these)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.aegis.rag.plugins.module_utils.http import HttpClient

GREEN = "green"


class QdrantWaitTimeout(Exception):
    """wait_green gave up; `info` is the last collection info seen (or None)."""

    def __init__(self, msg, info=None):
        super(QdrantWaitTimeout, self).__init__(msg)
        self.msg = msg
        self.info = info


def qdrant_client(module, retries=3):
    """HttpClient for the module's qdrant_url, api_key, timeout and validate_certs parameters."""
    params = module.params
    headers = {"api-key": params["api_key"]} if params.get("api_key") else {}
    return HttpClient(params["qdrant_url"], headers=headers, timeout=params["timeout"],
                      validate_certs=params["validate_certs"], retries=retries)


def get_collection(client, name):
    """The `result` of GET /collections/{name}, or None when the collection does not exist."""
    resp = client.get("/collections/%s" % name, expect=(200, 404))
    if resp.status == 404:
        return None
    return resp.json().get("result") or {}


def collection_facts(info):
    """The figures reports need from a collection info (names as Qdrant 1.16+ returns them)."""
    optimizer = info.get("optimizer_status")
    if isinstance(optimizer, dict):  # {"error": "..."} when the optimiser failed
        optimizer = "error: %s" % optimizer.get("error", optimizer)
    return {
        "status": info.get("status"),
        "optimizer_status": optimizer,
        "points_count": info.get("points_count"),
        "indexed_vectors_count": info.get("indexed_vectors_count"),
        "segments_count": info.get("segments_count"),
    }


def wait_green(client, name, timeout, interval=0.5):
    """Poll until the collection is green; returns its info, raises QdrantWaitTimeout after `timeout` s."""
    deadline = time.monotonic() + timeout
    info = None
    while True:
        info = get_collection(client, name)
        if info is not None and info.get("status") == GREEN:
            return info
        if time.monotonic() >= deadline:
            state = "missing" if info is None else info.get("status")
            raise QdrantWaitTimeout("collection %s not green after %ss (status: %s)" % (name, timeout, state),
                                    info)
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
