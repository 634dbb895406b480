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


def playbook_pid(pid: int | None = None) -> int | None:
    """PID of the ansible-playbook (or AWX runner) process this module runs under, if on this machine."""
    pid, found = pid or os.getpid(), None
    for dummy in range(32):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
            with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        # Task workers are forks with the same command line: the topmost one is the run itself.
        if any(os.path.basename(arg).startswith(b"ansible-playbook") for arg in argv[:2]):
            found = pid
        elif found:
            break
        if parent <= 1:
            break
        pid = parent
    return found


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(path: str, job: str, lease_seconds: int, release: bool = False) -> dict[str, t.Any]:
    """Hold (or release) the job's lock: one run of a job at a time.

    The owner is the ansible-playbook process. A run may take the lock when nobody holds it, when it
    already holds it, when the holder's process is gone (a killed run, on this controller), or when
    the holder's lease ran out (a holder elsewhere that stopped renewing). Renewed on every claim.
    Raises ``LockError`` naming the holder otherwise.
    """
    owner = {"controller": os.uname().nodename, "pid": playbook_pid(), "job": job}
    lock_path = path + ".owner"
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    with open(os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(lock_path, encoding="utf-8") as handle:
                holder = json.load(handle)
        except (OSError, ValueError):
            holder = None
        mine = holder and holder.get("controller") == owner["controller"] and holder.get("pid") == owner["pid"]
        if holder and not mine:
            gone = holder.get("controller") == owner["controller"] and not _alive(holder.get("pid"))
            if not gone and holder.get("expires", 0) > time.time():
                raise LockError("job %s is running: held by ansible-playbook pid %s on %s since %s, lease until %s"
                                % (job, holder.get("pid"), holder.get("controller"), holder.get("since"),
                                   time.strftime("%H:%M:%SZ", time.gmtime(holder.get("expires", 0)))))
        if release:
            if mine and os.path.exists(lock_path):
                os.unlink(lock_path)
            return {}
        owner.update(since=holder.get("since") if mine else _now(), expires=time.time() + lease_seconds)
        with open(os.open(lock_path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
            json.dump(owner, out)
        os.replace(lock_path + ".tmp", lock_path)
        return owner


class LockError(Exception):
    pass
