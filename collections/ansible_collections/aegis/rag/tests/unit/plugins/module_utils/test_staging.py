"""Download staging: the staged file never outlives its block, unless it was moved into place."""

from __future__ import annotations

import os

import pytest
from ansible_collections.aegis.rag.plugins.module_utils.staging import StagingError, staged_file


def test_staged_file_is_removed_on_success_and_on_failure(tmp_path):
    with staged_file(str(tmp_path), ".part-") as path:
        assert os.path.dirname(path) == str(tmp_path) and os.path.basename(path).startswith(".part-")
        assert os.path.getsize(path) == 0
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError):
        with staged_file(str(tmp_path), ".part-") as path:
            with open(path, "wb") as out:
                out.write(b"half")
            raise RuntimeError("download broke off")
    assert os.listdir(tmp_path) == []


def test_a_staged_file_moved_into_place_is_kept(tmp_path):
    dest = tmp_path / "final.snapshot"
    with staged_file(str(tmp_path), ".part-", ".snapshot") as path:
        with open(path, "wb") as out:
            out.write(b"data")
        os.replace(path, dest)
    assert os.listdir(tmp_path) == ["final.snapshot"] and dest.read_bytes() == b"data"


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(StagingError, match="cannot stage a download in .*nope: no such directory"):
        with staged_file(str(tmp_path / "nope"), ".part-"):
            pass
