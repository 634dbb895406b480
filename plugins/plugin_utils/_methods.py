# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which way a migration moves memory: pure logic on the controller, from the hosts' CRIU facts."""

from __future__ import annotations

import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _engines

# Best first: lowest downtime. Pre-copy's final dump carries only what changed during its last
# iteration, where a stream carries all memory while the container is frozen.
METHODS = ("post_copy", "pre_copy", "stream", "stop_and_copy")
REQUESTS = ("auto",) + METHODS
PAGE_LINK = ("post_copy", "stream")
TRANSPORTS = ("auto", "tls", "ssh")


class MethodError(Exception):
    pass


def _why_not(method: str, engine: str, source: dict[str, t.Any], target: dict[str, t.Any], route: str) -> str | None:
    """Why ``method`` cannot move this container between these hosts; None when it can."""
    offered = _engines.capabilities(engine)["methods"]
    if method not in offered:
        return "engine %s offers %s only" % (engine, ", ".join(offered))
    if method == "stop_and_copy":
        return None
    if method == "pre_copy":
        if not (source.get("features") or {}).get("mem_dirty_track"):
            return "the source's kernel does not track dirty memory (no soft-dirty)"
        if route != "direct":
            return "its iterations go straight to the target while the container runs (route %s)" % route
        return None
    if route != "direct":
        return "the page link needs the hosts to reach each other (route %s)" % route
    if method == "post_copy" and "post_copy" not in (target.get("methods") or []):
        return "the target cannot serve lazy pages (%s)" % _post_copy_gap(target)
    return None


def _post_copy_gap(facts: dict[str, t.Any]) -> str:
    if not (facts.get("features") or {}).get("lazy_pages"):
        return "no userfaultfd lazy-pages support in its kernel"
    return "fs.pipe-max-size is below 4 MiB"


def _transport(method: str, requested: str, source: dict[str, t.Any], target: dict[str, t.Any]) -> str | None:
    """How a page-link method's pages travel: CRIU's own TLS page server (a stream between two CRIUs
    built with GnuTLS), or the resumable link through OpenSSH."""
    if method != "stream":  # post-copy's link must ride out a break; stop-and-copy has no link
        return "ssh" if method in PAGE_LINK else None
    gaps = [name for name, facts in (("source", source), ("target", target))
            if not (facts.get("features") or {}).get("page_server_tls")]
    if requested == "tls" and gaps:
        raise MethodError("stream_transport tls is not possible: the %s's CRIU was built without TLS (GnuTLS)"
                          % " and the ".join(gaps))
    return "tls" if requested != "ssh" and not gaps else "ssh"


def choose(requested: str, engine: str, source: dict[str, t.Any], target: dict[str, t.Any],
           allow_post_copy: bool = False, route: str = "direct", stream_transport: str = "auto",
           allow_pre_copy: bool = True) -> dict[str, t.Any]:
    """The method to use: {"method", "reason", "rejected": {method: why}, "transport"}.

    ``transport`` says how a stream's or a post-copy's pages travel (``tls`` or ``ssh``; None for
    stop-and-copy): ``stream_transport`` ``auto`` takes CRIU's TLS page server for a stream when both
    CRIUs have TLS; ``tls`` demands it; ``ssh`` keeps the resumable link through OpenSSH.

    ``source`` and ``target`` are the hosts' ferry_criu facts (ferry.migrate.criu_info). A method
    asked for by name must be possible, or this fails saying why. ``auto`` takes the best possible
    one; post-copy only with ``allow_post_copy``, because until its last page has arrived the
    container's state is split between the two hosts; pre-copy unless ``allow_pre_copy`` is false.
    """
    if requested not in REQUESTS:
        raise MethodError("method must be one of %s, not %r" % (", ".join(REQUESTS), requested))
    if stream_transport not in TRANSPORTS:
        raise MethodError("stream_transport must be one of %s, not %r" % (", ".join(TRANSPORTS), stream_transport))
    if engine not in _engines.ENGINES:
        raise MethodError("engine must be one of %s, not %r" % (", ".join(_engines.ENGINES), engine))
    rejected: dict[str, str] = {}
    if requested != "auto":
        why = _why_not(requested, engine, source, target, route)
        if why:
            raise MethodError("method %s is not possible: %s" % (requested, why))
        return {"method": requested, "reason": "asked for", "rejected": rejected,
                "transport": _transport(requested, stream_transport, source, target)}
    for method in METHODS:
        why = _why_not(method, engine, source, target, route)
        if why is None and method == "post_copy" and not allow_post_copy:
            why = "not allowed: post-copy splits the state between the hosts until its last page arrives (allow_post_copy)"
        if why is None and method == "pre_copy" and not allow_pre_copy:
            why = "not allowed (allow_pre_copy)"
        if why is None:
            return {"method": method, "reason": "best possible", "rejected": rejected,
                    "transport": _transport(method, stream_transport, source, target)}
        rejected[method] = why
    raise MethodError("no method is possible")  # stop_and_copy always is; kept for safety
