# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""S3 helpers for the backup modules. boto3 is needed only here, and only by the S3 modules
(AegisModule.s3_client checks that it is there).

Everything streams: downloads are read in chunks and hashed on the fly, uploads go through boto3's
managed transfer from a file on disk, so memory stays flat whatever the object size.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import traceback

try:
    import boto3
    from boto3.exceptions import Boto3Error  # pylint: disable=unused-import  # caught by base.AegisModule
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError  # pylint: disable=unused-import  # as Boto3Error

    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError:
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = traceback.format_exc()

    class BotoCoreError(Exception):  # placeholders so `except` clauses still parse without boto3
        pass

    class ClientError(Exception):
        pass

    class Boto3Error(Exception):
        pass


CHUNK = 1 << 20


def build_client(params):
    """A boto3 S3 client from the `aegis.rag.s3` options (boto3 must be importable)."""
    kwargs = {
        "endpoint_url": params.get("s3_endpoint_url") or None,
        "region_name": params.get("region") or None,
        "aws_access_key_id": params.get("access_key") or None,
        "aws_secret_access_key": params.get("secret_key") or None,
        "aws_session_token": params.get("session_token") or None,
        "verify": params.get("validate_certs", True),
        # path-style addressing works with AWS, MinIO, Ceph and moto alike
        "config": Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
    }
    return boto3.session.Session().client("s3", **kwargs)


def error_code(err):
    """The S3 error code of a ClientError ('404', 'NoSuchKey', ...), or None."""
    return getattr(err, "response", {}).get("Error", {}).get("Code")


def head_object(client, bucket, key):
    """The object's HEAD (ContentLength, Metadata, ...) or None when it does not exist."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if error_code(e) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def list_objects(client, bucket, prefix):
    """Every object under `prefix`: dicts with Key, Size, LastModified (paginated, no bodies)."""
    out = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        out.extend(page.get("Contents", []))
    return out


def delete_object(client, bucket, key):
    """Delete one object (S3 answers success for a key that is already gone)."""
    client.delete_object(Bucket=bucket, Key=key)


def download_to_file(client, bucket, key, fileobj, chunk=CHUNK):
    """Stream an object into an open binary file; returns (bytes written, sha256 hex)."""
    digest = hashlib.sha256()
    written = 0
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        for block in body.iter_chunks(chunk):
            fileobj.write(block)
            digest.update(block)
            written += len(block)
    finally:
        body.close()
    return written, digest.hexdigest()


def upload_file(client, path, bucket, key, metadata):
    """Upload a file from disk (multipart above 16 MiB, two parts in flight at most)."""
    config = TransferConfig(multipart_chunksize=16 * CHUNK, multipart_threshold=16 * CHUNK, max_concurrency=2)
    client.upload_file(path, bucket, key, ExtraArgs={"Metadata": metadata}, Config=config)


def presigned_get_url(client, bucket, key, expires):
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)


def describe_error(err):
    """A short, credential-free description of a boto error for `msg`."""
    if isinstance(err, ClientError):
        e = err.response.get("Error", {})
        return "%s: %s" % (e.get("Code", "error"), e.get("Message", "") or str(err))
    return str(err)
