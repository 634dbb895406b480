# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a planner needs to know about a host, and its cordon mark."""

from __future__ import annotations

import json
import os
import time
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils._files import write_json_atomic

# Beside the checkpoints, which are host-local state that survives reboots (unlike /run) and, on the
# lab, is private to each host (unlike /etc). Checkpoint IDs cannot start with a dot.
CORDON_MARK = ".cordoned"


def meminfo() -> dict[str, int]:
    values = {}
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            key, rest = line.split(":", 1)
            values[key] = int(rest.split()[0]) * 1024
    return {"total_bytes": values["MemTotal"], "available_bytes": values["MemAvailable"]}


def disk_free(path: str) -> int | None:
    """Free bytes where ``path`` (or its nearest existing parent) lives."""
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    if not path:
        return None
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def cpu_group() -> str | None:
    """Hosts that share it can take each other's processes: a digest of the CPU as CRIU sees it (its
    cpuinfo image, what its restore checks), or None where CRIU cannot say. Not /proc/cpuinfo: its
    flags change with the kernel on the same CPU (6.12 lists xtopology, 6.1 does not)."""
    # pylint: disable-next=import-outside-toplevel  # _criu imports this module
    from ansible_collections.ferry.migrate.plugins.module_utils import _criu
    binary = _criu.find_binary()
    if binary is None:
        return None
    try:
        return _criu.Criu(binary).cpuinfo_digest()[:16]
    except Exception:  # pylint: disable=broad-exception-caught  # no CRIU that works: no group
        return None


def cordon(images_dir: str) -> dict[str, t.Any] | None:
    """The cordon mark ({"reason", "since"}) or None."""
    try:
        with open(os.path.join(images_dir, CORDON_MARK), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError:
        return {"reason": "unreadable mark", "since": None}


def set_cordon(images_dir: str, reason: str | None) -> None:
    """Write the mark (reason given) or remove it (None)."""
    path = os.path.join(images_dir, CORDON_MARK)
    if reason is None:
        if os.path.exists(path):
            os.unlink(path)
        return
    os.makedirs(images_dir, mode=0o700, exist_ok=True)
    write_json_atomic(path, {"reason": reason, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def facts(images_dir: str) -> dict[str, t.Any]:
    memory = meminfo()
    mark = cordon(images_dir)
    return {
        "memory_total_bytes": memory["total_bytes"],
        "memory_available_bytes": memory["available_bytes"],
        "cpus": os.cpu_count() or 1,
        "load1": os.getloadavg()[0],
        "cpu_group": cpu_group(),
        "cordoned": mark is not None,
        "cordon": mark,
        "images_dir_free_bytes": disk_free(images_dir),
    }


def run_cordon(module: t.Any) -> None:
    """Module ferry.migrate.cordon: mark the host (or unmark it) so that no migration targets it."""
    images_dir, wanted = module.params["images_dir"], module.params["state"] == "present"
    mark = before = cordon(images_dir)
    changed = (mark is not None) != wanted
    if changed and not module.check_mode:
        set_cordon(images_dir, module.params["reason"] if wanted else None)
        mark = cordon(images_dir)
    result = dict(changed=changed, cordon=mark)
    if module._diff:
        after = mark if not module.check_mode else ({"reason": module.params["reason"]} if wanted else None)
        result["diff"] = dict(before="%s\n" % (json.dumps(before, sort_keys=True) if before else "not cordoned"),
                              after="%s\n" % (json.dumps(after, sort_keys=True) if after else "not cordoned"),
                              before_header=images_dir + "/.cordoned", after_header=images_dir + "/.cordoned")
    module.exit_json(**result)
