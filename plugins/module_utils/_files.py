# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way Ferry replaces a file: whole or not at all, never through a link, with its mode set
before anyone can read it."""

from __future__ import annotations

import json
import os
import tempfile
import typing as t


def write_atomic(path: str, data: bytes | str, mode: int = 0o600, check: t.Callable[[str], None] | None = None) -> None:
    """Replace ``path`` with ``data``: a private temporary file in the same directory (its name starts
    with a dot, which sudo's includedir and most readers skip), flushed to disk, checked by ``check``
    (which raises to refuse it), then renamed over ``path``, and the directory synced. A crash at any
    moment leaves the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        if check:
            check(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomic(path: str, data: t.Any, mode: int = 0o600) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n", mode)
