#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: qdrant_collection_info
short_description: Read the health figures of Qdrant collections
version_added: 0.1.0
author:
  - Aegis maintainers (@aegis-rag)
description:
  - Returns status, optimizer status, point, indexed vector and segment counts, optimizer configuration,
    vector parameters and the snapshots (newest first) of one collection or of all of them.
  - Reads only; never changes anything.
extends_documentation_fragment:
  - aegis.rag.attributes
  - aegis.rag.attributes.READ_ONLY
  - aegis.rag.qdrant
options:
  name:
    description:
      - Collection to describe. All collections when omitted.
      - A collection that does not exist gives an empty O(name) list and RV(exists=false), not a failure.
    type: str
    aliases: [collection]
seealso:
  - module: aegis.rag.qdrant_collection
"""

EXAMPLES = r"""
- name: Facts of the documents collection
  aegis.rag.qdrant_collection_info:
    name: aegis_docs_v2
  register: docs

- name: Fail when the optimizer reports an error
  ansible.builtin.assert:
    that: docs.collections[0].optimizer_status == 'ok'

- name: Names of the snapshots of the documents collection, newest first
  ansible.builtin.debug:
    msg: "{{ docs.collections[0].snapshots | map(attribute='name') | list }}"

- name: Every collection, for a report
  aegis.rag.qdrant_collection_info:
    qdrant_url: http://qdrant:6333
  register: all_collections
"""

RETURN = r"""
exists:
  description: Whether O(name) exists.
  returned: when O(name) is given
  type: bool
  sample: true
collections:
  description: One entry per collection, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Collection name.
      type: str
      sample: aegis_docs_v2
    status:
      description: green, yellow, grey or red.
      type: str
      sample: green
    optimizer_status:
      description: C(ok), or C(error) followed by the optimizer's error.
      type: str
      sample: ok
    points_count:
      description: Number of points.
      type: int
      sample: 12840
    indexed_vectors_count:
      description: Number of vectors in HNSW indexes.
      type: int
      sample: 12800
    segments_count:
      description: Number of segments.
      type: int
      sample: 4
    optimizer_config:
      description: Current optimizer configuration (C(config.optimizer_config)).
      type: dict
      sample: {deleted_threshold: 0.2, vacuum_min_vector_number: 1000, default_segment_number: 0}
    vectors:
      description: Dense vector parameters (one unnamed vector or a map of names).
      type: dict
      sample: {dense: {size: 384, distance: Cosine}}
    sparse_vectors:
      description: Sparse vector parameters by name.
      type: dict
      sample: {bm25: {modifier: idf}}
    snapshots_count:
      description: Number of snapshots of the collection on the Qdrant node.
      type: int
      sample: 1
    snapshots:
      description: The collection's snapshots on the Qdrant node, newest first, as Qdrant describes them.
      type: list
      elements: dict
      sample: [{name: aegis_docs_v2-3513412-2025-01-31-02-00-00.snapshot, creation_time: "2025-01-31T02:00:00",
                size: 73400320, checksum: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
"""

from ansible_collections.aegis.rag.plugins.module_utils.backup import newest_first
from ansible_collections.aegis.rag.plugins.module_utils.base import AegisModule
from ansible_collections.aegis.rag.plugins.module_utils.qdrant import (
    collection_facts, get_collection, list_collection_names, list_snapshots)


def describe(client, name):
    """Facts of one collection, or None when it does not exist (or vanished meanwhile)."""
    info = get_collection(client, name)
    if info is None:
        return None
    config = info.get("config", {})
    params = config.get("params", {})
    entry = {"name": name}
    entry.update(collection_facts(info))
    snapshots = newest_first(list_snapshots(client, name))
    entry.update(optimizer_config=config.get("optimizer_config"), vectors=params.get("vectors"),
                 sparse_vectors=params.get("sparse_vectors") or {}, snapshots=snapshots,
                 snapshots_count=len(snapshots))
    return entry


def main():
    module = AegisModule(dict(name=dict(type="str", aliases=["collection"])), services=("qdrant",),
                         supports_check_mode=True)
    name = module.params["name"]
    client = module.qdrant_client()
    with module.reporting(http="cannot read Qdrant collections"):
        names = [name] if name else list_collection_names(client)
        module.result["collections"] = [entry for entry in (describe(client, n) for n in names) if entry is not None]
    if name:
        module.result["exists"] = bool(module.result["collections"])
    module.exit()


if __name__ == "__main__":
    main()
