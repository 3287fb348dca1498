"""S3 contract: boto3 against moto's server, or a real endpoint when AEGIS_TEST_S3_ENDPOINT (+ AWS_*) is set.
These are the calls the backup and restore modules make: put with metadata, list by prefix, head, streamed
get, multipart upload, presigned GET, delete."""

from __future__ import annotations

import hashlib
import os

import botocore.exceptions
import httpx
import pytest
from boto3.s3.transfer import TransferConfig


def test_put_head_list_get_delete_with_metadata(s3, s3_bucket):
    c = s3.client()
    body = b"snapshot bytes " * 1000
    digest = hashlib.sha256(body).hexdigest()
    for day in ("20240101", "20240102"):
        c.put_object(Bucket=s3_bucket, Key=f"qdrant/aegis_docs_v2/{day}/s.snapshot", Body=body,
                     Metadata={"sha256": digest, "points-count": "42"})
    listed = c.list_objects_v2(Bucket=s3_bucket, Prefix="qdrant/aegis_docs_v2/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "qdrant/aegis_docs_v2/20240101/s.snapshot", "qdrant/aegis_docs_v2/20240102/s.snapshot"]
    head = c.head_object(Bucket=s3_bucket, Key="qdrant/aegis_docs_v2/20240102/s.snapshot")
    assert head["Metadata"] == {"sha256": digest, "points-count": "42"} and head["ContentLength"] == len(body)
    streamed = hashlib.sha256()
    for chunk in c.get_object(Bucket=s3_bucket, Key="qdrant/aegis_docs_v2/20240102/s.snapshot")["Body"].iter_chunks(4096):
        streamed.update(chunk)
    assert streamed.hexdigest() == digest
    c.delete_object(Bucket=s3_bucket, Key="qdrant/aegis_docs_v2/20240101/s.snapshot")
    assert c.list_objects_v2(Bucket=s3_bucket, Prefix="qdrant/")["KeyCount"] == 1


def test_multipart_upload_and_presigned_get(s3, s3_bucket, tmp_path):
    c = s3.client()
    path = tmp_path / "big.snapshot"
    path.write_bytes(os.urandom(6 * 1024 * 1024))
    c.upload_file(str(path), s3_bucket, "big.snapshot",
                  Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
    parts = c.head_object(Bucket=s3_bucket, Key="big.snapshot", PartNumber=1)
    assert parts.get("PartsCount") == 2  # really a multipart upload (two 5 MiB-or-less parts)
    url = c.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "big.snapshot"}, ExpiresIn=300)
    got = httpx.get(url, timeout=60)
    assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(path.read_bytes()).digest()


def test_missing_key_is_404(s3, s3_bucket):
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.client().head_object(Bucket=s3_bucket, Key="absent")
    assert exc.value.response["Error"]["Code"] in ("404", "NoSuchKey")
