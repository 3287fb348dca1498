# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Staging of downloads, for every module that writes one: a fresh file in a chosen directory that
never outlives its `with` block, so a failed or interrupted download leaves nothing behind."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import tempfile


class StagingError(Exception):
    pass


def remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


@contextlib.contextmanager
def staged_file(directory, prefix, suffix=""):
    """Yield the path of a new empty file in `directory`. The file is removed when the block ends,
    success or failure; move it into place (os.replace, atomic_move) inside the block to keep it."""
    if not os.path.isdir(directory):
        raise StagingError("cannot stage a download in %s: no such directory" % directory)
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield path
    finally:
        remove_quietly(path)
