"""Pure decisions of the snapshot/restore modules: durations, prune selection, S3 key layout,
choosing the backup to restore, and the streaming S3 helpers."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest

from ansible_collections.aegis.rag.plugins.module_utils import backup, s3

UTC = dt.timezone.utc
NOW = dt.datetime(2025, 2, 1, 12, 0, 0, tzinfo=UTC)


def snap(name, days_old, hours=0):
    created = NOW - dt.timedelta(days=days_old, hours=hours)
    return {"name": name, "creation_time": created.strftime("%Y-%m-%dT%H:%M:%S"), "size": 1, "checksum": "x"}


@pytest.mark.parametrize("text,seconds", [("7d", 7 * 86400), ("36h", 36 * 3600), ("90m", 5400), ("30s", 30),
                                          ("2w", 14 * 86400), ("1d12h", 36 * 3600), (" 3 d ", 3 * 86400)])
def test_parse_duration(text, seconds):
    assert backup.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "7y", "7d junk", "-1d", "0d", "1.5d"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="duration"):
        backup.parse_duration(text)


def test_parse_time_variants():
    assert backup.parse_time("2025-01-31T02:00:00") == dt.datetime(2025, 1, 31, 2, tzinfo=UTC)
    assert backup.parse_time("2025-01-31T02:00:00.123456") == dt.datetime(2025, 1, 31, 2, tzinfo=UTC)
    assert backup.parse_time("2025-01-31T03:00:00+01:00") == dt.datetime(2025, 1, 31, 2, tzinfo=UTC)
    assert backup.parse_time("2025-01-31T02:00:00Z") == dt.datetime(2025, 1, 31, 2, tzinfo=UTC)
    assert backup.parse_time(None) is None
    assert backup.parse_time("yesterday") is None


def test_prune_keep_last_only_deletes_all_but_newest_n_oldest_first():
    snaps = [snap("b", 2), snap("a", 10), snap("d", 0), snap("c", 5)]
    assert backup.select_for_prune(snaps, keep_last=2, now=NOW) == ["a", "c"]
    assert backup.select_for_prune(snaps, keep_last=0, now=NOW) == ["a", "c", "b", "d"]
    assert backup.select_for_prune(snaps, keep_last=10, now=NOW) == []


def test_prune_max_age_only():
    snaps = [snap("new", 1), snap("edge", 7, hours=-1), snap("old", 8), snap("older", 30)]
    assert backup.select_for_prune(snaps, max_age=7 * 86400, now=NOW) == ["older", "old"]


def test_prune_both_rules_keep_what_either_keeps():
    # keep the 2 newest OR anything younger than 7 days
    snaps = [snap("s1", 1), snap("s2", 3), snap("s3", 6), snap("s4", 9), snap("s5", 20)]
    assert backup.select_for_prune(snaps, keep_last=2, max_age=7 * 86400, now=NOW) == ["s5", "s4"]
    # everything is old: only keep_last protects
    old = [snap("o1", 30), snap("o2", 40), snap("o3", 50)]
    assert backup.select_for_prune(old, keep_last=1, max_age=7 * 86400, now=NOW) == ["o3", "o2"]


def test_prune_nothing_without_rules_and_unknown_times_never_age_out():
    snaps = [snap("a", 100), {"name": "mystery", "creation_time": None}]
    assert backup.select_for_prune(snaps, now=NOW) == []
    assert backup.select_for_prune(snaps, max_age=86400, now=NOW) == ["a"]
    # by count, an unknown time sorts as the oldest
    assert backup.select_for_prune(snaps, keep_last=1, now=NOW) == ["mystery"]


@pytest.mark.parametrize("prefix,expected", [
    ("qdrant", "qdrant/docs/20250131/docs-1-2025-01-31-02-00-00.snapshot"),
    ("/backups/qdrant/", "backups/qdrant/docs/20250131/docs-1-2025-01-31-02-00-00.snapshot"),
    ("", "docs/20250131/docs-1-2025-01-31-02-00-00.snapshot"),
    (None, "docs/20250131/docs-1-2025-01-31-02-00-00.snapshot"),
])
def test_backup_key_layout(prefix, expected):
    assert backup.backup_key(prefix, "docs", "20250131", "docs-1-2025-01-31-02-00-00.snapshot") == expected


def test_snapshot_date_is_creation_day_utc_or_today():
    assert backup.snapshot_date({"creation_time": "2025-01-31T23:59:59"}) == "20250131"
    assert backup.snapshot_date({"creation_time": "2025-02-01T00:30:00+02:00"}) == "20250131"
    assert backup.snapshot_date({}, today=NOW) == "20250201"


@pytest.mark.parametrize("value", ["20250131", "20240229"])
def test_backup_date_accepts_calendar_days(value):
    assert backup.validate_backup_date(value) == value


@pytest.mark.parametrize("value", ["2025-01-31", "2025013", "20250230", "20251301", "abcdefgh"])
def test_backup_date_rejects(value):
    with pytest.raises(ValueError, match="backup_date"):
        backup.validate_backup_date(value)


def obj(key, minutes=0):
    return {"Key": key, "Size": 1, "LastModified": NOW + dt.timedelta(minutes=minutes)}


def test_choose_backup_newest_day_then_newest_upload():
    objects = [
        obj("qdrant/docs/20250130/docs-a.snapshot", 50),
        obj("qdrant/docs/20250131/docs-b.snapshot", 1),
        obj("qdrant/docs/20250131/docs-c.snapshot", 5),
        obj("qdrant/docs_v2/20250202/other.snapshot", 99),    # another collection sharing a prefix
        obj("qdrant/docs/latest.snapshot", 99),                # not in the layout
        obj("qdrant/docs/2025-02-03/x.snapshot", 99),          # not a YYYYMMDD folder
        obj("qdrant/docs/20250204/nested/x.snapshot", 99),     # too deep
    ]
    assert backup.choose_backup(objects, "qdrant", "docs")["Key"] == "qdrant/docs/20250131/docs-c.snapshot"
    assert backup.choose_backup(objects, "qdrant", "docs", "20250130")["Key"] == "qdrant/docs/20250130/docs-a.snapshot"
    assert backup.choose_backup(objects, "qdrant", "docs", "20250101") is None
    assert backup.choose_backup([], "qdrant", "docs") is None


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)
    assert backup.sha256_file(path, chunk=4096) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


class FakeBody:
    def __init__(self, data):
        self.data = data
        self.reads = []
        self.closed = False

    def iter_chunks(self, size):
        for i in range(0, len(self.data), size):
            self.reads.append(size)
            yield self.data[i:i + size]

    def close(self):
        self.closed = True


class FakeS3:
    def __init__(self, data):
        self.body = FakeBody(data)

    def get_object(self, Bucket, Key):
        return {"Body": self.body}


def test_download_to_file_streams_in_chunks_and_hashes():
    data = bytes(range(256)) * 10_000
    client, out = FakeS3(data), io.BytesIO()
    written, sha = s3.download_to_file(client, "b", "k", out, chunk=65536)
    assert (written, sha) == (len(data), hashlib.sha256(data).hexdigest())
    assert out.getvalue() == data
    assert client.body.closed and set(client.body.reads) == {65536} and len(client.body.reads) == 40


def test_head_object_absent_is_none_other_errors_raise():
    from botocore.exceptions import ClientError

    class Client:
        def __init__(self, code):
            self.code = code

        def head_object(self, Bucket, Key):
            raise ClientError({"Error": {"Code": self.code, "Message": "m"}}, "HeadObject")

    assert s3.head_object(Client("404"), "b", "k") is None
    with pytest.raises(ClientError):
        s3.head_object(Client("403"), "b", "k")


def test_backup_metadata_round_trip():
    meta = backup.backup_metadata("ab" * 32, 12840, "docs", "docs-1.snapshot")
    assert meta == {"sha256": "ab" * 32, "points-count": "12840", "collection": "docs", "snapshot": "docs-1.snapshot"}
    head = {"Metadata": meta}
    assert backup.metadata_sha256(head) == "ab" * 32 and backup.metadata_points(head) == 12840
    assert backup.metadata_sha256(None) is None and backup.metadata_points({"Metadata": {}}) is None
    assert backup.metadata_points({"Metadata": {"points-count": "many"}}) is None


def listing_entry(key, day_hour):
    return {"Key": key, "Size": 10, "LastModified": dt.datetime(2025, 2, 1, day_hour, tzinfo=UTC)}


def test_backup_entries_keep_only_the_layout_newest_first():
    objects = [listing_entry("qdrant/h1/docs/20250130/a.snapshot", 1),
               listing_entry("qdrant/h1/docs/20250131/b.snapshot", 2),
               listing_entry("qdrant/h1/docs/20250131/c.snapshot", 3),
               listing_entry("qdrant/h1/docs/notes.txt", 4),
               listing_entry("qdrant/h1/docs2/20250131/d.snapshot", 5)]
    entries = backup.backup_entries(objects, "qdrant/h1", "docs")
    assert [e["key"].rsplit("/", 1)[-1] for e in entries] == ["c.snapshot", "b.snapshot", "a.snapshot"]
    assert entries[0] == {"key": "qdrant/h1/docs/20250131/c.snapshot", "date": "20250131", "size": 10,
                          "last_modified": "2025-02-01T03:00:00+00:00"}


def test_backup_age_counts_from_the_end_of_the_day():
    assert backup.backup_age_seconds("20250201", now=NOW) == 0
    assert backup.backup_age_seconds("20250131", now=NOW) == 12 * 3600
    assert backup.backup_age_seconds("20250125", now=NOW) == 6 * 86400 + 12 * 3600


def test_select_backups_for_prune_either_rule_keeps():
    entries = [{"key": k, "date": d} for k, d in
               (("k5", "20250201"), ("k4", "20250130"), ("k3", "20250125"), ("k2", "20250101"), ("k1", "20241201"))]
    week = 7 * 86400
    assert backup.select_backups_for_prune(entries, keep_last=2, now=NOW) == ["k1", "k2", "k3"]
    assert backup.select_backups_for_prune(entries, max_age=week, now=NOW) == ["k1", "k2"]
    assert backup.select_backups_for_prune(entries, keep_last=4, max_age=week, now=NOW) == ["k1"]
    assert backup.select_backups_for_prune(entries, now=NOW) == []
