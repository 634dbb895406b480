"""The VM lab (issue #17): guests on Debian's cloud kernel, where CRIU can track dirty memory, and
Ferry migrating between them over real SSH as between any hosts."""
import time

from lab import images_dir, memory_state, memory_tree, migrate, module, read_counter, ssh


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
