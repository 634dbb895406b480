"""Benchmark: a drain's waves against the same migrations run one by one, and Ansible's share of each.

N small podman containers (the lab's busybox counter) start on node1. First they move one by one to
node2, one `ferry.migrate.migrate` run each, as an operator without Ferry's fleet roles would script it.
Then one `ferry.migrate.drain` of node2 sends them all on to node1, node3 and node4 in waves. Both are
timed from the first ansible-playbook's start to the last one's end. Every counter must then run on
exactly one host, with its count gone on.

Ansible's share of a wall time is what is left once the moving phases are taken out: the union, over the
migrations, of each one's checkpoint, transfer and restore (from its record in the journal or its
output), divided by the wall time and subtracted from one. Writes docs/benchmarks.md; a measurement, not
a test. Usage: python bench/drain.py [N] [MAX_PER_SOURCE]   (default 20 and 6; the lab must be up with 4 hosts)
"""
import json
import os
import re
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from lab import COUNTER, RESET, count, playbook, ssh, where  # noqa: E402  pylint: disable=wrong-import-position
from methods import migrate  # noqa: E402  pylint: disable=wrong-import-position
from transfer import write_section  # noqa: E402  pylint: disable=wrong-import-position

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
MAX_PER_SOURCE = int(sys.argv[2]) if len(sys.argv) > 2 else 6
NODES = ["node1", "node2", "node3", "node4"]
GOAL_SPEEDUP, GOAL_SHARE = 2.0, 0.15


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def phase_seconds(record):
    return {phase["name"]: float(phase["seconds"] or 0) for phase in record["phases"]}


def moving_interval(record):
    """(start, end) of a migration's checkpoint, transfer and restore, which run back to back after its preflight."""
    phases = phase_seconds(record)
    start = float(record["started_at"]) + phases["preflight"]
    return start, start + phases["checkpoint"] + phases["transfer"] + phases["restore"]


def union(intervals):
    total, end = 0.0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total, end = total + stop - start, stop
        elif stop > end:
            total, end = total + stop - end, stop
    return total


def ansible_share(records, wall):
    return 1 - union([moving_interval(r) for r in records]) / wall


def cpu_busy():
    """This machine's busy and total CPU time so far (/proc/stat, in ticks), and the CPU seconds of this
    process's children (ansible-playbook, its workers and their ssh: the controller's share; the hosts'
    module runs are the children of their own sshd)."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks), children.ru_utime + children.ru_stime


def cores_busy(before):
    """(cores busy on average, the controller's CPU seconds) since ``before``."""
    busy, total, controller = cpu_busy()
    return (busy - before[0]) / float(total - before[1]) * os.cpu_count(), controller - before[2]


def one_by_one(names):
    """Each by the method a drain picks (migrate_method auto), so the two differ only in how they are run."""
    records, started = [], time.monotonic()
    for name in names:
        records.append(migrate(name, "podman", "auto"))
    return records, time.monotonic() - started


def where_time_goes(records):
    """Median seconds per migration: Ansible's preflight, the moving phases, the verification and
    finalisation, and the rest of the record's total (the grant, the restore job's start, its polling)."""
    rows = []
    for record in records:
        phases = phase_seconds(record)
        moving = phases["checkpoint"] + phases["transfer"] + phases["restore"]
        rows.append((phases["preflight"], moving, phases["verify_finalise"],
                     float(record["total_seconds"]) - phases["preflight"] - moving - phases["verify_finalise"], float(record["total_seconds"])))
    return [median(column) for column in zip(*rows)]


def drained(state_dir):
    started = time.monotonic()
    proc = playbook("ferry.migrate.drain", check=True, extra=dict(
        drain_hosts="node2", fleet_state_dir=state_dir, fleet_max_per_source=MAX_PER_SOURCE))
    wall = time.monotonic() - started
    waves = int(re.search(r"in (\d+) wave\(s\)", proc.stdout).group(1))
    journal = json.load(open(os.path.join(state_dir, "journal-drain-node2.json")))
    records = [entry["record"] for entry in journal["entries"].values()]
    playbook("ferry.migrate.drain", check=True, extra=dict(drain_hosts="node2", fleet_state_dir=state_dir, drain_state="uncordoned"))
    return records, wall, waves


def main():
    for node in NODES:
        ssh(node, RESET)
    names = ["c%02d" % i for i in range(N)]
    for name in names:
        ssh("node1", COUNTER.format(engine="podman", name=name))
    time.sleep(1)
    before = {name: count("node1", name) for name in names}
    cpu = cpu_busy()
    serial, serial_wall = one_by_one(names)
    serial_cores, cpu = cores_busy(cpu), cpu_busy()
    with tempfile.TemporaryDirectory() as state_dir:
        waved, drain_wall, waves = drained(state_dir)
    drain_cores = cores_busy(cpu)
    found = where(NODES)
    lost = [name for name in names if len(found.get(name, [])) != 1 or not found[name][0].endswith(" running")
            or found[name][0].startswith("node2")]
    if lost or len(waved) != N or any(r["outcome"] != "migrated" for r in serial + waved):
        raise AssertionError("not every counter moved: %s; outcomes %s" % (lost, [r["outcome"] for r in serial + waved]))
    for name in names:
        node = found[name][0].split()[0]
        if count(node, name) <= before[name]:
            raise AssertionError("%s lost its count" % name)
    for node in NODES:
        ssh(node, RESET)
    write(serial_wall, ansible_share(serial, serial_wall), drain_wall, ansible_share(waved, drain_wall), waves,
          [r["downtime_seconds"] for r in waved], where_time_goes(serial), where_time_goes(waved), serial_cores, drain_cores)


def write(serial_wall, serial_share, drain_wall, drain_share, waves, downtimes, serial_parts, drain_parts, serial_cores, drain_cores):
    speedup = serial_wall / drain_wall
    table = "\n".join([
        "| how | wall s | per container s | Ansible's share | cores busy (of %d) | controller CPU s per container |" % os.cpu_count(),
        "|---|---|---|---|---|---|",
        "| one by one, %d `ferry.migrate.migrate` runs, node1 -> node2 | %.1f | %.2f | %.0f %% | %.2f | %.2f |" % (
            N, serial_wall, serial_wall / N, serial_share * 100, serial_cores[0], serial_cores[1] / N),
        "| one `ferry.migrate.drain` of node2, %d waves (fleet_max_per_source=%d) | %.1f | %.2f | %.0f %% | %.2f | %.2f |" % (
            waves, MAX_PER_SOURCE, drain_wall, drain_wall / N, drain_share * 100, drain_cores[0], drain_cores[1] / N),
    ]) + "\n\n" + "\n".join([
        "| one migration, median s | preflight | checkpoint + transfer + restore | verify + finalise | grant, restore job, polling | total |",
        "|---|---|---|---|---|---|",
        "| one by one | %.2f | %.2f | %.2f | %.2f | %.2f |" % tuple(serial_parts),
        "| in the drain's waves | %.2f | %.2f | %.2f | %.2f | %.2f |" % tuple(drain_parts),
    ])
    print(table)
    write_section("Fleet drain: waves against one by one", (
        "`python bench/drain.py %d %d` on %s: %d small podman containers (busybox counters) moved node1 -> node2 one\n"
        "by one, then drained from node2 onto node1, node3 and node4 (lab of 4 hosts, one machine, %d cores), each by\n"
        "the method the drain picks. Every counter then runs on exactly one host with its count gone on. Ansible's\n"
        "share: one minus the union of the migrations' checkpoint, transfer and restore intervals over the wall time.\n"
        "Cores busy: this machine's CPU time over the wall time; the controller and all four hosts run on these\n"
        "cores. Controller CPU: ansible-playbook's, its workers' and their ssh clients' (the hosts' module runs\n"
        "are not in it).\n\n%s\n\n"
        "Drain downtimes: median %.2f s, worst %.2f s.\n\n"
        "Against the goals of issue #16:\n\n"
        "- A drain >= %.0fx faster than the same migrations one by one: %s, %.2fx.  \n"
        "- Ansible's share of the drain's wall time <= %.0f %%: %s, %.0f %%.%s\n"
    ) % (N, MAX_PER_SOURCE, time.strftime("%Y-%m-%d"), N, os.cpu_count(), table, median(downtimes), max(downtimes),
         GOAL_SPEEDUP, "met" if speedup >= GOAL_SPEEDUP else "not met", speedup,
         GOAL_SHARE * 100, "met" if drain_share <= GOAL_SHARE else "not met", drain_share * 100,
         "" if drain_share <= GOAL_SHARE else " The second table says where a migration's time goes: all but the moving "
         "phases are module runs on the hosts (the preflight's container_info on both, asked once per wave in a drain; the "
         "grant, the restore job, the "
         "cleanup on both and the revocation), each a round trip, and the controller's own work between them. In waves "
         "the migrations share the cores, so each step of each takes longer than alone; with every core busy, the drain "
         "goes no faster than the machine's CPU allows (a fleet's hosts do their own share of the work on their own "
         "cores; only the controller's share is common)."))


if __name__ == "__main__":
    main()
