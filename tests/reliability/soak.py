"""Soak: a Redis under continuous writes migrated back and forth between two lab hosts, many times.

Usage: python tests/reliability/soak.py [MIGRATIONS]      (the lab must be up; default 200)
After every migration: it runs exactly once, every acknowledged write is there. Before and after the
whole run: processes, open files and resident memory on the two hosts, which must come back to where
they were. The result goes to docs/reliability.md.
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from matrix import COUNTER, ROOT, WRITER, Broken, check, clean, migrate, ssh  # noqa: E402  pylint: disable=wrong-import-position


# Counted inside each lab host (its own pid namespace), so other work on this machine does not blur them.
HOST_FIGURES = ("python3 -c \"import os\nprocs = [p for p in os.listdir('/proc') if p.isdigit()]\nfds = rss = 0\n"
                "for p in procs:\n    try:\n        fds += len(os.listdir('/proc/%s/fd' % p))\n"
                "        rss += sum(int(l.split()[1]) for l in open('/proc/%s/status' % p) if l.startswith('VmRSS:'))\n"
                "    except OSError:\n        pass\nprint(len(procs), fds, rss // 1024)\"")


def machine():
    """Processes, open files and resident memory of everything running on the two soak hosts."""
    totals = {"processes": 0, "open_files": 0, "rss_mib": 0}
    for node in ("node1", "node2"):
        for key, value in zip(totals, ssh(node, HOST_FIGURES).split()):
            totals[key] += int(value)
    return totals


def main():
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    clean()
    start = machine()
    ssh("node1", WRITER % "redis")
    ssh("node1", COUNTER.format(engine="podman", name="counter"))
    time.sleep(3)
    before = {"counter": 0, "acked": 0}
    downtimes, failures, where = [], [], "node1"
    started = time.monotonic()
    for index in range(total):
        target = "node2" if where == "node1" else "node1"
        proc = migrate("redis", source=where, target=target)
        if proc.returncode != 0:
            failures.append("#%d %s->%s: %s" % (index + 1, where, target, proc.stdout[-300:]))
        try:
            placed = check(before)
        except Broken as exc:
            failures.append("#%d: %s" % (index + 1, exc))
            break
        where = placed["redis"]
        before["acked"] = int(ssh(where, "podman exec redis cat /tmp/acked"))
        for line in proc.stdout.splitlines():
            if "downtime" in line and "redis:" in line:
                downtimes.append(float(line.split("downtime ")[1].split(" s")[0]))
        print("%d/%d %s acked=%d failures=%d" % (index + 1, total, where, before["acked"], len(failures)), flush=True)
    ssh(where, "podman exec redis redis-cli PING")
    time.sleep(5)
    clean()
    time.sleep(5)
    end = machine()
    write(total, len(downtimes), failures, downtimes, start, end, time.monotonic() - started, before["acked"])


def write(total, done, failures, downtimes, start, end, seconds, acked):
    rows = ["| measure | before | after |", "|---|---|---|"]
    rows += ["| %s | %d | %d |" % (key, start[key], end[key]) for key in start]
    text = (
        "`python tests/reliability/soak.py %d` on %s: a Redis whose in-container client writes without pause,\n"
        "migrated node1 <-> node2 %d times in %.0f min (%d acknowledged writes by the end, every one checked\n"
        "present after each migration). Migrations completed: %d; failures: %d%s. Downtime median %.2f s, max %.2f s.\n"
        "The two hosts (node1 + node2, counted inside their own pid namespaces) before the first and after the\n"
        "last migration, with no container on them both times (what a leak would leave behind):\n\n%s\n") % (
        total, time.strftime("%Y-%m-%d"), total, seconds / 60, acked, done, len(failures),
        (" (first: %s)" % failures[0].replace("\n", " ")[:300]) if failures else "",
        statistics.median(downtimes) if downtimes else 0, max(downtimes) if downtimes else 0, "\n".join(rows))
    print(text)
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from transfer import write_section  # pylint: disable=import-outside-toplevel
    write_section("Soak", text, path=os.path.join(ROOT, "docs", "reliability.md"),
                  heading="# Reliability\n\nFault injection and soak results; each section says how to reproduce it.\n")


if __name__ == "__main__":
    main()
