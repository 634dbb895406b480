# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration journal: one JSON file on the controller, one entry per checkpoint ID.

Several migrations of one wave write to it at once, so every update holds an exclusive lock and
replaces the file atomically: a controller killed at any moment leaves the previous or the next
version, never a torn one.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import typing as t

# A migration is in flight from "migrating" until it ends in one of the final statuses.
STATUSES = ("planned", "migrating", "migrated", "rolled_back", "stranded")
IN_FLIGHT = ("migrating",)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read(path: str) -> dict[str, t.Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {"entries": {}}
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise ValueError("%s is not a Ferry journal" % path)
    return data


def update(path: str, key: str, status: str, fields: dict[str, t.Any], check_mode: bool = False) -> tuple[bool, dict[str, t.Any]]:
    """Set entry ``key`` to ``status`` with ``fields``; returns (changed, journal)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        journal = read(path)
        entry = journal["entries"].get(key, {})
        wanted = dict(entry, **fields)
        wanted["status"] = status
        changed = {k: v for k, v in entry.items() if k not in ("history", "updated")} != \
            {k: v for k, v in wanted.items() if k not in ("history", "updated")}
        if changed:
            wanted["updated"] = _now()
            wanted["history"] = entry.get("history", []) + [{"status": status, "at": wanted["updated"]}]
            journal["entries"][key] = wanted
            if not check_mode:
                with open(os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
                    json.dump(journal, out, indent=1, sort_keys=True)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(path + ".tmp", path)
    return changed, journal


def in_flight(journal: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    return [dict(entry, id=key) for key, entry in sorted(journal["entries"].items()) if entry.get("status") in IN_FLIGHT]
