# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Placement planning for drains and rebalances: pure, deterministic functions over a fleet model.

The fleet model (built from host_info and container_info results by filter ``fleet_model``)::

    hosts:      {name: {memory_bytes, memory_used_bytes, cpus, cpu_used, cpu_group, cordoned}}
    containers: [{name, host, engine, rss_bytes, cpu, labels}]

A container fits on a host when the host's free memory is at least its RSS times the headroom.
Every plan lists each container it could not place with the reason; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
import typing as t

ANTI_AFFINITY_LABEL = "ferry.anti-affinity"
PINNED_LABEL = "ferry.pinned"
METRICS = {"memory": ("rss_bytes", "memory_bytes", "memory_used_bytes"), "cpu": ("cpu", "cpus", "cpu_used")}


class PlanError(ValueError):
    """Bad planner input; the message names the parameter."""


class _Host:
    __slots__ = ("name", "memory", "memory_used", "capacity", "used", "group", "cordoned", "anti", "moved_out_wave")

    def __init__(self, name: str, spec: dict[str, t.Any], metric: str) -> None:
        dummy, capacity_key, used_key = METRICS[metric]
        self.name = name
        self.memory = _number(spec, "memory_bytes", name)
        self.memory_used = _number(spec, "memory_used_bytes", name)
        self.capacity = _number(spec, capacity_key, name) if metric != "memory" else self.memory
        self.used = _number(spec, used_key, name) if metric != "memory" else self.memory_used
        self.group = str(spec.get("cpu_group") or "")
        self.cordoned = bool(spec.get("cordoned"))
        self.anti: set[str] = set()
        self.moved_out_wave = -1

    @property
    def free(self) -> float:
        return self.memory - self.memory_used

    @property
    def utilisation(self) -> float:
        return self.used / self.capacity if self.capacity else 0.0


def _number(spec: dict[str, t.Any], key: str, host: str) -> float:
    value = spec.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise PlanError("fleet.hosts.%s.%s must be a non-negative number, not %r" % (host, key, value))
    return value


def _model(fleet: t.Any, metric: str) -> tuple[dict[str, _Host], list[dict[str, t.Any]]]:
    if metric not in METRICS:
        raise PlanError("metric must be one of %s, not %r" % (", ".join(sorted(METRICS)), metric))
    if not isinstance(fleet, dict) or not isinstance(fleet.get("hosts"), dict) or not isinstance(fleet.get("containers"), list):
        raise PlanError("fleet must be a mapping with 'hosts' (a mapping) and 'containers' (a list)")
    hosts = {name: _Host(name, spec or {}, metric) for name, spec in sorted(fleet["hosts"].items())}
    containers = []
    seen = set()
    for item in fleet["containers"]:
        if not isinstance(item, dict) or not item.get("name") or item.get("host") not in hosts:
            raise PlanError("fleet.containers: every container needs a name and a host of fleet.hosts, not %r" % (item,))
        key = (item["host"], item["name"])
        if key in seen:
            raise PlanError("fleet.containers: %s is listed twice on %s" % (item["name"], item["host"]))
        seen.add(key)
        if isinstance(item.get("rss_bytes", 0), bool) or not isinstance(item.get("rss_bytes", 0), (int, float)):
            raise PlanError("fleet.containers: rss_bytes of %s must be a number" % item["name"])
        containers.append(item)
    containers.sort(key=lambda c: (c["host"], c["name"]))
    return hosts, containers


def _labels(container: dict[str, t.Any]) -> dict[str, t.Any]:
    return container.get("labels") or {}


def _check_limits(headroom: float, max_per_source: int, max_per_target: int) -> None:
    if not isinstance(headroom, (int, float)) or headroom < 1:
        raise PlanError("headroom must be a number >= 1, not %r" % (headroom,))
    for name, value in (("max_per_source", max_per_source), ("max_per_target", max_per_target)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PlanError("%s must be an integer >= 1, not %r" % (name, value))


def move_id(container: str, source: str, target: str) -> str:
    """The move's checkpoint ID and journal key: readable, and a valid checkpoint ID (1-128 characters)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "-", "%s-%s-to-%s" % (container, source, target)).lstrip("-_.") or "move"
    if len(readable) <= 128:
        return readable
    return "%s-%s" % (readable[:111], hashlib.sha256(readable.encode("utf-8")).hexdigest()[:16])


def share(plan: dict[str, t.Any], index: int, count: int) -> dict[str, t.Any]:
    """The plan with only the moves of share ``index`` of ``count`` (from 1), for jobs run side by side.

    Each wave's moves are dealt out, largest first, to the share holding the fewest bytes of that wave,
    so every share gets its part of every wave. Waves keep their numbers: a wave still runs as one
    across all shares (each share's job waits for the earlier waves of all), which keeps the plan's
    per-host limits and its ordering. Deterministic: every job computes the same split.
    """
    if not 1 <= index <= count:
        raise PlanError("share: %r of %r is not a share (1 <= index <= count)" % (index, count))
    loads: dict[int, list[int]] = {}
    mine = []
    for move in sorted(plan.get("moves", []), key=lambda m: (m["wave"], -int(m.get("rss_bytes") or 0), m["id"])):
        load = loads.setdefault(move["wave"], [0] * count)
        slot = min(range(count), key=lambda i: (load[i], i))
        load[slot] += max(int(move.get("rss_bytes") or 0), 1)
        if slot == index - 1:
            mine.append(move)
    return dict(plan, moves=mine, share="%d/%d" % (index, count))


def _move(container: dict[str, t.Any], source: _Host, target: _Host, metric: str) -> dict[str, t.Any]:
    amount = container.get(METRICS[metric][0], 0) or 0
    rss = container.get("rss_bytes", 0) or 0
    source.memory_used -= rss
    target.memory_used += rss
    source.used -= amount
    target.used += amount
    return {"id": move_id(container["name"], source.name, target.name), "container": container["name"],
            "engine": container.get("engine", "podman"), "source": source.name, "target": target.name, "rss_bytes": rss, "wave": None}


def _assign_waves(moves: list[dict[str, t.Any]], hosts: dict[str, _Host], max_per_source: int, max_per_target: int) -> int:
    """Earliest wave with room on both ends; a move into a host that gave memory away comes after that.

    Returns the number of waves.
    """
    load: dict[tuple[str, str, int], int] = {}
    first_free: dict[tuple[str, str], int] = {}
    waves = 0
    for move in moves:
        source, target = hosts[move["source"]], hosts[move["target"]]
        wave = max(first_free.get(("out", source.name), 0), first_free.get(("in", target.name), 0), target.moved_out_wave + 1)
        while load.get(("out", source.name, wave), 0) >= max_per_source or load.get(("in", target.name, wave), 0) >= max_per_target:
            wave += 1
        for end, name, limit in (("out", source.name, max_per_source), ("in", target.name, max_per_target)):
            load[(end, name, wave)] = load.get((end, name, wave), 0) + 1
            if load[(end, name, wave)] >= limit and first_free.get((end, name), 0) == wave:
                first_free[(end, name)] = wave + 1
        source.moved_out_wave = max(source.moved_out_wave, wave)
        move["wave"] = wave + 1
        waves = max(waves, wave + 1)
    return waves


def imbalance(hosts: t.Iterable[_Host]) -> float:
    """Population standard deviation of the hosts' utilisation (0 = perfectly even)."""
    values = [host.utilisation for host in hosts]
    if not values:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(max(0.0, sum((v - mean) ** 2 for v in values) / len(values)))


def _utilisation(hosts: dict[str, _Host], before: dict[str, float]) -> dict[str, dict[str, float]]:
    return {name: {"before": round(before[name], 4), "after": round(host.utilisation, 4)} for name, host in hosts.items()}


def drain_plan(fleet: t.Any, drain: t.Any, headroom: float = 1.2, max_per_source: int = 2, max_per_target: int = 2,
               anti_affinity_label: str = ANTI_AFFINITY_LABEL, pinned_label: str = PINNED_LABEL) -> dict[str, t.Any]:
    """Targets for every container of the hosts in ``drain``.

    Largest containers first, each to the eligible host (not drained, not cordoned, same CPU group,
    no container with the same anti-affinity label value) with the most free memory.
    """
    hosts, containers = _model(fleet, "memory")
    _check_limits(headroom, max_per_source, max_per_target)
    drain = [drain] if isinstance(drain, str) else drain
    if not isinstance(drain, list) or not drain:
        raise PlanError("drain must be a host name or a non-empty list of host names")
    unknown = sorted(set(drain) - set(hosts))
    if unknown:
        raise PlanError("drain names hosts that are not in the fleet: %s" % ", ".join(map(str, unknown)))
    draining = set(drain)
    before = {name: host.utilisation for name, host in hosts.items()}
    for container in containers:
        value = _labels(container).get(anti_affinity_label)
        if value is not None:
            hosts[container["host"]].anti.add(str(value))
    heaps: dict[str, list[tuple[float, str]]] = {}
    for host in hosts.values():
        if host.name not in draining and not host.cordoned:
            heaps.setdefault(host.group, []).append((-host.free, host.name))
    for heap in heaps.values():
        heapq.heapify(heap)

    moves, unplaced = [], []
    leaving = [c for c in containers if c["host"] in draining]
    leaving.sort(key=lambda c: (-(c.get("rss_bytes") or 0), c["host"], c["name"]))
    for container in leaving:
        source = hosts[container["host"]]
        if _labels(container).get(pinned_label) not in (None, "", "false", False):
            unplaced.append({"container": container["name"], "host": source.name, "reason": "pinned by label %s" % pinned_label})
            continue
        heap = heaps.get(source.group, [])
        need = (container.get("rss_bytes") or 0) * headroom
        value = _labels(container).get(anti_affinity_label)
        value = None if value is None else str(value)
        skipped, chosen = [], None
        while heap and -heap[0][0] >= need:
            entry = heapq.heappop(heap)
            if value is not None and value in hosts[entry[1]].anti:
                skipped.append(entry)
                continue
            chosen = hosts[entry[1]]
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        if chosen is None:
            unplaced.append({"container": container["name"], "host": source.name,
                             "reason": _why_not(heap, skipped, need, value, source.group, anti_affinity_label)})
            continue
        moves.append(_move(container, source, chosen, "memory"))
        if value is not None:
            chosen.anti.add(value)
        heapq.heappush(heap, (-chosen.free, chosen.name))
    waves = _assign_waves(moves, hosts, max_per_source, max_per_target)
    after = round(imbalance(h for h in hosts.values() if h.name not in draining and not h.cordoned), 4)
    return {"kind": "drain", "drain": sorted(draining), "moves": moves, "unplaced": unplaced, "waves": waves,
            "utilisation": _utilisation(hosts, before), "imbalance": {"metric": "memory", "after": after}}


def _best_move(donor: _Host, candidates: list[dict[str, t.Any]], heap: list[tuple[float, str]], hosts: dict[str, _Host],
               s1: float, s2: float, count: int, amount_key: str, headroom: float, label: str) -> tuple | None:
    """The move from ``donor`` to the least utilised receiver that can take one of its candidates,
    lowest resulting variance first, then fewest bytes: (variance, container, receiver, s1, s2)."""
    looked, best = [], None
    while heap and best is None and len(looked) < 8:
        entry = heapq.heappop(heap)
        receiver = hosts[entry[1]]
        if entry[0] != receiver.utilisation:
            continue  # stale entry
        looked.append(entry)
        if receiver is donor:
            continue
        ud, ur = donor.utilisation, receiver.utilisation
        base1, base2 = s1 - ud - ur, s2 - ud * ud - ur * ur
        for container in candidates:
            rss = container.get("rss_bytes") or 0
            value = _labels(container).get(label)
            if receiver.free < rss * headroom or (value is not None and str(value) in receiver.anti):
                continue
            amount = container.get(amount_key) or 0
            nd, nr = ud - amount / donor.capacity, ur + amount / receiver.capacity
            n1, n2 = base1 + nd + nr, base2 + nd * nd + nr * nr
            rank = (n2 / count - (n1 / count) ** 2, rss, container["name"])
            if best is None or rank < best[0]:
                best = (rank, container, receiver, n1, n2)
    for entry in looked:
        heapq.heappush(heap, entry)
    return None if best is None else (best[0][0],) + best[1:]


def _why_not(heap: list[tuple[float, str]], skipped: list[tuple[float, str]], need: float, value: str | None,
             group: str, label: str) -> str:
    if not heap and not skipped:
        return "no host can receive it: every host of CPU group %r is drained or cordoned" % group
    if skipped and value is not None:
        return "anti-affinity %s=%s excludes every host with %d MiB free" % (label, value, math.ceil(need / 1048576))
    return "no host of CPU group %r has %d MiB free (RSS x headroom)" % (group, math.ceil(need / 1048576))


def rebalance_plan(fleet: t.Any, threshold: float = 0.1, metric: str = "memory", headroom: float = 1.2,
                   max_per_source: int = 2, max_per_target: int = 2, max_moves: int | None = None,
                   anti_affinity_label: str = ANTI_AFFINITY_LABEL, pinned_label: str = PINNED_LABEL) -> dict[str, t.Any]:
    """Moves that bring the imbalance (standard deviation of utilisation) to ``threshold`` or below.

    Greedy: from the most utilised host, the single move to one of the least utilised hosts of the
    same CPU group that lowers the imbalance most (fewer bytes on a tie). Pinned containers and
    cordoned hosts never take part; each container moves at most once.
    """
    hosts, containers = _model(fleet, metric)
    _check_limits(headroom, max_per_source, max_per_target)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or threshold < 0:
        raise PlanError("threshold must be a number >= 0, not %r" % (threshold,))
    if max_moves is not None and (not isinstance(max_moves, int) or max_moves < 0):
        raise PlanError("max_moves must be an integer >= 0, not %r" % (max_moves,))
    amount_key = METRICS[metric][0]
    eligible = [h for h in hosts.values() if not h.cordoned and h.capacity > 0]
    before = {name: host.utilisation for name, host in hosts.items()}
    start = imbalance(eligible)
    count = len(eligible)
    s1 = sum(h.utilisation for h in eligible)
    s2 = sum(h.utilisation ** 2 for h in eligible)
    # Only what may move is a candidate, and a moved container is never a candidate again.
    movable: dict[str, list[dict[str, t.Any]]] = {h.name: [] for h in eligible}
    for container in containers:
        value = _labels(container).get(anti_affinity_label)
        if value is not None:
            hosts[container["host"]].anti.add(str(value))
        if (container["host"] in movable and (container.get(amount_key) or 0) > 0
                and _labels(container).get(pinned_label) in (None, "", "false", False)):
            movable[container["host"]].append(container)
    donors = [(-h.utilisation, h.name) for h in eligible]
    receivers: dict[str, list[tuple[float, str]]] = {}
    for host in eligible:
        receivers.setdefault(host.group, []).append((host.utilisation, host.name))
    heapq.heapify(donors)
    for heap in receivers.values():
        heapq.heapify(heap)
    moves = []
    target_sq = threshold ** 2

    def variance() -> float:
        return s2 / count - (s1 / count) ** 2

    while donors and count and variance() > target_sq + 1e-12 and (max_moves is None or len(moves) < max_moves):
        negative, name = heapq.heappop(donors)
        donor = hosts[name]
        if -negative != donor.utilisation:
            continue  # stale entry
        best = _best_move(donor, movable[name], receivers[donor.group], hosts, s1, s2, count, amount_key, headroom, anti_affinity_label)
        if best is None or best[0] >= variance() - 1e-15:
            continue  # nothing from this host helps: it leaves the donors
        dummy, container, receiver, s1, s2 = best
        value = _labels(container).get(anti_affinity_label)
        if value is not None:
            receiver.anti.add(str(value))
        moves.append(_move(container, donor, receiver, metric))
        movable[name].remove(container)
        heapq.heappush(donors, (-donor.utilisation, donor.name))
        heapq.heappush(donors, (-receiver.utilisation, receiver.name))
        heapq.heappush(receivers[donor.group], (donor.utilisation, donor.name))
        heapq.heappush(receivers[receiver.group], (receiver.utilisation, receiver.name))
    waves = _assign_waves(moves, hosts, max_per_source, max_per_target)
    after = round(imbalance(eligible), 4)
    return {"kind": "rebalance", "moves": moves, "unplaced": [], "waves": waves, "utilisation": _utilisation(hosts, before),
            "imbalance": {"metric": metric, "threshold": threshold, "before": round(start, 4), "after": after,
                          "reached": after <= threshold}}


def measure(fleet: t.Any, metric: str = "memory") -> dict[str, t.Any]:
    """The imbalance of the hosts that are not cordoned, and every host's utilisation."""
    hosts, dummy = _model(fleet, metric)
    return {"metric": metric, "imbalance": round(imbalance(h for h in hosts.values() if not h.cordoned and h.capacity > 0), 4),
            "utilisation": {name: round(host.utilisation, 4) for name, host in hosts.items()}}
