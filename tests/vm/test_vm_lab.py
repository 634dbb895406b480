"""The VM lab (issue #17): guests on Debian's cloud kernel, where CRIU can track dirty memory, and
Ferry migrating between them over real SSH as between any hosts."""
import os
import re
import sys
import time

from lab import containers, images_dir, memory_state, memory_tree, migrate, module, read_counter, ssh

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles", "lab", "files"))
from ferry_memory import expected_digest  # noqa: E402  pylint: disable=wrong-import-position


def said(proc):
    """The play's output with line wrapping undone, to look for phrases in."""
    return " ".join(proc.stdout.split())


def downtime(proc):
    return float(re.search(r"downtime\s+([0-9.]+)\s+s", said(proc)).group(1))


def whole(node, port, mib):
    """The writer's state on ``node``, once its bytes are checked to be exactly what its writes made them."""
    count, digest, writes = memory_state(node, port, writes=True)
    assert digest == expected_digest(mib, writes), "a page of %s's memory is not what its %d writes made it" % (node, writes)
    return count, writes


def test_guests_run_their_own_kernel_which_tracks_dirty_memory(vm_lab):
    for node in vm_lab:
        assert ssh(node, "uname -r").endswith("-cloud-amd64")
        assert ssh(node, "hostname") == node
        facts = module(node, "ferry.migrate.criu_info")["ansible_facts"]["ferry_criu"]
        assert facts["ready"], facts
        assert facts["features"]["mem_dirty_track"] is True, facts
        assert "pre_copy" in facts["methods"], facts
    # This machine's own kernel has no soft-dirty: the guests are the lab where pre-copy can be built.
    assert ssh("node1", "python3 -c \"open('/proc/self/clear_refs', 'w').write('4')\" && echo cleared") == "cleared"


def test_a_process_tree_moves_between_guests(clean):
    ssh("node1", "ferry-lab spawn-tree ticker python3 /usr/local/lib/ferry-lab/ferry_counter.py 7201")
    time.sleep(1)
    before = read_counter("node1", 7201)
    proc = migrate("ticker", "node1", "node2", migrate_engine="criu")
    after = read_counter("node2", 7201)
    assert after > before, "the tree's counter was reset: %d before, %d after" % (before, after)
    assert ssh("node1", "ls /run/ferry/trees") == ""
    assert ssh("node2", "ls /run/ferry/trees") == "ticker.pid"
    assert images_dir("node1") == "" and images_dir("node2") == ""
    assert "ticker: node1 -> node2" in proc.stdout


PAGES_WRITTEN = ("/usr/bin/python3 -c \"import sys, pycriu; "
                 "print(pycriu.images.load(open(sys.argv[1], 'rb'))['entries'][0]['dump']['pages_written'])\" %s/stats-dump")


def test_a_second_pre_dump_sends_only_what_changed(clean):
    """What pre-copy stands on: with the kernel tracking dirty memory, CRIU's second pre-dump of a tree
    that holds 64 MiB it never changes writes only the pages changed since the first."""
    memory_tree("node1", "holder", 7301, 64)
    pid = ssh("node1", "cat /run/ferry/trees/holder.pid")
    count, digest = memory_state("node1", 7301)
    work = "/var/lib/ferry/pre-dump-test"
    ssh("node1", "mkdir -p %s/1 %s/2 && criu pre-dump --tree %s --images-dir %s/1 --track-mem --log-file pre-dump.log"
        % (work, work, pid, work))
    time.sleep(1)
    ssh("node1", "criu pre-dump --tree %s --images-dir %s/2 --prev-images-dir ../1 --track-mem --log-file pre-dump.log"
        % (pid, work))
    first, second = (int(ssh("node1", PAGES_WRITTEN % ("%s/%d" % (work, n)))) for n in (1, 2))
    assert first >= (64 << 20) // 4096, first
    assert second < first // 20, "the second pre-dump wrote %d pages, the first %d" % (second, first)
    # The tree ran on all along, its bytes untouched.
    later, same = memory_state("node1", 7301)
    assert later > count and same == digest


def test_a_tree_that_keeps_writing_moves_by_pre_copy_with_every_page_and_less_downtime(clean):
    """64 MiB rewritten at 0.5 MiB/s: pre-copy sends it while the tree runs, then only what the last
    iteration left dirty. Stop-and-copy of the same tree, back, must freeze it for longer. (An
    iteration takes about 7 s under emulation: at 1 MiB/s it would leave about as much dirty as the
    8 MiB of converged_bytes, and stop for no progress instead.)"""
    memory_tree("node1", "writer", 7401, 64, dirty=0.5)
    time.sleep(2)
    count, writes = whole("node1", 7401, 64)
    assert writes > 0
    forward = migrate("writer", "node1", "node2", migrate_engine="criu")
    assert "by pre_copy (best possible)" in said(forward), said(forward)[-1500:]
    assert re.search(r"after \d+ pre-copy iterations? \(converged\)", said(forward)), said(forward)[-1500:]
    later, more = whole("node2", 7401, 64)
    assert later > count and more > writes, "the tree did not carry on counting and writing"
    assert ssh("node1", "ls /run/ferry/trees") == "" and ssh("node2", "ls /run/ferry/trees") == "writer.pid"
    assert images_dir("node1") == "" and images_dir("node2") == ""  # every iteration's bundle is gone too
    back = migrate("writer", "node2", "node1", migrate_engine="criu", migrate_method="stop_and_copy")
    whole("node1", 7401, 64)
    assert downtime(forward) < downtime(back), "pre-copy %.3f s, stop-and-copy %.3f s" % (downtime(forward), downtime(back))


def test_a_tree_that_writes_faster_than_pre_copy_sends_stops_it_and_runs_on_as_the_policy_says(clean):
    """Every iteration finds about as much dirty as the one before: no progress. With
    migrate_pre_copy_unconverged abort, the migration fails before the freeze and the tree runs on."""
    memory_tree("node1", "racer", 7402, 16, dirty=64)
    time.sleep(2)
    count, writes = whole("node1", 7402, 16)
    failed = migrate("racer", "node1", "node2", check=False, migrate_engine="criu", migrate_method="pre_copy",
                     migrate_pre_copy_converged_bytes=1 << 20, migrate_pre_copy_unconverged="abort")
    assert failed.returncode != 0
    assert re.search(r"pre-copy stopped without converging: iteration \d+ wrote [0-9.]+ MiB against [0-9.]+ MiB before",
                     said(failed)), said(failed)[-2000:]
    assert "Nothing was frozen: racer runs on node1 as before; nothing is left on node2" in said(failed), said(failed)[-2000:]
    later, more = whole("node1", 7402, 16)
    assert later > count and more > writes
    assert ssh("node2", "ls /run/ferry/trees 2>/dev/null; true") == "" and images_dir("node1") == "" and images_dir("node2") == ""


# Redis in podman, holding 200,000 keys it never changes while it keeps rewriting others and counting.
REDIS_WRITER = ("podman run -d --name redis --network none localhost/ferry/redis:lab sh -c "
                "\"redis-server --save '' --appendonly no & sleep 1; "
                "redis-cli EVAL \\\"for i = 0, 199999 do redis.call('SET', 'key:' .. i, string.rep('v', 200) .. i) end\\\" 0 >/dev/null; "
                "while :; do redis-cli EVAL \\\"for i = 1, 50 do redis.call('SET', 'hot:' .. math.random(20000), string.rep('x', 1000)) end "
                "return redis.call('INCR', 'counter')\\\" 0 >/dev/null; sleep 0.1; done\"")
SAMPLE = "podman exec redis redis-cli MGET " + " ".join("key:%d" % i for i in range(0, 200000, 1000))


def test_a_podman_redis_that_keeps_writing_moves_by_pre_copy_with_every_key_and_less_downtime(clean):
    """Podman pre-checkpoints the running container once, sent while it runs on; its final dump carries
    only what changed since (--with-previous), and the target imports both. Stop-and-copy of the same
    container, back, must freeze it for longer."""
    ssh("node1", REDIS_WRITER)
    for _attempt in range(60):  # the keys are all there once the writer counts
        if ssh("node1", "podman exec redis redis-cli GET counter", check=False).isdigit():
            break
        time.sleep(1)
    keys, count = ssh("node1", SAMPLE), int(ssh("node1", "podman exec redis redis-cli GET counter"))
    assert keys.endswith("v" * 200 + "199000"), keys[-300:]
    forward = migrate("redis", "node1", "node2", migrate_engine="podman")
    assert "by pre_copy (best possible)" in said(forward) and "after 1 pre-copy iteration (max_iterations)" in said(forward), said(forward)[-1500:]
    assert containers("node1") == [] and containers("node2") == ["redis running"]
    assert images_dir("node1") == "" and images_dir("node2") == ""  # the pre-checkpoint's bundle is gone too
    assert ssh("node2", SAMPLE) == keys
    later = int(ssh("node2", "podman exec redis redis-cli GET counter"))
    assert later > count
    back = migrate("redis", "node2", "node1", migrate_engine="podman", migrate_method="stop_and_copy")
    assert ssh("node1", SAMPLE) == keys and int(ssh("node1", "podman exec redis redis-cli GET counter")) > later
    assert downtime(forward) < downtime(back), "pre-copy %.3f s, stop-and-copy %.3f s" % (downtime(forward), downtime(back))
