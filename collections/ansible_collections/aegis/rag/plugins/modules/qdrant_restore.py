#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: qdrant_restore
short_description: Restore a Qdrant collection from a snapshot backed up to S3
version_added: 0.1.0
author:
  - Aegis maintainers (@aegis-rag)
description:
  - Restores O(collection) from a backup written by M(aegis.rag.qdrant_snapshot) with
    O(aegis.rag.qdrant_snapshot#module:state=s3_upload),
    found under C(<prefix>/<source_collection>/<YYYYMMDD>/), the newest one or the newest of O(backup_date).
  - "Steps, in order: pick the object and read its metadata; refuse to overwrite a collection that holds
    points unless O(force=true); with O(recover_via=upload), stream the object to a file in O(tmp_dir)
    (never whole in memory) and verify its sha256 against the object's C(sha256) metadata; take a safety
    snapshot of the current collection; recover the collection; wait until it is green; check that
    its exact point count equals the C(points-count) metadata."
  - With O(recover_via=upload), a checksum mismatch stops the module before anything in Qdrant is touched.
    With O(recover_via=url), Qdrant checks the checksum itself before recovering, after the safety snapshot.
  - The staged file is removed on every path, success or failure.
  - A restore is an action, so a run that restores always reports a change. Check mode reads the
    listing and the object's metadata only and returns the plan.
extends_documentation_fragment:
  - aegis.rag.attributes
  - aegis.rag.qdrant
  - aegis.rag.s3
attributes:
  check_mode:
    support: full
    details:
      - Returns the key, size, sha256 and the steps that would run; downloads nothing.
  diff_mode:
    support: full
    details:
      - Shows the collection's point count before and after, and the backup key.
requirements:
  - boto3 on the target host
options:
  collection:
    description: Collection to restore into. It is created when missing.
    type: str
    required: true
    aliases: [name]
  source_collection:
    description: Collection name in the backup keys, when restoring into a collection of another name.
    type: str
  bucket:
    description: S3 bucket holding the backups.
    type: str
    required: true
  prefix:
    description: Key prefix used when the backups were uploaded.
    type: str
    default: qdrant
  backup_date:
    description:
      - Day of the backup, C(YYYYMMDD). The newest backup of that day is used; the newest of all days when omitted.
    type: str
  key:
    description: Exact S3 key of the backup, instead of O(backup_date) and the key layout.
    type: str
  force:
    description: Allow overwriting a collection that holds points.
    type: bool
    default: false
  safety_snapshot:
    description:
      - Take a snapshot of the existing collection (on the Qdrant node) before recovering over it.
      - Its name is returned so the collection can be rolled back with the same module family.
    type: bool
    default: true
  recover_via:
    description:
      - V(upload) downloads the object to O(tmp_dir), verifies it, and streams it to Qdrant's upload endpoint.
      - V(url) passes a presigned URL to Qdrant's recover endpoint; Qdrant downloads the object itself and
        verifies the checksum (the module sends the metadata sha256). Qdrant must reach the S3 endpoint.
    type: str
    choices: [upload, url]
    default: upload
  url_expiry:
    description: Lifetime in seconds of the presigned URL of O(recover_via=url).
    type: int
    default: 3600
  priority:
    description: Qdrant's recovery priority; V(snapshot) makes the snapshot's data win.
    type: str
    choices: [snapshot, replica, no_sync]
    default: snapshot
  tmp_dir:
    description:
      - Directory where the object is staged with O(recover_via=upload); it needs room for one snapshot.
      - Defaults to the module's temporary directory on the target.
    type: path
  wait_timeout:
    description: Seconds allowed for the recovery request and then again for the collection to turn green.
    type: int
    default: 1800
seealso:
  - module: aegis.rag.qdrant_snapshot
"""

EXAMPLES = r"""
- name: Restore last night's backup over the live collection (emergency recovery)
  aegis.rag.qdrant_restore:
    collection: aegis_docs_v2
    bucket: aegis-backups
    prefix: qdrant
    backup_date: "{{ backup_date }}"
    force: true
    tmp_dir: /var/lib/qdrant-restore
  register: restore

- name: What would a restore of the newest backup do?
  aegis.rag.qdrant_restore:
    collection: aegis_docs_v2
    bucket: aegis-backups
  check_mode: true
  register: plan

- name: Restore into a scratch collection, letting Qdrant fetch the object itself
  aegis.rag.qdrant_restore:
    collection: aegis_docs_restore_test
    source_collection: aegis_docs_v2
    bucket: aegis-backups
    recover_via: url
"""

RETURN = r"""
bucket:
  description: The bucket.
  returned: always
  type: str
  sample: aegis-backups
key:
  description: The S3 key restored (or that would be).
  returned: when a backup was found
  type: str
  sample: qdrant/aegis_docs_v2/20250131/aegis_docs_v2-3513412-2025-01-31-02-00-00.snapshot
size:
  description: Size of the backup object in bytes.
  returned: when a backup was found
  type: int
  sample: 73400320
sha256:
  description: sha256 of the backup (from its metadata; verified unless in check mode).
  returned: when a backup was found
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
expected_points_count:
  description: Point count recorded in the backup's metadata; null when the object has none.
  returned: when a backup was found
  type: int
  sample: 12840
points_count:
  description: Exact point count of the collection after the restore (before it, in check mode).
  returned: always
  type: int
  sample: 12840
safety_snapshot:
  description: Name of the safety snapshot taken before the recovery; null when none was taken.
  returned: always
  type: str
  sample: aegis_docs_v2-3513412-2025-02-01-09-12-44.snapshot
safety_snapshot_taken:
  description: Whether a safety snapshot was taken (in check mode, whether one would be).
  returned: always
  type: bool
  sample: true
plan:
  description: The steps run (or that would run, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["download s3://aegis-backups/qdrant/aegis_docs_v2/20250131/x.snapshot (73400320 bytes)",
           "verify sha256 9f86d0...", "safety snapshot of aegis_docs_v2", "recover aegis_docs_v2 by upload",
           "wait for green", "check points_count == 12840"]
durations:
  description: Seconds spent in each step, and in total.
  returned: when not in check mode
  type: dict
  sample: {download: 4.1, safety_snapshot: 1.3, recover: 6.2, wait: 0.5, total: 12.4}
"""

import os
import re
import time

from ansible_collections.aegis.rag.plugins.module_utils import backup, s3
from ansible_collections.aegis.rag.plugins.module_utils.base import AegisModule
from ansible_collections.aegis.rag.plugins.module_utils.http_client import HttpError
from ansible_collections.aegis.rag.plugins.module_utils.qdrant import (
    QdrantWaitTimeout, count_points, create_snapshot, get_collection, recover_by_upload, recover_from_url,
    wait_green)
from ansible_collections.aegis.rag.plugins.module_utils.staging import staged_file


def argument_spec():
    """The module's own options; AegisModule adds the Qdrant and S3 connection options."""
    return dict(
        collection=dict(type="str", required=True, aliases=["name"]),
        source_collection=dict(type="str"),
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default="qdrant"),
        backup_date=dict(type="str"),
        key=dict(type="str", no_log=False),
        force=dict(type="bool", default=False),
        safety_snapshot=dict(type="bool", default=True),
        recover_via=dict(type="str", choices=["upload", "url"], default="upload"),
        url_expiry=dict(type="int", default=3600),
        priority=dict(type="str", choices=["snapshot", "replica", "no_sync"], default="snapshot"),
        tmp_dir=dict(type="path"),
        wait_timeout=dict(type="int", default=1800),
    )


SIGNED_QUERY = re.compile(r"\?[^\s\"':]*X-Amz-[^\s\"':]*")


def redact_signature(text):
    """Drop the query (signature, credential scope, token) of presigned URLs quoted in `text`."""
    return SIGNED_QUERY.sub("?<signature redacted>", text or "")


class Restore:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.collection = self.p["collection"]
        self.qdrant = module.qdrant_client()
        self.s3 = module.s3_client()
        self.result = module.result
        self.result.update(bucket=self.p["bucket"], points_count=None, safety_snapshot=None,
                           safety_snapshot_taken=False, plan=[])
        self.durations = {}

    def fail(self, msg, **extra):
        self.module.fail(msg, **extra)

    def timed(self, step, func, *args, **kwargs):
        start = time.monotonic()
        try:
            return func(*args, **kwargs)
        finally:
            self.durations[step] = round(time.monotonic() - start, 3)

    # -- decisions (read only)
    def find_backup(self):
        """The key to restore and its HEAD; fails when there is none."""
        bucket, prefix = self.p["bucket"], self.p["prefix"]
        source = self.p["source_collection"] or self.collection
        if self.p["key"]:
            key = self.p["key"]
        else:
            where = backup.collection_prefix(prefix, source)
            if self.p["backup_date"]:
                where += self.p["backup_date"] + "/"
            chosen = backup.choose_backup(s3.list_objects(self.s3, bucket, where), prefix, source,
                                          self.p["backup_date"])
            if chosen is None:
                self.fail("no backup found under s3://%s/%s" % (bucket, where))
            key = chosen["Key"]
        head = s3.head_object(self.s3, bucket, key)
        if head is None:
            self.fail("s3://%s/%s does not exist" % (bucket, key))
        sha = backup.metadata_sha256(head)
        if not sha:
            self.fail("s3://%s/%s has no sha256 metadata, so it cannot be verified; upload backups with "
                      "aegis.rag.qdrant_snapshot (state: s3_upload)" % (bucket, key))
        self.result.update(key=key, size=head.get("ContentLength"), sha256=sha,
                           expected_points_count=backup.metadata_points(head))
        return key, sha

    def plan(self, key, info):
        """The steps to run, after checking the target may be overwritten."""
        points = count_points(self.qdrant, self.collection) if info is not None else 0
        self.result["points_count"] = points
        if points and not self.p["force"]:
            self.fail("collection %s holds %d points; set force: true to overwrite it with s3://%s/%s"
                      % (self.collection, points, self.p["bucket"], key))
        take_safety = info is not None and self.p["safety_snapshot"]
        steps = []
        url = "s3://%s/%s" % (self.p["bucket"], key)
        if self.p["recover_via"] == "upload":
            steps += ["download %s (%s bytes)" % (url, self.result["size"]),
                      "verify sha256 %s" % self.result["sha256"]]
        if take_safety:
            steps.append("safety snapshot of %s" % self.collection)
        steps.append("recover %s by %s" % (self.collection, "upload" if self.p["recover_via"] == "upload"
                                           else "presigned URL (Qdrant verifies sha256)"))
        steps.append("wait for green")
        if self.result["expected_points_count"] is not None:
            steps.append("check points_count == %d" % self.result["expected_points_count"])
        self.result.update(plan=steps, safety_snapshot_taken=take_safety, changed=True)
        self.result["diff"] = {"before": {"collection": self.collection, "exists": info is not None,
                                          "points_count": points},
                               "after": {"collection": self.collection, "exists": True,
                                         "points_count": self.result["expected_points_count"], "restored_from": url}}
        return take_safety

    # -- actions
    def download(self, key, sha, path):
        """Stream the backup into the staged file `path` and verify it against the metadata."""
        with open(path, "wb") as out:
            size, got = s3.download_to_file(self.s3, self.p["bucket"], key, out)
        if got != sha or size != self.result["size"]:
            self.fail("checksum mismatch for s3://%s/%s: downloaded %d bytes with sha256 %s, metadata says %s bytes "
                      "with sha256 %s; nothing was restored"
                      % (self.p["bucket"], key, size, got, self.result["size"], sha))

    def recover(self, key, sha, staged):
        timeout = self.p["wait_timeout"]
        if staged is not None:
            recover_by_upload(self.qdrant, self.collection, staged, sha, key.rsplit("/", 1)[-1],
                              self.p["priority"], timeout=timeout)
        else:
            url = s3.presigned_get_url(self.s3, self.p["bucket"], key, self.p["url_expiry"])
            try:
                recover_from_url(self.qdrant, self.collection, url, sha, self.p["priority"], timeout=timeout)
            except HttpError as e:  # Qdrant may quote the URL: keep its signature out of the result
                e.msg, e.body_excerpt = redact_signature(e.msg), redact_signature(e.body_excerpt)
                raise

    def run(self):
        started = time.monotonic()
        key, sha = self.find_backup()
        info = get_collection(self.qdrant, self.collection)
        take_safety = self.plan(key, info)
        if self.module.check_mode:
            return
        if self.p["recover_via"] == "upload":
            directory = self.p["tmp_dir"] or self.module.tmpdir
            if not os.path.isdir(directory):
                self.fail("tmp_dir %s does not exist" % directory)
            with staged_file(directory, ".qdrant-restore-", ".snapshot") as staged:
                self.timed("download", self.download, key, sha, staged)
                self.apply(key, sha, take_safety, staged)
        else:
            self.apply(key, sha, take_safety, None)
        self.durations["total"] = round(time.monotonic() - started, 3)
        self.result["durations"] = self.durations
        self.verify_points(key)

    def apply(self, key, sha, take_safety, staged):
        """Safety snapshot, recovery (from `staged`, or from a presigned URL when None), wait for green."""
        if take_safety:
            snap = self.timed("safety_snapshot", create_snapshot, self.qdrant, self.collection,
                              timeout=self.p["wait_timeout"])
            self.result["safety_snapshot"] = snap["name"]
        self.timed("recover", self.recover, key, sha, staged)
        self.timed("wait", wait_green, self.qdrant, self.collection, self.p["wait_timeout"])

    def verify_points(self, key):
        self.result["points_count"] = count_points(self.qdrant, self.collection)
        expected = self.result["expected_points_count"]
        if expected is None:
            self.module.warn("s3://%s/%s has no points-count metadata; point count not verified"
                             % (self.p["bucket"], key))
        elif self.result["points_count"] != expected:
            self.fail("restored collection %s has %s points, the backup's metadata says %s"
                      % (self.collection, self.result["points_count"], expected))


def main():
    module = AegisModule(argument_spec(), services=("qdrant", "s3"), supports_check_mode=True,
                         mutually_exclusive=[("key", "backup_date"), ("key", "source_collection")])
    module.require_boto3()
    if module.params["backup_date"]:
        try:
            backup.validate_backup_date(module.params["backup_date"])
        except ValueError as e:
            module.fail(str(e))
    job = Restore(module)
    what = "during the restore of %s failed" % job.collection
    with module.reporting(http="Qdrant request " + what, s3="S3 request " + what, durations=job.durations):
        try:
            job.run()
        except QdrantWaitTimeout as e:
            job.fail("restore of %s: %s" % (job.collection, e.msg), durations=job.durations)
    module.exit()


if __name__ == "__main__":
    main()
