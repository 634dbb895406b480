"""The VM lab (issue #17): guests on Debian's cloud kernel, where CRIU can track dirty memory, and
Ferry migrating between them over real SSH as between any hosts."""
import time

from lab import images_dir, migrate, module, read_counter, ssh


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
