"""Drain and rebalance planners: properties over random fleets, and worked examples."""
import copy
import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.ferry.migrate.plugins.plugin_utils import _planner

MIB = 1 << 20


@st.composite
def fleets(draw):
    count = draw(st.integers(1, 8))
    hosts = {}
    for index in range(count):
        hosts["h%d" % index] = {"memory_bytes": draw(st.integers(0, 64)) * 64 * MIB, "memory_used_bytes": 0,
                                "cpus": draw(st.integers(1, 8)), "cpu_used": 0,
                                "cpu_group": draw(st.sampled_from(["a", "a", "b"])), "cordoned": draw(st.booleans()) and index > 0}
    containers = []
    for index in range(draw(st.integers(0, 30))):
        host = draw(st.sampled_from(sorted(hosts)))
        labels = {}
        anti = draw(st.sampled_from([None, None, "x", "y"]))
        if anti:
            labels[_planner.ANTI_AFFINITY_LABEL] = anti
        if draw(st.integers(0, 9)) == 0:
            labels[_planner.PINNED_LABEL] = "true"
        rss = draw(st.integers(0, 512)) * MIB
        cpu = draw(st.integers(0, 20)) / 10
        hosts[host]["memory_used_bytes"] += rss
        hosts[host]["cpu_used"] += cpu
        containers.append({"name": "c%d" % index, "host": host, "engine": "podman", "rss_bytes": rss, "cpu": cpu, "labels": labels})
    return {"hosts": hosts, "containers": containers}


def apply(fleet, plan):
    """Where each container is after the plan, computed from the input alone."""
    where = {(c["host"], c["name"]): c["host"] for c in fleet["containers"]}
    for move in plan["moves"]:
        assert where[(move["source"], move["container"])] == move["source"]
        where[(move["source"], move["container"])] = move["target"]
    return where


def check_common(fleet, plan, headroom, limit):
    hosts, by_key = fleet["hosts"], {(c["host"], c["name"]): c for c in fleet["containers"]}
    where = apply(fleet, plan)
    keys = [(m["source"], m["container"]) for m in plan["moves"]]
    assert len(keys) == len(set(keys)), "a container moves twice"
    used = Counter()
    for key, host in where.items():
        used[host] += by_key[key]["rss_bytes"]
    for move in plan["moves"]:
        source, target = hosts[move["source"]], hosts[move["target"]]
        container = by_key[(move["source"], move["container"])]
        assert not target["cordoned"] and target["cpu_group"] == source["cpu_group"]
        assert _planner.PINNED_LABEL not in container["labels"]
        # Every placement had room for RSS x headroom, so no receiving host ends over capacity.
        assert used[move["target"]] <= target["memory_bytes"]
    for value in ("x", "y"):
        received = {m["target"] for m in plan["moves"]
                    if by_key[(m["source"], m["container"])]["labels"].get(_planner.ANTI_AFFINITY_LABEL) == value}
        for host in received:
            together = [k for k, h in where.items() if h == host and by_key[k]["labels"].get(_planner.ANTI_AFFINITY_LABEL) == value]
            assert len(together) == 1, "anti-affinity %s broken on %s" % (value, host)
    per_wave = Counter()
    for move in plan["moves"]:
        per_wave[("out", move["source"], move["wave"])] += 1
        per_wave[("in", move["target"], move["wave"])] += 1
    assert all(count <= limit for count in per_wave.values())
    assert plan["waves"] == max([m["wave"] for m in plan["moves"]], default=0)


@settings(max_examples=300, deadline=None)
@given(fleets(), st.data())
def test_drain_places_or_reports_every_container(fleet, data):
    drain = data.draw(st.lists(st.sampled_from(sorted(fleet["hosts"])), min_size=1, unique=True))
    limit = data.draw(st.integers(1, 3))
    plan = _planner.drain_plan(copy.deepcopy(fleet), drain, 1.2, limit, limit)
    leaving = sorted((c["host"], c["name"]) for c in fleet["containers"] if c["host"] in drain)
    accounted = sorted([(m["source"], m["container"]) for m in plan["moves"]] + [(u["host"], u["container"]) for u in plan["unplaced"]])
    assert accounted == leaving, "a container was dropped or planned twice"
    assert all(m["target"] not in drain for m in plan["moves"])
    assert all(u["reason"] for u in plan["unplaced"])
    check_common(fleet, plan, 1.2, limit)
    # Deterministic, whatever the input order.
    shuffled = copy.deepcopy(fleet)
    random.Random(7).shuffle(shuffled["containers"])
    assert _planner.drain_plan(shuffled, drain, 1.2, limit, limit) == plan


@settings(max_examples=300, deadline=None)
@given(fleets(), st.sampled_from(["memory", "cpu"]), st.sampled_from([0.0, 0.05, 0.2]))
def test_rebalance_never_worsens_and_respects_constraints(fleet, metric, threshold):
    plan = _planner.rebalance_plan(copy.deepcopy(fleet), threshold, metric, 1.2, 2, 2)
    check_common(fleet, plan, 1.2, 2)
    assert all(not fleet["hosts"][m["source"]]["cordoned"] for m in plan["moves"])
    assert plan["imbalance"]["after"] <= plan["imbalance"]["before"] + 1e-9
    if plan["imbalance"]["before"] <= threshold:
        assert plan["moves"] == []
    shuffled = copy.deepcopy(fleet)
    random.Random(3).shuffle(shuffled["containers"])
    assert _planner.rebalance_plan(shuffled, threshold, metric, 1.2, 2, 2) == plan


def skewed():
    hosts = {name: {"memory_bytes": 1024 * MIB, "memory_used_bytes": 0, "cpus": 2, "cpu_used": 0, "cpu_group": "a"}
             for name in ("n1", "n2", "n3", "n4")}
    containers = [{"name": "c%d" % i, "host": "n1", "rss_bytes": 100 * MIB, "labels": {}} for i in range(6)]
    containers.append({"name": "db", "host": "n1", "rss_bytes": 150 * MIB, "labels": {_planner.PINNED_LABEL: "yes"}})
    for container in containers:
        hosts["n1"]["memory_used_bytes"] += container["rss_bytes"]
    return {"hosts": hosts, "containers": containers}


def test_rebalance_worked_example():
    plan = _planner.rebalance_plan(skewed(), threshold=0.05)
    assert plan["imbalance"]["before"] > 0.3 and plan["imbalance"]["reached"]
    assert "db" not in [m["container"] for m in plan["moves"]]
    # n1 holds 750 MiB (150 pinned) of 4 x 1024: after five moves the best spread is 250/200/200/100
    # MiB (0.053), so it takes all six, ending 150/200/200/200 (0.021).
    assert len(plan["moves"]) == 6 and plan["imbalance"]["after"] == pytest.approx(0.021, abs=0.001)
    assert Counter(m["target"] for m in plan["moves"]) == {"n2": 2, "n3": 2, "n4": 2}
    assert plan["waves"] == 3  # two out of n1 per wave
    assert plan["moves"] == _planner.rebalance_plan(skewed(), threshold=0.05)["moves"]


def test_balanced_fleet_moves_nothing():
    fleet = skewed()
    plan = _planner.rebalance_plan(fleet, threshold=0.5)
    assert plan["moves"] == [] and plan["imbalance"]["reached"]


def test_drain_worked_example_with_reasons():
    fleet = skewed()
    fleet["hosts"]["n4"]["cordoned"] = True
    fleet["containers"].append({"name": "huge", "host": "n1", "rss_bytes": 2000 * MIB, "labels": {}})
    fleet["containers"][0]["labels"] = {_planner.ANTI_AFFINITY_LABEL: "web"}
    fleet["containers"][1]["labels"] = {_planner.ANTI_AFFINITY_LABEL: "web"}
    fleet["containers"][2]["labels"] = {_planner.ANTI_AFFINITY_LABEL: "web"}
    plan = _planner.drain_plan(fleet, ["n1"], max_per_source=2, max_per_target=1)
    reasons = {u["container"]: u["reason"] for u in plan["unplaced"]}
    assert reasons["huge"].startswith("no host of CPU group 'a' has 2400 MiB free")
    assert reasons["db"] == "pinned by label ferry.pinned"
    assert "anti-affinity ferry.anti-affinity=web" in reasons["c2"]  # only n2 and n3 may receive
    assert all(m["target"] in ("n2", "n3") for m in plan["moves"]) and len(plan["moves"]) == 5
    assert plan["waves"] == 3  # one migration into each of two hosts per wave


@pytest.mark.parametrize("call, message", [
    (lambda: _planner.drain_plan(skewed(), []), "drain must be"),
    (lambda: _planner.drain_plan(skewed(), ["nope"]), "not in the fleet: nope"),
    (lambda: _planner.drain_plan(skewed(), ["n1"], headroom=0.5), "headroom"),
    (lambda: _planner.drain_plan(skewed(), ["n1"], max_per_source=0), "max_per_source"),
    (lambda: _planner.rebalance_plan(skewed(), metric="disk"), "metric must be one of"),
    (lambda: _planner.rebalance_plan(skewed(), threshold=-1), "threshold"),
    (lambda: _planner.rebalance_plan({"hosts": []}), "fleet must be a mapping"),
    (lambda: _planner.rebalance_plan({"hosts": {"a": {"memory_bytes": "lots"}}, "containers": []}), "fleet.hosts.a.memory_bytes"),
])
def test_bad_input_names_the_parameter(call, message):
    with pytest.raises(_planner.PlanError, match=message):
        call()


def test_imbalance_is_the_standard_deviation():
    fleet = skewed()
    hosts, dummy = _planner._model(fleet, "memory")
    values = [750 / 1024, 0, 0, 0]
    mean = sum(values) / 4
    assert math.isclose(_planner.imbalance(hosts.values()), math.sqrt(sum((v - mean) ** 2 for v in values) / 4))


@settings(max_examples=150, deadline=None)
@given(fleets(), st.integers(1, 5), st.data())
def test_shares_hold_every_move_once_and_a_part_of_every_wave(fleet, count, data):
    hosts = sorted(fleet["hosts"])
    plan = _planner.drain_plan(fleet, data.draw(st.lists(st.sampled_from(hosts), min_size=1, max_size=2, unique=True)))
    shares = [_planner.share(plan, index, count) for index in range(1, count + 1)]
    ids = [m["id"] for part in shares for m in part["moves"]]
    assert sorted(ids) == sorted(m["id"] for m in plan["moves"]) and len(set(ids)) == len(ids)
    for wave in {m["wave"] for m in plan["moves"]}:
        sizes = [len([m for m in part["moves"] if m["wave"] == wave]) for part in shares]
        assert max(sizes) - min(sizes) <= max(m["rss_bytes"] for m in plan["moves"]) // max(min(m["rss_bytes"] for m in plan["moves"]), 1) + 1
        assert sum(sizes) == len([m for m in plan["moves"] if m["wave"] == wave])
    assert shares == [_planner.share(plan, index, count) for index in range(1, count + 1)]  # every job computes the same split
    assert all(len(m["id"]) <= 128 for m in plan["moves"])


def test_share_deals_each_wave_and_refuses_a_bad_share():
    moves = [{"id": "m%d" % i, "wave": 1 + i // 4, "rss_bytes": MIB * (i + 1)} for i in range(8)]
    plan = {"moves": moves, "waves": 2}
    first, second = _planner.share(plan, 1, 2), _planner.share(plan, 2, 2)
    assert [m["id"] for m in first["moves"]] == ["m3", "m0", "m7", "m4"] and [m["id"] for m in second["moves"]] == ["m2", "m1", "m6", "m5"]
    assert first["share"] == "1/2"
    with pytest.raises(_planner.PlanError, match="share: 3 of 2"):
        _planner.share(plan, 3, 2)


def test_move_id_is_a_checkpoint_id():
    assert _planner.move_id("redis", "node1", "node2") == "redis-node1-to-node2"
    long = _planner.move_id("c" * 253, "node1", "node2")
    assert len(long) == 128 and long != _planner.move_id("c" * 252 + "d", "node1", "node2")
