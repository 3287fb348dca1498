#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: qdrant_snapshot
short_description: Create, delete, prune, download and back up Qdrant collection snapshots to S3
version_added: 0.1.0
author:
  - Aegis maintainers (@aegis-rag)
description:
  - V(present) creates a snapshot of the collection and waits for it. Every run makes a new snapshot,
    so it always reports a change.
  - Every state returns the collection's snapshots, newest first. To only list them, use
    M(aegis.rag.qdrant_collection_info), which reads and never changes anything.
  - V(absent) deletes the snapshot O(snapshot_name); a snapshot that is already gone is no change.
  - V(prune) deletes the snapshots that are neither among the O(keep_last) newest nor younger than
    O(max_age). In check mode it returns the ones that would go.
  - V(download) streams a snapshot to O(dest), verifies its sha256 against the checksum Qdrant
    recorded, and moves it into place atomically. A O(dest) that already holds the same bytes is no change.
  - V(s3_upload) uploads a snapshot to S3 under C(<prefix>/<collection>/<YYYYMMDD>/<snapshot name>)
    (the date is the snapshot's creation day, UTC) with the metadata C(sha256), C(points-count),
    C(collection) and C(snapshot). Without O(snapshot_name) it first creates a new snapshot (a nightly
    backup in one task). An object already at that key with the same sha256 is no change; one with a
    different sha256 is an error unless O(force=true).
  - For V(s3_upload) the snapshot is staged on disk in O(tmp_dir), never held in memory, and removed afterwards.
extends_documentation_fragment:
  - aegis.rag.attributes
  - aegis.rag.qdrant
  - aegis.rag.s3
attributes:
  check_mode:
    support: full
    details:
      - V(s3_upload) of a snapshot that does not exist yet reports the change without a key.
  diff_mode:
    support: full
requirements:
  - boto3 on the target host, for O(state=s3_upload) only
options:
  collection:
    description: Name of the collection.
    type: str
    required: true
    aliases: [name]
  state:
    description: What to do; see the description.
    type: str
    choices: [present, absent, prune, download, s3_upload]
    default: present
  snapshot_name:
    description:
      - The snapshot to delete (required for V(absent)), download or upload.
      - V(download) uses the newest snapshot when omitted; V(s3_upload) creates a new one when omitted.
    type: str
  keep_last:
    description: For V(prune), keep this many newest snapshots.
    type: int
  max_age:
    description:
      - For V(prune), keep snapshots younger than this, for example C(7d), C(36h), C(2w), C(1d12h).
      - With O(keep_last) too, a snapshot is kept when either rule keeps it.
    type: str
  dest:
    description:
      - For V(download), the file to write, or an existing directory to write C(<snapshot name>) into.
      - The file is written next to its final name first and renamed only after its sha256 matched.
    type: path
  bucket:
    description: For V(s3_upload), the S3 bucket.
    type: str
  prefix:
    description: For V(s3_upload), the key prefix; keys are C(<prefix>/<collection>/<YYYYMMDD>/<snapshot name>).
    type: str
    default: qdrant
  force:
    description: For V(s3_upload), replace an object at the same key whose sha256 differs.
    type: bool
    default: false
  tmp_dir:
    description:
      - For V(s3_upload), the directory where the snapshot is staged before the upload; it needs room for one snapshot.
      - Defaults to the module's temporary directory on the target.
    type: path
  wait_timeout:
    description: Seconds allowed for Qdrant to create a snapshot (the request waits for it).
    type: int
    default: 600
seealso:
  - module: aegis.rag.qdrant_restore
  - module: aegis.rag.qdrant_collection_info
"""

EXAMPLES = r"""
- name: Nightly backup - snapshot the collection and upload it to S3
  aegis.rag.qdrant_snapshot:
    collection: aegis_docs_v2
    state: s3_upload
    bucket: aegis-backups
    prefix: qdrant
    region: eu-west-1
  register: backup

- name: Keep a week of local snapshots, and at least the last three
  aegis.rag.qdrant_snapshot:
    collection: aegis_docs_v2
    state: prune
    keep_last: 3
    max_age: 7d

- name: Take a snapshot, then copy it to the backup disk
  aegis.rag.qdrant_snapshot:
    collection: aegis_docs_v2
  register: snap

- name: Download it
  aegis.rag.qdrant_snapshot:
    collection: aegis_docs_v2
    state: download
    snapshot_name: "{{ snap.snapshot.name }}"
    dest: /srv/backups/qdrant/

- name: Delete a snapshot
  aegis.rag.qdrant_snapshot:
    collection: aegis_docs_v2
    state: absent
    snapshot_name: aegis_docs_v2-3513412-2025-01-31-02-00-00.snapshot
"""

RETURN = r"""
snapshot:
  description: The snapshot created, deleted, downloaded or uploaded (as Qdrant describes it).
  returned: when one snapshot is concerned (null in check mode before creation)
  type: dict
  sample: {name: aegis_docs_v2-3513412-2025-01-31-02-00-00.snapshot, creation_time: "2025-01-31T02:00:00",
           size: 73400320, checksum: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
snapshots:
  description: The collection's snapshots after the task (or as they would be in check mode), newest first.
  returned: always
  type: list
  elements: dict
  sample: [{name: aegis_docs_v2-3513412-2025-01-31-02-00-00.snapshot, creation_time: "2025-01-31T02:00:00",
            size: 73400320, checksum: 9f86d0...}]
deleted:
  description: Names of the snapshots deleted (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [aegis_docs_v2-3513412-2025-01-20-02-00-00.snapshot]
dest:
  description: The file written by V(download).
  returned: when O(state=download)
  type: str
  sample: /srv/backups/qdrant/aegis_docs_v2-3513412-2025-01-31-02-00-00.snapshot
sha256:
  description: sha256 of the snapshot downloaded or uploaded.
  returned: when O(state) is V(download) or V(s3_upload), except for a snapshot still to be created in check mode
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
bucket:
  description: The bucket of V(s3_upload).
  returned: when O(state=s3_upload)
  type: str
  sample: aegis-backups
key:
  description: The S3 key of V(s3_upload); null in check mode when the snapshot does not exist yet.
  returned: when O(state=s3_upload)
  type: str
  sample: qdrant/aegis_docs_v2/20250131/aegis_docs_v2-3513412-2025-01-31-02-00-00.snapshot
points_count:
  description:
    - The point count stored in the object's metadata, C(points-count), which M(aegis.rag.qdrant_restore) checks.
    - It is the collection's exact count read just before the module creates the snapshot, or, for an
      existing O(snapshot_name), when the upload runs; upload right after the snapshot so they match.
  returned: when O(state=s3_upload)
  type: int
  sample: 12840
"""

import os

from ansible_collections.aegis.rag.plugins.module_utils import backup, s3
from ansible_collections.aegis.rag.plugins.module_utils.base import AegisModule
from ansible_collections.aegis.rag.plugins.module_utils.qdrant import (
    count_points, create_snapshot, delete_snapshot, download_snapshot, get_collection, list_snapshots)
from ansible_collections.aegis.rag.plugins.module_utils.staging import staged_file


def argument_spec():
    """The module's own options; AegisModule adds the Qdrant and S3 connection options."""
    return dict(
        collection=dict(type="str", required=True, aliases=["name"]),
        state=dict(type="str", default="present",
                   choices=["present", "absent", "prune", "download", "s3_upload"]),
        snapshot_name=dict(type="str"),
        keep_last=dict(type="int"),
        max_age=dict(type="str"),
        dest=dict(type="path"),
        bucket=dict(type="str"),
        prefix=dict(type="str", default="qdrant"),
        force=dict(type="bool", default=False),
        tmp_dir=dict(type="path"),
        wait_timeout=dict(type="int", default=600),
    )


REQUIRED_IF = [
    ("state", "absent", ["snapshot_name"]),
    ("state", "prune", ["keep_last", "max_age"], True),
    ("state", "download", ["dest"]),
    ("state", "s3_upload", ["bucket"]),
]


def names(snapshots):
    return [s["name"] for s in backup.newest_first(snapshots)]


def find(module, snapshots, name):
    for snap in snapshots:
        if snap["name"] == name:
            return snap
    module.fail("snapshot %s not found in collection %s (existing: %s)"
                % (name, module.params["collection"], ", ".join(names(snapshots)) or "none"))


class Snapshots:
    """One method per state; each fills module.result."""

    def __init__(self, module):
        self.module = module
        self.client = module.qdrant_client()
        self.p = module.params
        self.collection = self.p["collection"]
        self.result = module.result
        self.result["deleted"] = []

    def current(self):
        return backup.newest_first(list_snapshots(self.client, self.collection))

    def create(self):
        return create_snapshot(self.client, self.collection, timeout=self.p["wait_timeout"])

    def state_present(self):
        before = self.current()
        self.result.update(changed=True, snapshot=None)
        if self.module.check_mode:
            after_names = ["(new snapshot)"] + names(before)
            self.result["snapshots"] = before
        else:
            self.result["snapshot"] = self.create()
            self.result["snapshots"] = self.current()
            after_names = names(self.result["snapshots"])
        self.result["diff"] = {"before": {"snapshots": names(before)}, "after": {"snapshots": after_names}}

    def delete(self, before, doomed):
        if doomed:
            self.result["changed"] = True
            if not self.module.check_mode:
                for name in doomed:
                    delete_snapshot(self.client, self.collection, name, timeout=self.p["wait_timeout"])
        self.result["deleted"] = doomed
        remaining = [s for s in before if s["name"] not in doomed]
        self.result["snapshots"] = remaining if self.module.check_mode else self.current()
        self.result["diff"] = {"before": {"snapshots": names(before)}, "after": {"snapshots": names(remaining)}}

    def state_absent(self):
        before = self.current()
        name = self.p["snapshot_name"]
        gone = [s for s in before if s["name"] == name]
        if gone:
            self.result["snapshot"] = gone[0]
        self.delete(before, [name] if gone else [])

    def state_prune(self):
        try:
            max_age = backup.parse_duration(self.p["max_age"]) if self.p["max_age"] else None
        except ValueError as e:
            self.module.fail(str(e))
        if self.p["keep_last"] is not None and self.p["keep_last"] < 0:
            self.module.fail("keep_last must be 0 or more, got %d" % self.p["keep_last"])
        before = self.current()
        self.delete(before, backup.select_for_prune(before, self.p["keep_last"], max_age))

    def state_download(self):
        before = self.current()
        if self.p["snapshot_name"]:
            snap = find(self.module, before, self.p["snapshot_name"])
        elif before:
            snap = before[0]
        else:
            self.module.fail("collection %s has no snapshot to download" % self.collection)
        dest = self.p["dest"]
        if os.path.isdir(dest):
            dest = os.path.join(dest, snap["name"])
        if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
            self.module.fail("directory of dest %s does not exist" % dest)
        self.result.update(snapshot=snap, snapshots=before, dest=dest)
        expected = snap.get("checksum")
        existing = backup.sha256_file(dest) if os.path.isfile(dest) else None
        if existing and existing == expected:
            self.result["sha256"] = existing
            return
        self.result["diff"] = {"before": {"dest": dest, "sha256": existing},
                               "after": {"dest": dest, "sha256": expected or "(computed on download)"}}
        if self.module.check_mode:
            self.result.update(changed=True, sha256=expected)
            return
        with staged_file(os.path.dirname(os.path.abspath(dest)), ".%s.part-" % snap["name"]) as part:
            sha = self.result["sha256"] = self.fetch(snap, part)
            if existing == sha:  # no checksum from Qdrant, same bytes as before
                return
            self.module.atomic_move(part, dest)
            self.result["changed"] = True

    def fetch(self, snap, part):
        """Download a snapshot into the staged file `part`, verified against Qdrant's checksum; its sha256."""
        _size, sha = download_snapshot(self.client, self.collection, snap["name"], part,
                                       timeout=self.p["wait_timeout"])
        if snap.get("checksum") and sha != snap["checksum"]:
            self.module.fail("snapshot %s downloaded with sha256 %s but Qdrant recorded %s; nothing kept"
                             % (snap["name"], sha, snap["checksum"]))
        return sha

    def state_s3_upload(self):
        client = self.module.s3_client()
        bucket, prefix = self.p["bucket"], self.p["prefix"]
        self.result.update(bucket=bucket, key=None, snapshot=None, sha256=None, points_count=None)
        info = get_collection(self.client, self.collection)
        if info is None:
            self.module.fail("collection %s does not exist" % self.collection)
        points = count_points(self.client, self.collection)
        before = self.current()
        if self.p["snapshot_name"]:
            snap = find(self.module, before, self.p["snapshot_name"])
        elif self.module.check_mode:
            self.result.update(changed=True, snapshots=before, points_count=points,
                               msg="would create a snapshot and upload it under %s"
                                   % backup.collection_prefix(prefix, self.collection))
            return
        else:
            snap = self.create()
            self.result["changed"] = True
        key = backup.backup_key(prefix, self.collection, backup.snapshot_date(snap), snap["name"])
        self.result.update(key=key, snapshot=snap, points_count=points, snapshots=self.current())
        with self.module.reporting(s3="S3 request on s3://%s/%s failed" % (bucket, key)):
            head = s3.head_object(client, bucket, key)
            if self.already_there(head, snap.get("checksum"), key):
                return
            self.result["diff"] = {"before": {"key": key, "sha256": backup.metadata_sha256(head)},
                                   "after": {"key": key, "sha256": snap.get("checksum") or "(computed on upload)"}}
            if self.module.check_mode:
                self.result.update(changed=True, sha256=snap.get("checksum"))
                return
            self.upload(client, snap, head, key, points)

    def already_there(self, head, sha, key):
        """True when `key` already holds this snapshot; fails on a different object unless force."""
        if head is None or sha is None:
            return False
        stored = backup.metadata_sha256(head)
        if stored == sha:
            self.result["sha256"] = sha
            return True
        if not self.p["force"]:
            self.module.fail("s3://%s/%s exists with sha256 %s, not %s; set force: true to replace it"
                             % (self.p["bucket"], key, stored, sha))
        return False

    def upload(self, client, snap, head, key, points):
        staging = self.p["tmp_dir"] or self.module.tmpdir
        if not os.path.isdir(staging):
            self.module.fail("tmp_dir %s does not exist" % staging)
        with staged_file(staging, ".%s.part-" % snap["name"]) as part:
            sha = self.result["sha256"] = self.fetch(snap, part)
            if head is not None and self.already_there(head, sha, key):
                return
            s3.upload_file(client, part, self.p["bucket"], key,
                           backup.backup_metadata(sha, points, self.collection, snap["name"]))
            size = os.path.getsize(part)
        stored = s3.head_object(client, self.p["bucket"], key)
        if stored is None or stored.get("ContentLength") != size:
            self.module.fail("upload of s3://%s/%s did not complete (stored size %s, expected %d)"
                             % (self.p["bucket"], key, stored and stored.get("ContentLength"), size))
        self.result["changed"] = True


def main():
    module = AegisModule(argument_spec(), services=("qdrant", "s3"), supports_check_mode=True,
                         required_if=REQUIRED_IF)
    p = module.params
    if p["state"] == "s3_upload":
        module.require_boto3()
    job = Snapshots(module)
    with module.reporting(http="Qdrant request for snapshots of %s failed" % p["collection"]):
        if p["state"] != "s3_upload" and get_collection(job.client, p["collection"]) is None:
            module.fail("collection %s does not exist" % p["collection"])
        getattr(job, "state_" + p["state"])()
    module.exit()


if __name__ == "__main__":
    main()
