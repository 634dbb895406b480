# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration journal and the job lock: JSON files where the job keeps its state.

That place is the controller, or a host every run of the job reaches (AWX runs each job in a fresh
container, so the controller forgets). Several migrations of one wave write at once, so every update
holds an exclusive lock and replaces the file atomically: a run killed at any moment leaves the
previous or the next version, never a torn one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle
from ansible_collections.ferry.migrate.plugins.module_utils._files import write_json_atomic

# A migration is in flight from "migrating" until it ends in one of the final statuses.
# "refused": the migration's preflight said no, before anything was frozen or written.
STATUSES = ("planned", "migrating", "migrated", "rolled_back", "stranded", "refused")
IN_FLIGHT = ("migrating",)
FINAL = ("migrated", "rolled_back", "stranded", "refused")
# A run token as lookup ferry.migrate.run_token makes it: controller, ansible-playbook PID, random part.
_TOKEN = re.compile(r"^(?P<controller>[^:\s]+):(?P<pid>[0-9]+):[0-9a-f]{16,}$")


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


def update(path: str, updates: list[dict[str, t.Any]],
           check_mode: bool = False) -> tuple[bool, dict[str, t.Any], dict[str, t.Any]]:
    """Set each of ``updates`` ({id, status, fields}) in one locked, atomic write: a wave's moves cost one.

    Returns (changed, journal, each changed entry as it was before, by ID)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        journal = read(path)
        befores = {}
        for change in updates:
            key = change["id"]
            entry = journal["entries"].get(key) or {}
            wanted = dict(entry, **(change.get("fields") or {}))
            wanted["status"] = change["status"]
            if {k: v for k, v in entry.items() if k not in ("history", "updated")} != \
                    {k: v for k, v in wanted.items() if k not in ("history", "updated")}:
                befores.setdefault(key, journal["entries"].get(key))
                wanted["updated"] = _now()
                wanted["history"] = entry.get("history", []) + [{"status": change["status"], "at": wanted["updated"]}]
                journal["entries"][key] = wanted
        if befores and not check_mode:
            write_json_atomic(path, journal)
    return bool(befores), journal, befores


def entry_text(entry: dict[str, t.Any] | None) -> str:
    """An entry as diff mode shows it."""
    return json.dumps(entry, indent=1, sort_keys=True, default=str) + "\n" if entry else "no entry\n"


def in_flight(journal: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    return [dict(entry, id=key) for key, entry in sorted(journal["entries"].items()) if entry.get("status") in IN_FLIGHT]


def of_run(journal: dict[str, t.Any], token: str) -> dict[str, t.Any]:
    """The entries run ``token`` made: all of them, the IDs that are over and those migrated, the records."""
    mine = {key: entry for key, entry in sorted(journal["entries"].items()) if entry.get("run") == token}
    return {
        "entries": mine,
        "over": [key for key, entry in mine.items() if entry.get("status") in FINAL],
        "migrated": [key for key, entry in mine.items() if entry.get("status") == "migrated"],
        "records": [entry["record"] for entry in mine.values() if "record" in entry],
    }


def _dead_here(token: str) -> bool:
    """Whether ``token`` names a run of this very machine whose ansible-playbook process is gone.

    Only the machine that ran it can tell; anywhere else the lease decides."""
    match = _TOKEN.match(token or "")
    if not match or match.group("controller") != os.uname().nodename:
        return False
    try:
        os.kill(int(match.group("pid")), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim(path: str, job: str, token: str, lease_seconds: int, release: bool = False) -> dict[str, t.Any]:
    """Hold (or release) the job's lock: one run of a job at a time, across controllers.

    The owner is the run token, which every job of a run carries (one ansible-playbook, or the jobs
    of one AWX workflow). A run may take the lock when nobody holds it, when it holds it already, when
    the holder's lease ran out, or when the holder ran on this machine and its process is gone (a
    killed run, re-run on the same controller). Each claim renews the lease. Raises ``LockError``
    naming the holder otherwise.
    """
    lock_path = path + ".owner"
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    with open(os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(lock_path, encoding="utf-8") as handle:
                holder = json.load(handle)
        except (OSError, ValueError):
            holder = None
        mine = bool(holder) and holder.get("token") == token
        if release:  # only the holder releases; anyone else's release changes nothing
            if mine:
                os.unlink(lock_path)
            return {}
        if holder and not mine and holder.get("expires", 0) > time.time() and not _dead_here(holder.get("token", "")):
            raise LockError("job %s is running: held by run %s since %s, its lease until %s. If that run is dead, wait for the "
                            "lease to end or run again with the same run token (-e fleet_run_token=%s) to take it over"
                            % (job, holder.get("token"), holder.get("since"),
                               time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(holder.get("expires", 0))), holder.get("token")))
        owner = {"token": token, "job": job, "since": holder.get("since") if mine else _now(), "expires": time.time() + lease_seconds}
        write_json_atomic(lock_path, owner)
        return owner


class LockError(Exception):
    pass


def run(module: t.Any) -> None:
    """Module ferry.migrate.journal: take or release the job lock, then record or read entries."""
    params = module.params
    for index, change in enumerate(params["updates"]):
        try:
            _bundle.check_id(change["id"])
        except _bundle.BundleError as exc:
            module.fail_json(msg="updates[%d].id: %s" % (index, exc))
    try:
        if params["lock"] and not module.check_mode:
            claim(params["path"], params["job"] or "", params["token"], params["lease"], release=params["lock"] == "release")
        befores = {}
        if params["updates"]:
            changed, journal, befores = update(params["path"], params["updates"], module.check_mode)
        else:
            changed, journal = False, read(params["path"])
    except LockError as exc:
        module.fail_json(msg="lock: %s" % exc)
    except (OSError, ValueError) as exc:
        module.fail_json(msg="path: %s" % exc)
    result = dict(changed=changed, entries=journal["entries"], in_flight=in_flight(journal))
    if params["token"] is not None:
        result["run"] = of_run(journal, params["token"])
    if module._diff and befores:
        header = "%s: %s" % (params["path"], ", ".join(befores))
        result["diff"] = dict(before="".join(entry_text(entry) for entry in befores.values()),
                              after="".join(entry_text(journal["entries"][key]) for key in befores),
                              before_header=header, after_header=header)
    module.exit_json(**result)
