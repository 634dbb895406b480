# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration record: one function builds it for every outcome, from what the run knows.

Every record has the same keys; what an outcome does not know is None. Outcomes:
``migrated``, ``already_migrated`` (found done), ``rolled_back``, ``stranded`` (the rollback could
not resume the source), ``refused`` (the preflight said no; nothing was frozen or written).
"""

from __future__ import annotations

import typing as t

OUTCOMES = ("migrated", "already_migrated", "rolled_back", "stranded", "refused")
_MOVE = ("id", "container", "engine", "source", "target")


class RecordError(ValueError):
    pass


def _seconds(later: t.Any, earlier: t.Any) -> float | None:
    if later is None or earlier is None:
        return None
    return round(float(later) - float(earlier), 3)


def record(facts: dict[str, t.Any]) -> dict[str, t.Any]:
    """``facts``: outcome, the move (id, container, engine, source, target), started_at, ended_at,
    error, and what the phases returned: method, route, checkpoint, moved (the transfer's result, or the
    checkpoint's ``sent``), restore, marks, image_carried, frozen, failed_phase, found, recovered."""
    outcome = facts.get("outcome")
    if outcome not in OUTCOMES:
        raise RecordError("outcome %r is not one of %s" % (outcome, ", ".join(OUTCOMES)))
    missing = [key for key in _MOVE if not facts.get(key)]
    if missing and outcome != "refused":  # a refusal may be of a migration named wrong
        raise RecordError("the record needs %s" % ", ".join(missing))
    method = facts.get("method") or {}
    checkpoint = facts.get("checkpoint") or {}
    manifest = checkpoint.get("manifest") or {}
    moved = facts.get("moved") or {}
    restore = facts.get("restore") or {}
    marks = facts.get("marks") or {}
    started, ended = facts.get("started_at", marks.get("start")), facts.get("ended_at")
    post_copy = method.get("method") == "post_copy"
    link = (checkpoint.get("page_link") if post_copy else manifest.get("page_link")) or {}
    link_bytes = int(link.get("bytes_out") or 0)
    pre_copy = manifest.get("pre_copy") or {}
    iterations = pre_copy.get("iterations") or []
    final_bytes = int(checkpoint.get("bytes") or 0) - sum(int(each.get("bytes") or 0) for each in iterations)
    migrated = outcome == "migrated"
    seconds = moved.get("seconds")
    result = {key: facts.get(key) for key in _MOVE}
    result.update({
        "outcome": outcome,
        "error": facts.get("error") or None,
        "started_at": float(started) if started is not None else None,
        "ended_at": float(ended) if ended is not None else None,
        "method": method.get("method"),
        "method_reason": method.get("reason"),
        "methods_rejected": method.get("rejected") or [],
        "route": facts.get("route"),
        # Whether the container was ever frozen: a refusal or a failure before the checkpoint leaves it running.
        "frozen": True if migrated else bool(facts.get("frozen")),
        "failed_phase": facts.get("failed_phase"),
        "found": facts.get("found"),
        "recovered": bool(facts.get("recovered")),
        "downtime_seconds": _seconds(restore.get("running_at"), manifest.get("frozen_at")) if migrated else None,
        "total_seconds": _seconds(ended, started),
        # The bundle, plus the pages that went over the page link instead.
        "bytes": int(checkpoint.get("bytes") or 0) + link_bytes if migrated else 0,
        "page_link_bytes": link_bytes,
        "page_link_reconnects": int(link.get("reconnects") or 0),
        "page_transport": link.get("transport"),
        "split_window_seconds": _seconds(checkpoint.get("pages_done_at"), restore.get("running_at")) if migrated and post_copy else None,
        "throughput_mib_s": round(final_bytes / 1048576.0 / float(seconds), 1) if migrated and seconds else None,
        "pre_copy_iterations": iterations if migrated else [],
        "pre_copy_stop": pre_copy.get("stop") if migrated else None,
        "data_path": moved.get("data_path"),
        "image_carried": bool(facts.get("image_carried")),
        "files_shared": bool((manifest.get("options") or {}).get("files_shared")),
        "criu_stats": manifest.get("stats"),
        "phases": [],
    })
    if migrated:
        # Pre-copy's iterations (or the files sent ahead) run between the preflight and the freeze.
        ahead = "files_ahead" if pre_copy.get("stop") == "files_ahead" else "pre_copy"
        pre_copied = [{"name": ahead, "seconds": round(sum(each["dump_seconds"] + each["send_seconds"] for each in iterations), 3)}]
        result["phases"] = [
            {"name": "preflight", "seconds": _seconds(marks.get("preflight"), started)},
        ] + (pre_copied if iterations else []) + [
            {"name": "checkpoint", "seconds": checkpoint.get("seconds", 0)},
            {"name": "transfer", "seconds": seconds},
            {"name": "restore", "seconds": restore.get("seconds")},
            {"name": "verify_finalise", "seconds": _seconds(ended, marks.get("restored"))},
        ]
    return result
