"""Fleet jobs on the 4-host lab: drains and rebalances of real containers, an interrupted drain."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from lab import BIN, GRANTS, INVENTORY, ROOT, _env, count, images_dir, playbook, recap, redis_mget, ssh, start_counter, start_redis, where

pytestmark = pytest.mark.integration
NODES = ["node1", "node2", "node3", "node4"]


def load_node1():
    """Four counters and two Redis on node1; returns what each must still show after moving."""
    state = {"c%d" % i: start_counter("node1", "c%d" % i) for i in range(1, 5)}
    for name in ("redis1", "redis2"):
        state[name] = start_redis("node1", name, 2000)
    return state


def check_state_carried(state):
    """Every container runs exactly once, nowhere stopped, with its state; returns name -> node."""
    found = where(NODES)
    assert sorted(found) == sorted(state), found
    placed = {}
    for name, entries in found.items():
        assert len(entries) == 1 and entries[0].endswith(" running"), "%s: %s" % (name, entries)
        node = entries[0].split()[0]
        placed[name] = node
        if name.startswith("redis"):
            assert ssh(node, redis_mget(name, 2000)) == state[name], "%s lost keys" % name
        else:
            assert count(node, name) > state[name], "%s was reset" % name
    for node in NODES:
        # The key first: a grant left behind also leaves its program in the images directory.
        assert "ferry-transfer" not in ssh(node, "cat %s 2>/dev/null; echo" % GRANTS), "a transfer key left on %s" % node
        assert images_dir(node) in ("", ".cordoned"), "checkpoint images left on %s" % node
    return placed


def task_runs(stdout, task):
    """The result lines of each run of task ``task`` in a playbook's output."""
    return re.findall(r"^TASK \[[^\]]*: %s\][^\n]*\n(.*?)(?=^TASK \[|^PLAY |\Z)" % re.escape(task), stdout, re.S | re.M)


def drain(tmp_path, *args, **extra):
    return playbook("ferry.migrate.drain", *args, extra=dict(drain_hosts="node1", fleet_state_dir=str(tmp_path), **extra))


def test_drain_empties_a_host_and_keeps_every_state(clean, tmp_path):
    state = load_node1()
    plan = drain(tmp_path, "--check")
    assert plan.returncode == 0 and "Would move: 6 migration(s)" in plan.stdout
    assert "Could not match supplied host pattern" not in plan.stdout + plan.stderr
    assert "forks is" not in plan.stdout  # the lab's ansible.cfg: forks = 10
    assert "A wave has up to 2 moves but forks is 1, so" in " ".join(drain(tmp_path, "--check", "-f", "1").stdout.split())
    assert images_dir("node1") == ""  # check mode wrote no cordon
    assert sorted(where(NODES)) == sorted(state) and all(n == ["node1 running"] for n in where(NODES).values())

    proc = drain(tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    placed = check_state_carried(state)
    assert "node1" not in placed.values()
    assert "node1 drained: nothing runs there." in proc.stdout
    assert ssh("node1", "cat /var/lib/ferry/.cordoned")
    reports = os.listdir(os.path.join(tmp_path, "reports"))
    assert sorted(name.rsplit("-", 1)[-1] for name in reports if name.endswith(".png")) == ["timeline.png", "utilisation.png"]
    report = json.load(open(os.path.join(tmp_path, "reports", [n for n in reports if n.endswith(".json")][0])))
    assert report["migrated"] == 6 and report["stranded"] == 0
    assert max(m["wave"] for m in report["plan"]["moves"]) == report["waves"] >= 3  # 2 out of node1 per wave
    # Each wave's hosts were asked once, by the wave's moves side by side, and no preflight asked again.
    waves = task_runs(proc.stdout, "Move | the wave's hosts, asked once, side by side")
    asks = [re.findall(r"^ok: \[([^\]\s]+) -> ([A-Za-z0-9_.-]+)", lines, re.M) for lines in waves]
    assert len(asks) == report["waves"] and all(len(wave) == len({ask[1] for ask in wave}) >= 2 for wave in asks), waves
    sizes = [[m["wave"] for m in report["plan"]["moves"]].count(w) for w in sorted({m["wave"] for m in report["plan"]["moves"]})]
    assert max(sizes) > 1 and [len({ask[0] for ask in wave}) for wave in asks] == [min(n, len(wave)) for n, wave in zip(sizes, asks)], waves
    for task in ("Preflight | the container on the source", "Preflight | the container on the target (must not exist) and its images"):
        assert not re.search(r"^(ok|changed|failed|fatal)", "".join(task_runs(proc.stdout, task)), re.M), task

    again = drain(tmp_path)  # already drained: nothing changes
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-3000:]
    assert drain(tmp_path, drain_state="uncordoned").returncode == 0
    assert images_dir("node1") == ""


def test_rebalance_evens_out_a_skewed_fleet(clean, tmp_path):
    state = {name: start_redis("node1", name, 2000) for name in ("redis1", "redis2", "redis3")}
    state.update({"c1": start_counter("node1", "c1")})
    proc = playbook("ferry.migrate.rebalance", extra=dict(rebalance_threshold=0.05, fleet_state_dir=str(tmp_path)))
    assert proc.returncode == 0, proc.stdout[-4000:]
    before, after = map(float, re.search(r"imbalance before ([\d.]+), after ([\d.]+)", proc.stdout).groups())
    assert before > 0.05 >= after, (before, after)
    placed = check_state_carried(state)
    assert len(set(placed.values())) >= 2
    again = playbook("ferry.migrate.rebalance", extra=dict(rebalance_threshold=0.05, fleet_state_dir=str(tmp_path)))
    assert "nothing to do" in again.stdout


def test_killed_drain_finishes_when_run_again(clean, tmp_path):
    state = load_node1()
    journal = os.path.join(tmp_path, "journal-drain-node1.json")
    argv = [os.path.join(BIN, "ansible-playbook"), "ferry.migrate.drain", "-i", INVENTORY,
            "-e", json.dumps({"drain_hosts": "node1", "fleet_state_dir": str(tmp_path)})]
    proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Killed while a move to node2 holds its one-time key there, in the authorized_keys of the user that is
    # not root (the realistic fleet's): the run after it must revoke the key where it was granted.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if "ferry-transfer" in ssh("node2", "cat %s 2>/dev/null; echo" % GRANTS):
            break
        time.sleep(0.2)
    time.sleep(1)  # into that move's checkpoint or restore: the key goes only when the move is over
    assert proc.poll() is None, "the drain ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = json.load(open(journal))["entries"]
    assert any(e["status"] == "migrating" for e in interrupted.values()), interrupted

    rerun = drain(tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert "recovered" in rerun.stdout
    placed = check_state_carried(state)
    assert "node1" not in placed.values()
    final = json.load(open(journal))["entries"]
    assert all(e["status"] in ("migrated", "rolled_back") for e in final.values()), final
    # Nothing migrated twice: one migrated entry per container, at most.
    migrated = [e["container"] for e in final.values() if e["status"] == "migrated"]
    assert len(migrated) == len(set(migrated)) == 6
