#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: qdrant_collection
short_description: Manage a Qdrant collection, its optimizer settings and its health
version_added: 0.1.0
author:
  - Aegis maintainers (@aegis-rag)
description:
  - Creates a Qdrant collection with its vector parameters, or deletes it.
  - Vector parameters are set at creation only. When the collection exists with different vector
    parameters the module fails and says what differs; it never recreates a collection.
  - Applies O(optimizers_config) with C(PATCH /collections/{name}), and only the fields that differ
    from the collection's current C(config.optimizer_config).
  - Resumes a C(grey) collection (optimizations paused, for example after a restart) by sending an
    empty optimizer update, which is reported as a change.
  - Deleting a collection that holds points needs O(force=true). The module takes no snapshot before
    deleting; use M(aegis.rag.qdrant_snapshot) first when a copy is wanted.
extends_documentation_fragment:
  - aegis.rag.attributes
  - aegis.rag.qdrant
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows the collection's state, vector parameters on creation, and the optimizer fields that change.
options:
  name:
    description: Name of the collection.
    type: str
    required: true
    aliases: [collection]
  state:
    description:
      - V(present) creates the collection when it is missing and applies O(optimizers_config).
      - V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  vectors:
    description:
      - Dense vector parameters, used when the collection is created and checked when it exists.
      - Either one unnamed vector, C({size, distance}), or a map of vector names to C({size, distance}).
      - C(distance) is one of C(Cosine), C(Euclid), C(Dot), C(Manhattan) (case does not matter).
      - Other Qdrant vector parameters (for example C(on_disk), C(hnsw_config)) are passed through at
        creation and compared when given.
    type: dict
  sparse_vectors:
    description:
      - "Sparse vectors as a map of names to their parameters: C({}) for the defaults, or for example
        C({modifier: idf}) for BM25-style scoring."
      - Set at creation; when the collection exists the names and the given parameters are checked.
    type: dict
  optimizers_config:
    description:
      - Optimizer settings. Only the fields given are compared and changed.
    type: dict
    suboptions:
      deleted_threshold:
        description: Fraction of deleted points in a segment above which the segment is vacuumed (0 to 1).
        type: float
      vacuum_min_vector_number:
        description: Minimum number of vectors in a segment before it is considered for vacuum (Qdrant requires 100 or more).
        type: int
      default_segment_number:
        description: Target number of segments; V(0) lets Qdrant pick from the CPU count.
        type: int
      max_segment_size:
        description: Maximum segment size in kilobytes.
        type: int
      indexing_threshold:
        description: Segment size in kilobytes above which vectors are indexed (HNSW); V(0) disables indexing.
        type: int
      flush_interval_sec:
        description: Interval between forced flushes, in seconds.
        type: int
      max_optimization_threads:
        description: Maximum threads per optimization job (V(0) means no optimizations).
        type: int
  wait:
    description:
      - Wait until the collection is C(green) (all optimizations done) before returning.
      - Skipped in check mode when a change would be made.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for C(green) when O(wait=true); the module fails past it.
    type: int
    default: 300
  force:
    description: Allow O(state=absent) to delete a collection that holds points.
    type: bool
    default: false
seealso:
  - module: aegis.rag.qdrant_collection_info
  - module: aegis.rag.qdrant_snapshot
"""

EXAMPLES = r"""
- name: Documents collection with a dense and a sparse vector
  aegis.rag.qdrant_collection:
    qdrant_url: http://qdrant:6333
    api_key: "{{ vault_qdrant_api_key }}"
    name: aegis_docs_v2
    vectors:
      dense: {size: 384, distance: Cosine}
    sparse_vectors:
      bm25: {modifier: idf}

- name: The manual's optimizer settings, then wait until the optimizers are done
  aegis.rag.qdrant_collection:
    name: aegis_docs_v2
    optimizers_config:
      deleted_threshold: 0.2
      vacuum_min_vector_number: 1000
      default_segment_number: 0
    wait: true
    wait_timeout: 600

- name: Delete a scratch collection even if it holds points
  aegis.rag.qdrant_collection:
    name: scratch
    state: absent
    force: true
"""

RETURN = r"""
name:
  description: Name of the collection.
  returned: always
  type: str
  sample: aegis_docs_v2
state:
  description: Whether the collection exists after the task (or would, in check mode).
  returned: always
  type: str
  sample: present
status:
  description: Collection status (green, yellow, grey or red); null when absent or not created yet (check mode).
  returned: always
  type: str
  sample: green
optimizer_status:
  description: C(ok), or C(error) followed by the optimizer's error.
  returned: always
  type: str
  sample: ok
points_count:
  description: Number of points.
  returned: always
  type: int
  sample: 12840
indexed_vectors_count:
  description: Number of vectors in HNSW indexes.
  returned: always
  type: int
  sample: 12800
segments_count:
  description: Number of segments.
  returned: always
  type: int
  sample: 4
optimizers_config:
  description: The collection's optimizer configuration after the task.
  returned: when the collection exists
  type: dict
  sample: {deleted_threshold: 0.2, vacuum_min_vector_number: 1000, default_segment_number: 0,
           indexing_threshold: 10000, flush_interval_sec: 5, max_optimization_threads: null, max_segment_size: null}
updated:
  description: Optimizer fields sent with PATCH (or that would be, in check mode).
  returned: always
  type: dict
  sample: {deleted_threshold: 0.2}
resumed:
  description: Whether a grey collection was resumed.
  returned: always
  type: bool
  sample: false
"""

from ansible_collections.aegis.rag.plugins.module_utils.base import AegisModule
from ansible_collections.aegis.rag.plugins.module_utils.qdrant import (
    OPTIMIZER_FIELDS, QdrantWaitTimeout, collection_facts, create_collection, delete_collection,
    get_collection, normalize_sparse, normalize_vectors, optimizer_changes, patch_collection,
    vector_mismatches, wait_green)

EMPTY_FACTS = {"status": None, "optimizer_status": None, "points_count": None,
               "indexed_vectors_count": None, "segments_count": None}


def argument_spec():
    """The module's own options; AegisModule adds the Qdrant connection options."""
    return dict(
        name=dict(type="str", required=True, aliases=["collection"]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        vectors=dict(type="dict"),
        sparse_vectors=dict(type="dict"),
        optimizers_config=dict(type="dict", options=dict(
            (field, dict(type="float" if kind is float else "int")) for field, kind in OPTIMIZER_FIELDS.items())),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
        force=dict(type="bool", default=False),
    )


def check_optimizers(wanted):
    """A message for an out-of-range optimizer value, or None."""
    for field, value in (wanted or {}).items():
        if value is None:
            continue
        if field == "deleted_threshold" and not 0 <= value <= 1:
            return "optimizers_config.deleted_threshold must be between 0 and 1, got %s" % value
        if value < 0:
            return "optimizers_config.%s must not be negative, got %s" % (field, value)
    return None


def absent(module, client, name, info):
    result = module.result
    if info is None:
        return
    points = info.get("points_count") or 0
    if points and not module.params["force"]:
        module.fail("collection %s holds %d points; set force: true to delete it "
                    "(take a snapshot first with aegis.rag.qdrant_snapshot if you want a copy)" % (name, points))
    result["diff"] = {"before": {"state": "present", "points_count": points}, "after": {"state": "absent"}}
    result["changed"] = True
    if not module.check_mode:
        delete_collection(client, name, timeout=module.params["wait_timeout"])
    result.update(EMPTY_FACTS, state="absent")


def create(module, client, name, vectors, sparse, optimizers):
    result = module.result
    if vectors is None and sparse is None:
        module.fail("collection %s does not exist: give vectors and/or sparse_vectors to create it" % name)
    body = {}
    if vectors is not None:
        body["vectors"] = vectors
    if sparse is not None:
        body["sparse_vectors"] = sparse
    if optimizers:
        body["optimizers_config"] = optimizers
    result["diff"] = {"before": {"state": "absent"}, "after": dict(body, state="present")}
    result["changed"] = True
    result["updated"] = optimizers
    if module.check_mode:
        result["state"] = "present"
        return None
    create_collection(client, name, body, timeout=module.params["wait_timeout"])
    return get_collection(client, name)


def update(module, client, name, info, vectors, sparse, wanted):
    mismatches = vector_mismatches(info.get("config", {}).get("params", {}), vectors, sparse)
    if mismatches:
        module.fail("collection %s exists with different vector parameters (%s); this module never "
                    "recreates a collection: delete it (state: absent, force: true) or change the task"
                    % (name, "; ".join(mismatches)), mismatches=mismatches)
    current = info.get("config", {}).get("optimizer_config") or {}
    changes = optimizer_changes(current, wanted)
    grey = info.get("status") == "grey"
    if not changes and not grey:
        return info
    before = {"optimizers_config": dict((k, current.get(k)) for k in changes), "status": info.get("status")}
    after = {"optimizers_config": changes, "status": "resumed" if grey else info.get("status")}
    module.result.update(changed=True, updated=changes, resumed=grey, diff={"before": before, "after": after})
    if module.check_mode:
        return info
    # any update resumes a grey collection, including an empty one
    patch_collection(client, name, {"optimizers_config": changes}, timeout=module.params["wait_timeout"])
    return get_collection(client, name)


def wanted_parameters(module):
    """(vectors, sparse_vectors, optimizer settings) from the options, validated."""
    p = module.params
    wanted = dict((k, v) for k, v in (p["optimizers_config"] or {}).items() if v is not None)
    problem = check_optimizers(wanted)
    if problem:
        module.fail(problem)
    try:
        return normalize_vectors(p["vectors"]), normalize_sparse(p["sparse_vectors"]), wanted
    except ValueError as e:
        module.fail(str(e))


def main():
    module = AegisModule(argument_spec(), services=("qdrant",), supports_check_mode=True)
    p = module.params
    name = p["name"]
    module.result.update(name=name, state=p["state"], updated={}, resumed=False, **EMPTY_FACTS)
    vectors, sparse, wanted = wanted_parameters(module)
    client = module.qdrant_client()
    with module.reporting(http="Qdrant request for collection %s failed" % name):
        info = get_collection(client, name)
        if p["state"] == "absent":
            absent(module, client, name, info)
            module.exit()
        if info is None:
            info = create(module, client, name, vectors, sparse, wanted)
        else:
            info = update(module, client, name, info, vectors, sparse, wanted)
        try:
            if p["wait"] and info is not None and not (module.check_mode and module.result["changed"]):
                info = wait_green(client, name, p["wait_timeout"])
        except QdrantWaitTimeout as e:
            module.fail(e.msg, **collection_facts(e.info or {}))
    if info is not None:
        module.result.update(collection_facts(info))
        module.result["optimizers_config"] = info.get("config", {}).get("optimizer_config")
    module.exit()


if __name__ == "__main__":
    main()
