# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure decisions shared by the snapshot and restore modules: S3 key layout and object metadata,
choosing a backup, choosing snapshots to prune, durations. No I/O here except hashing a local file."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import re

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"(\d+)\s*([smhdw])")
_DATE_RE = re.compile(r"^\d{8}$")

# Metadata keys of every backup object (S3 lower-cases user metadata keys): written by
# qdrant_snapshot (state=s3_upload), read back and checked by qdrant_restore.
META_SHA256 = "sha256"
META_POINTS = "points-count"
META_COLLECTION = "collection"
META_SNAPSHOT = "snapshot"


def parse_duration(text):
    """'7d', '12h', '1w2d', '90m', '30s' -> seconds (int). Raises ValueError on anything else."""
    s = str(text).strip().lower().replace(" ", "")
    if not s or _DURATION_RE.sub("", s):
        raise ValueError("invalid duration %r: use a number and a unit among s, m, h, d, w (e.g. 7d, 12h)" % text)
    total = sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_RE.findall(s))
    if total <= 0:
        raise ValueError("invalid duration %r: must be greater than zero" % text)
    return total


def parse_time(value):
    """A Qdrant `creation_time` ('2025-01-31T02:00:00', maybe with fraction or offset) -> aware UTC
    datetime, or None when missing or unreadable. Qdrant writes UTC without an offset."""
    if not value:
        return None
    text = str(value).strip().replace("Z", "+00:00")
    m = re.match(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$", text)
    if not m:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(m.group(1).replace(" ", "T") + (m.group(3) or ""))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.astimezone(datetime.timezone.utc)


def _age_key(snapshot):
    t = parse_time(snapshot.get("creation_time"))
    # unknown times sort as oldest; the name breaks ties (Qdrant names end in a timestamp)
    return (t or datetime.datetime.min.replace(tzinfo=datetime.timezone.utc), snapshot.get("name", ""))


def newest_first(snapshots):
    return sorted(snapshots, key=_age_key, reverse=True)


def select_for_prune(snapshots, keep_last=None, max_age=None, now=None):
    """Names of the snapshots to delete, oldest first.

    A snapshot is kept when it is among the `keep_last` newest OR younger than `max_age` seconds;
    with only one of the two given, only that rule applies. With neither, nothing is deleted.
    A snapshot without a readable creation time is never deleted for age (only by keep_last)."""
    if keep_last is None and max_age is None:
        return []
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ordered = newest_first(snapshots)
    doomed = []
    for rank, snap in enumerate(ordered):
        kept_by_count = keep_last is not None and rank < keep_last
        created = parse_time(snap.get("creation_time"))
        if max_age is None:
            kept_by_age = False
        else:
            kept_by_age = created is None or (now - created).total_seconds() < max_age
        if keep_last is None:
            keep = kept_by_age
        elif max_age is None:
            keep = kept_by_count
        else:
            keep = kept_by_count or kept_by_age
        if not keep:
            doomed.append(snap["name"])
    return list(reversed(doomed))


def validate_backup_date(value):
    """'YYYYMMDD' that is a real calendar date, else ValueError."""
    if not _DATE_RE.match(str(value)):
        raise ValueError("backup_date must be YYYYMMDD, got %r" % value)
    try:
        datetime.datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise ValueError("backup_date %r is not a calendar date" % value) from None
    return value


def snapshot_date(snapshot, today=None):
    """The YYYYMMDD (UTC) a snapshot was created, used in its S3 key; today when unknown."""
    created = parse_time(snapshot.get("creation_time"))
    day = created or today or datetime.datetime.now(datetime.timezone.utc)
    return day.strftime("%Y%m%d")


def collection_prefix(prefix, collection):
    """'<prefix>/<collection>/' with no leading or doubled slash."""
    parts = [p for p in (prefix or "").strip("/").split("/") if p] + [collection]
    return "/".join(parts) + "/"


def backup_key(prefix, collection, date, snapshot_name):
    """`<prefix>/<collection>/<YYYYMMDD>/<snapshot name>`."""
    return "%s%s/%s" % (collection_prefix(prefix, collection), date, snapshot_name)


def choose_backup(objects, prefix, collection, date=None):
    """The backup object to restore among S3 listing entries (dicts with Key, LastModified):
    only keys laid out as `<prefix>/<collection>/<YYYYMMDD>/<name>` count; with `date`, only that day;
    the newest is the latest day, then the latest LastModified, then the greatest name."""
    base = collection_prefix(prefix, collection)
    candidates = []
    for obj in objects:
        key = obj.get("Key", "")
        if not key.startswith(base):
            continue
        rest = key[len(base):].split("/")
        if len(rest) != 2 or not _DATE_RE.match(rest[0]) or not rest[1]:
            continue
        if date is not None and rest[0] != date:
            continue
        modified = obj.get("LastModified")
        stamp = modified.timestamp() if hasattr(modified, "timestamp") else 0
        candidates.append(((rest[0], stamp, rest[1]), obj))
    if not candidates:
        return None
    return max(candidates, key=lambda c: c[0])[1]


def sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def backup_metadata(sha256, points, collection, snapshot_name):
    """The user metadata stored with a backup object."""
    return {META_SHA256: sha256, META_POINTS: str(points), META_COLLECTION: collection,
            META_SNAPSHOT: snapshot_name}


def metadata_sha256(head):
    """The sha256 recorded on a backup object (its HEAD), or None."""
    return (head or {}).get("Metadata", {}).get(META_SHA256)


def metadata_points(head):
    """The point count recorded on a backup object (its HEAD), or None when missing or unreadable."""
    value = (head or {}).get("Metadata", {}).get(META_POINTS)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def backup_entries(objects, prefix, collection):
    """The backups of `collection` among S3 listing entries (dicts with Key, Size, LastModified), newest
    first as `choose_backup` orders them: dicts with key, date (YYYYMMDD), size and last_modified (ISO, UTC).
    Keys not laid out as `<prefix>/<collection>/<YYYYMMDD>/<name>` are ignored."""
    base = collection_prefix(prefix, collection)
    ranked = []
    for obj in objects:
        key = obj.get("Key", "")
        rest = key[len(base):].split("/") if key.startswith(base) else []
        if len(rest) != 2 or not _DATE_RE.match(rest[0]) or not rest[1]:
            continue
        modified = obj.get("LastModified")
        stamp = modified.timestamp() if hasattr(modified, "timestamp") else 0
        entry = {"key": key, "date": rest[0], "size": obj.get("Size"),
                 "last_modified": modified.astimezone(datetime.timezone.utc).isoformat()
                 if hasattr(modified, "astimezone") else None}
        ranked.append(((rest[0], stamp, rest[1]), entry))
    return [entry for _rank, entry in sorted(ranked, key=lambda r: r[0], reverse=True)]


def backup_age_seconds(date, now=None):
    """Age of a backup dated `date` (YYYYMMDD), counted from the end of that day (UTC): a backup of
    today is 0 seconds old, so `max_age: 7d` keeps seven whole days of backups."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    day_end = datetime.datetime.strptime(date, "%Y%m%d").replace(tzinfo=datetime.timezone.utc) \
        + datetime.timedelta(days=1)
    return max(0, int((now - day_end).total_seconds()))


def select_backups_for_prune(entries, keep_last=None, max_age=None, now=None):
    """Keys of the backups to delete among `entries` (as `backup_entries` returns them, newest first),
    oldest first. A backup is kept when it is among the `keep_last` newest OR younger than `max_age`
    seconds (see `backup_age_seconds`); with one rule only that rule applies, with neither nothing goes."""
    if keep_last is None and max_age is None:
        return []
    doomed = []
    for rank, entry in enumerate(entries):
        kept_by_count = keep_last is not None and rank < keep_last
        kept_by_age = max_age is not None and backup_age_seconds(entry["date"], now) < max_age
        if not (kept_by_count or kept_by_age):
            doomed.append(entry["key"])
    return list(reversed(doomed))
