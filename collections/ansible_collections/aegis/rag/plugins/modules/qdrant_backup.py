#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: qdrant_backup
short_description: List and prune the Qdrant backups kept in S3
version_added: 0.1.0
author:
  - Aegis maintainers (@aegis-rag)
description:
  - Works on the backups written by M(aegis.rag.qdrant_snapshot) with
    O(aegis.rag.qdrant_snapshot#module:state=s3_upload), laid out as
    C(<prefix>/<collection>/<YYYYMMDD>/<snapshot name>). Other keys under the prefix are ignored.
  - Reads the backups of each collection, newest first, and the metadata of the newest one
    (C(sha256), C(points-count), C(snapshot)); that alone never changes anything.
  - With O(prune=true), first deletes the backups that are neither among the O(keep_last) newest nor younger than
    O(max_age), per collection. The age of a backup counts from the end of its key's day (UTC), so
    C(max_age=7d) keeps seven whole days. In check mode it returns the keys that would go.
extends_documentation_fragment:
  - aegis.rag.attributes
  - aegis.rag.s3
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - With O(prune=true), the keys of each collection before and after.
requirements:
  - boto3 on the target host
options:
  collections:
    description: The collections whose backups to list or prune.
    type: list
    elements: str
    required: true
  bucket:
    description: S3 bucket holding the backups.
    type: str
    required: true
  prefix:
    description: Key prefix the backups were uploaded under.
    type: str
    default: qdrant
  prune:
    description: Delete the backups outside the retention policy of O(keep_last) and O(max_age).
    type: bool
    default: false
  keep_last:
    description: With O(prune=true), keep this many newest backups of each collection (at least 1).
    type: int
  max_age:
    description:
      - With O(prune=true), keep backups younger than this, for example C(30d), C(2w).
      - With O(keep_last) too, a backup is kept when either rule keeps it.
    type: str
seealso:
  - module: aegis.rag.qdrant_snapshot
  - module: aegis.rag.qdrant_restore
"""

EXAMPLES = r"""
- name: Keep the 7 newest backups and any of the last 30 days
  aegis.rag.qdrant_backup:
    collections: [aegis_docs_v2]
    bucket: aegis-backups
    prune: true
    keep_last: 7
    max_age: 30d

- name: Is last night's backup there?
  aegis.rag.qdrant_backup:
    collections: [aegis_docs_v2]
    bucket: aegis-backups
  register: backups

- name: Fail without a backup of today
  ansible.builtin.assert:
    that: backups.newest.aegis_docs_v2.age_seconds == 0
"""

RETURN = r"""
backups:
  description: Per collection, its backups after the task (or as they would be in check mode), newest first.
  returned: always
  type: dict
  sample: {aegis_docs_v2: [{key: qdrant/aegis_docs_v2/20250131/aegis_docs_v2-1-2025-01-31-02-00-00.snapshot,
                            date: "20250131", size: 73400320, last_modified: "2025-01-31T02:01:10+00:00",
                            age_seconds: 0}]}
newest:
  description:
    - Per collection, its newest backup with the metadata recorded at upload (C(sha256), C(points_count),
      C(snapshot); null when missing), or null when the collection has no backup.
  returned: always
  type: dict
  sample: {aegis_docs_v2: {key: qdrant/aegis_docs_v2/20250131/aegis_docs_v2-1-2025-01-31-02-00-00.snapshot,
                           date: "20250131", size: 73400320, last_modified: "2025-01-31T02:01:10+00:00",
                           age_seconds: 0, sha256: 9f86d0..., points_count: 12840,
                           snapshot: aegis_docs_v2-1-2025-01-31-02-00-00.snapshot}}
deleted:
  description: Keys deleted (or that would be, in check mode), oldest first.
  returned: always
  type: list
  elements: str
  sample: [qdrant/aegis_docs_v2/20241201/aegis_docs_v2-1-2024-12-01-02-00-00.snapshot]
"""

from ansible_collections.aegis.rag.plugins.module_utils import backup, s3
from ansible_collections.aegis.rag.plugins.module_utils.base import AegisModule


def argument_spec():
    """The module's own options; AegisModule adds the S3 connection options."""
    return dict(
        collections=dict(type="list", elements="str", required=True),
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default="qdrant"),
        prune=dict(type="bool", default=False),
        keep_last=dict(type="int"),
        max_age=dict(type="str"),
    )


def retention(module):
    """(keep_last, max_age seconds) of a prune, validated."""
    p = module.params
    if p["keep_last"] is None and not p["max_age"]:
        module.fail("prune needs keep_last and/or max_age")
    if p["keep_last"] is not None and p["keep_last"] < 1:
        module.fail("keep_last must be 1 or more (the newest backup is never pruned), got %d" % p["keep_last"])
    try:
        return p["keep_last"], backup.parse_duration(p["max_age"]) if p["max_age"] else None
    except ValueError as e:
        module.fail(str(e))


def listing(client, bucket, prefix, collection):
    """The collection's backups, newest first, each with its age."""
    entries = backup.backup_entries(s3.list_objects(client, bucket, backup.collection_prefix(prefix, collection)),
                                    prefix, collection)
    for entry in entries:
        entry["age_seconds"] = backup.backup_age_seconds(entry["date"])
    return entries


def with_metadata(client, bucket, entry):
    """`entry` with the metadata its upload recorded (None values when the object has none)."""
    head = s3.head_object(client, bucket, entry["key"]) or {}
    return dict(entry, sha256=backup.metadata_sha256(head), points_count=backup.metadata_points(head),
                snapshot=head.get("Metadata", {}).get(backup.META_SNAPSHOT))


def main():
    module = AegisModule(argument_spec(), services=("s3",), supports_check_mode=True)
    p = module.params
    module.require_boto3()
    pruning = p["prune"]
    keep_last, max_age = retention(module) if pruning else (None, None)
    client = module.s3_client()
    result = module.result
    result.update(backups={}, newest={}, deleted=[])
    before, after = {}, {}
    with module.reporting(s3="S3 request on s3://%s/%s failed" % (p["bucket"], p["prefix"])):
        for collection in p["collections"]:
            entries = listing(client, p["bucket"], p["prefix"], collection)
            doomed = backup.select_backups_for_prune(entries, keep_last, max_age) if pruning else []
            if doomed and not module.check_mode:
                for key in doomed:
                    s3.delete_object(client, p["bucket"], key)
            kept = [e for e in entries if e["key"] not in doomed]
            before[collection], after[collection] = [e["key"] for e in entries], [e["key"] for e in kept]
            result["deleted"].extend(doomed)
            result["backups"][collection] = kept
            result["newest"][collection] = with_metadata(client, p["bucket"], kept[0]) if kept else None
    result["changed"] = bool(result["deleted"])
    if pruning:
        result["diff"] = {"before": {"backups": before}, "after": {"backups": after}}
    module.exit()


if __name__ == "__main__":
    main()
