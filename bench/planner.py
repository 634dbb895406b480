"""Benchmark: the drain and rebalance planners on a fleet of 10,000 hosts and 100,000 containers.

Writes its table to docs/benchmarks.md. A measurement, not a test. Baseline, measured in the same run:
one deep copy of the fleet model, the least work any planner does with its input.
Usage: python bench/planner.py [HOSTS] [CONTAINERS]
"""
import copy
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "collections"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ansible_collections.ferry.migrate.plugins.plugin_utils import _planner  # noqa: E402  pylint: disable=wrong-import-position
from transfer import write_section  # noqa: E402  pylint: disable=wrong-import-position

HOSTS = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
CONTAINERS = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
MIB = 1 << 20
RUNS = 3


def fleet(seed=1):
    """Skewed on purpose: a tenth of the hosts hold half the containers; 4 CPU groups; some labels."""
    rng = random.Random(seed)
    hosts = {"host%05d" % i: {"memory_bytes": rng.choice([64, 128, 256]) * 1024 * MIB, "memory_used_bytes": 0,
                              "cpus": 32, "cpu_used": 0, "cpu_group": "g%d" % (i % 4), "cordoned": i % 97 == 0}
             for i in range(HOSTS)}
    names = sorted(hosts)
    hot = names[:HOSTS // 10]
    containers = []
    for i in range(CONTAINERS):
        host = rng.choice(hot) if i % 2 else rng.choice(names)
        labels = {"ferry.anti-affinity": "svc%d" % (i % 500)} if i % 10 == 0 else {}
        rss = rng.randint(64, 4096) * MIB
        hosts[host]["memory_used_bytes"] += rss
        containers.append({"name": "c%06d" % i, "host": host, "engine": "podman", "rss_bytes": rss, "cpu": 0.5, "labels": labels})
    return {"hosts": hosts, "containers": containers}


def timed(function):
    values = []
    for dummy in range(RUNS):
        started = time.perf_counter()
        result = function()
        values.append(time.perf_counter() - started)
    return statistics.median(values), result


def main():
    model = fleet()
    drained = sorted(model["hosts"])[:100]
    baseline, dummy = timed(lambda: copy.deepcopy(model))
    drain_s, drain = timed(lambda: _planner.drain_plan(model, drained, max_per_source=4, max_per_target=2))
    rebalance_s, rebalance = timed(lambda: _planner.rebalance_plan(model, threshold=0.05, max_per_source=4, max_per_target=4))
    rows = [
        ("baseline: deep copy of the fleet model", baseline, ""),
        ("drain_plan: empty 100 hosts", drain_s, "%d moves in %d waves, %d unplaced" % (len(drain["moves"]), drain["waves"], len(drain["unplaced"]))),
        ("rebalance_plan: memory, threshold 0.05", rebalance_s, "%d moves in %d waves; imbalance %.3f -> %.3f" % (
            len(rebalance["moves"]), rebalance["waves"], rebalance["imbalance"]["before"], rebalance["imbalance"]["after"])),
    ]
    lines = ["| what | median seconds | ratio to baseline | within the 2 s goal | result |", "|---|---|---|---|---|"]
    for name, seconds, result in rows:
        lines.append("| %s | %.3f | %.1f | %s | %s |" % (name, seconds, seconds / baseline, "yes" if seconds <= 2 else "NO", result))
    table = "\n".join(lines)
    print(table)
    write_section("Placement planners", (
        "`python bench/planner.py %d %d` on %s: a fleet of %d hosts (64-256 GiB, 4 CPU groups, every 97th\n"
        "cordoned) and %d containers (64 MiB-4 GiB, a tenth with anti-affinity labels, half of them packed\n"
        "on a tenth of the hosts), median of %d runs, one core.\n\n%s\n") % (
        HOSTS, CONTAINERS, time.strftime("%Y-%m-%d"), HOSTS, CONTAINERS, RUNS, table))


if __name__ == "__main__":
    main()
