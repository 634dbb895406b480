"""Fault-injection matrix on the lab: every fault, N times, with a Redis taking writes and a counter.

Usage: python tests/reliability/matrix.py [N] [FAULT...]      (the lab must be up with 4 hosts)
After every run: each container runs on exactly one host, the counter never went back, every
acknowledged Redis write is there, no checkpoint images, half-restored containers or one-time keys
are left, and a failed migration names its phase and its cause. The tally goes to docs/reliability.md.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from lab import BIN, COUNTER, FABRIC, GRANTS, INVENTORY, RESET, ROOT, _env, count, playbook, ssh, ssh_argv, where  # noqa: E402  pylint: disable=wrong-import-position

NODES = ["node1", "node2", "node3", "node4"]
FAULTS_DIR = os.path.join(HERE, "faults")
IMAGES = "/var/cache/ferry/lab-images"  # a fault may remove an image from a host: every run starts with both
# Redis with a client inside the container, so the client moves with it: it writes w:0, w:1, ... and
# records in /tmp/acked the last index Redis acknowledged.
WRITER = ("podman run -d --name %s --network none localhost/ferry/redis:lab sh -c "
          "'redis-server --save \"\" --appendonly no --daemonize yes; i=0; "
          "while :; do redis-cli SET w:$i $i >/dev/null 2>&1 && echo $i > /tmp/acked.t && mv /tmp/acked.t /tmp/acked && i=$((i+1)); done'")
# Only the fault's tmpfs: /var/lib/ferry is itself a private bind mount on lab hosts.
UNDO_FULL = "findmnt -n -o SOURCE /var/lib/ferry | grep -qx ferry-full && umount /var/lib/ferry; "
MISSING = ("local m = 0 for i = 0, tonumber(ARGV[1]) do if redis.call('EXISTS', 'w:' .. i) == 0 then m = m + 1 end end return m")


class Broken(AssertionError):
    pass


def links_up():
    """Every host's fabric port up, and each host answering SSH again: right after its link comes
    back, a connection can still fail with "No route to host" until the neighbour entry recovers."""
    for node in NODES:
        subprocess.run(["ip", "-n", FABRIC, "link", "set", "n" + node[4:], "up"], check=False)
    for node in NODES:
        for _attempt in range(30):
            if subprocess.run(ssh_argv(node, "-o", "ConnectTimeout=2") + ["true"],
                              capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.5)


def clean():
    links_up()
    for node in NODES:
        ssh(node, UNDO_FULL + "tc qdisc del dev eth0 root 2>/dev/null; " + RESET + "; "
            "for i in busybox redis; do podman image exists localhost/ferry/$i:lab || podman load -q -i " + IMAGES + "/$i.tar; done")


def start_workload(node="node1"):
    ssh(node, WRITER % "redis")
    ssh(node, COUNTER.format(engine="podman", name="counter"))
    time.sleep(2)
    return {"counter": count(node, "counter"), "acked": acked(node, "redis")}


def acked(node, name):
    return int(ssh(node, "podman exec %s cat /tmp/acked" % name))


def check(before, expect_phase=None, expect_cause=None, output="", unreachable=None):
    """The invariants after any run, whatever happened. On a host that was ``unreachable`` when Ferry
    cleaned up, its one-time key may remain, but only with an expiry time."""
    found = where(NODES)
    for name in ("redis", "counter"):
        entries = found.get(name, [])
        running = [e for e in entries if e.endswith(" running")]
        if len(running) != 1 or len(entries) != 1:
            raise Broken("%s is not running exactly once: %s" % (name, entries))
    node = {name: found[name][0].split()[0] for name in ("redis", "counter")}
    now = count(node["counter"], "counter")
    if now < before["counter"]:
        raise Broken("the counter went back: %d -> %d" % (before["counter"], now))
    last = acked(node["redis"], "redis")
    missing = int(ssh(node["redis"], "podman exec redis redis-cli EVAL \"%s\" 0 %d" % (MISSING, last)))
    if last < before["acked"] or missing:
        raise Broken("acknowledged writes lost: %d of 0..%d missing (acked before: %d)" % (missing, last, before["acked"]))
    for host in NODES:
        left = ssh(host, "ls -A /var/lib/ferry; grep -c ferry-transfer: %s 2>/dev/null; true" % GRANTS).split()
        if host == unreachable and ssh(host, "grep ferry-transfer: %s | grep -vc expiry-time=; true" % GRANTS) == "0":
            left = [x for x in left if not re.fullmatch(r"\.ferry-wire-.*\.py|1", x)]
        if [x for x in left if x not in ("0", ".cordoned")]:
            raise Broken("left on %s: %s" % (host, left))
    if expect_phase and not re.search(r"failed in phase %s: .*%s" % (expect_phase, expect_cause), output, re.S):
        raise Broken("the error does not name phase %s and cause %r: %s" % (expect_phase, expect_cause, _failure_line(output)))
    return node


def _failure_line(output):
    lines = [line for line in output.splitlines() if "failed in phase" in line or "fatal:" in line or "ERROR" in line]
    return (lines or ["no failure message"])[-1][-700:]


def migrate(container, hooks=None, source="node1", target="node2"):
    extra = dict(migrate_container=container, migrate_source=source, migrate_target=target, ferry_lab_fabric=FABRIC)
    for key, name in (hooks or {}).items():
        extra[key] = os.path.join(FAULTS_DIR, name)
    return playbook("ferry.migrate.migrate", extra=extra)


def single(hook, phase, cause, unreachable=None):
    """A migration of the Redis under writes, with a fault hook; it must roll back and say why."""
    def run():
        before = start_workload()
        proc = migrate("redis", {hook[0]: hook[1]})
        if proc.returncode == 0:
            raise Broken("the migration succeeded despite the fault")
        after_fault()
        try:
            node = check(before, phase, cause, proc.stdout, unreachable)
        except Broken as exc:
            with open("/tmp/ferry-matrix-failure-%d.log" % time.time(), "w") as handle:
                handle.write(proc.stdout)  # for whoever investigates
            raise Broken("%s (Ferry said: %s)" % (exc, _failure_line(proc.stdout))) from None
        if node["redis"] != "node1":
            raise Broken("redis is on %s, not back on node1" % node["redis"])
    return run


def after_fault():
    """Undo the fault's own damage (not Ferry's): links up, file systems unmounted, squatters gone."""
    links_up()
    for node in NODES:
        ssh(node, UNDO_FULL + "tc qdisc del dev eth0 root 2>/dev/null; "
            "podman ps -a --filter status=created --format '{{.Names}}' | xargs -r podman rm >/dev/null; true")
    time.sleep(1)


def name_conflict():
    before = start_workload()
    ssh("node2", "podman create --name redis localhost/ferry/busybox:lab true")
    proc = migrate("redis")
    if proc.returncode == 0 or "a container named redis must not exist on node2" not in " ".join(proc.stdout.split()):
        raise Broken("the preflight did not refuse the name conflict: %s" % _failure_line(proc.stdout))
    ssh("node2", "podman rm redis")
    check(before)


def drain_argv(state_dir):
    return [os.path.join(BIN, "ansible-playbook"), "ferry.migrate.drain", "-i", INVENTORY,
            "-e", json.dumps({"drain_hosts": "node1", "fleet_state_dir": state_dir})]


def controller_killed():
    """SIGKILL the drain in its first wave, then run the same command again."""
    before = start_workload()
    state = "/tmp/ferry-matrix-state"
    subprocess.run(["rm", "-rf", state], check=True)
    proc = subprocess.Popen(drain_argv(state), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    journal = os.path.join(state, "journal-drain-node1.json")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(journal) and "migrating" in open(journal).read():
            break
        time.sleep(0.1)
    time.sleep(0.5 + (time.monotonic() * 1000 % 3000) / 1000)  # somewhere in the first wave
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(drain_argv(state), cwd=ROOT, env=_env(), capture_output=True, text=True, check=False)
    with open("/tmp/ferry-matrix-rerun-%d.log" % time.time(), "w") as handle:
        handle.write(rerun.stdout)  # for whoever investigates a failure below
    if rerun.returncode != 0:
        raise Broken("the re-run failed: %s" % _failure_line(rerun.stdout))
    node = check(before)
    if "node1" in node.values():
        raise Broken("node1 is not empty: %s" % node)
    entries = json.load(open(journal))["entries"]
    moved = [e["container"] for e in entries.values() if e["status"] == "migrated"]
    if sorted(moved) != ["counter", "redis"]:
        raise Broken("migrated twice or not at all: %s" % moved)


def concurrent_drains():
    """Two drains of node1 started together: one holds the job, the other is refused, nothing breaks."""
    before = start_workload()
    state = "/tmp/ferry-matrix-state"
    subprocess.run(["rm", "-rf", state], check=True)
    procs = [subprocess.Popen(drain_argv(state), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for dummy in range(2)]
    outputs = [p.communicate()[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    refused = [o for o in outputs if "lock: job drain-node1 is running" in o]
    if codes[0] != 0 or (codes[1] != 0 and not refused):
        raise Broken("exit codes %s: %s" % (codes, [_failure_line(o) for o in outputs]))
    node = check(before)
    if "node1" in node.values():
        raise Broken("node1 is not empty: %s" % node)


FAULTS = {
    "transfer killed midway": single(("migrate_before_transfer_tasks", "transfer_killed.yml"), "transfer", ""),
    "target unreachable after checkpoint": single(("migrate_before_transfer_tasks", "target_unreachable.yml"), "transfer", "",
                                                  unreachable="node2"),
    "target restore fails": single(("migrate_before_restore_tasks", "restore_fails.yml"), "restore", "already in use"),
    "checkpoint corrupted in transit": single(("migrate_before_restore_tasks", "corrupt_in_transit.yml"), "restore", "does not verify"),
    "target disk full": single(("migrate_before_transfer_tasks", "disk_full.yml"), "transfer", "[Nn]o space left"),
    "image missing on the target": single(("migrate_before_restore_tasks", "image_missing.yml"), "restore", "is not on this host"),
    "CPU compatibility check fails": single(("migrate_before_restore_tasks", "cpu_mismatch.yml"), "restore", "CPU"),
    "name conflict on the target": name_conflict,
    "controller killed mid-drain, re-run": controller_killed,
    "two drains of one host at once": concurrent_drains,
}


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    chosen = sys.argv[2:] or list(FAULTS)
    tally = {}
    for name in chosen:
        results = tally.setdefault(name, {"passed": 0, "failed": 0, "seconds": 0.0, "errors": []})
        for attempt in range(runs):
            clean()
            started = time.monotonic()
            try:
                FAULTS[name]()
                results["passed"] += 1
                verdict = "ok"
            except Exception as exc:  # pylint: disable=broad-except
                results["failed"] += 1
                results["errors"].append(str(exc)[:300])
                verdict = "FAILED: %s" % str(exc)[:300]
                traceback.print_exc()
            results["seconds"] += time.monotonic() - started
            print("%s #%d: %s (%.0f s)" % (name, attempt + 1, verdict, time.monotonic() - started), flush=True)
    clean()
    write(tally, runs)


def write(tally, runs):
    lines = ["| fault | runs | held | broke | mean s | first failure |", "|---|---|---|---|---|---|"]
    for name, r in tally.items():
        total = r["passed"] + r["failed"]
        first = (r["errors"] or [""])[0].replace("|", "/").replace("\n", " ")
        lines.append("| %s | %d | %d | %d | %.0f | %s |" % (name, total, r["passed"], r["failed"], r["seconds"] / max(total, 1), first))
    table = "\n".join(lines)
    print(table)
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from transfer import write_section  # pylint: disable=import-outside-toplevel
    write_section("Fault matrix", (
        "`python tests/reliability/matrix.py %d` on %s, 4-host lab. Every run migrates (or drains) a Redis whose\n"
        "in-container client writes continuously, beside a counter, and injects one fault at the phase where\n"
        "it hurts most (hooks in tests/reliability/faults). A run *holds* when afterwards each container runs\n"
        "on exactly one host, the counter never went back, every acknowledged write is in Redis, nothing is\n"
        "left behind (images, containers, one-time keys) and the failure names its phase and cause.\n\n%s\n")
        % (runs, time.strftime("%Y-%m-%d"), table), path=os.path.join(ROOT, "docs", "reliability.md"),
        heading="# Reliability\n\nFault injection and soak results; each section says how to reproduce it.\n")


if __name__ == "__main__":
    main()
