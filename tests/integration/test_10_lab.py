"""Foundation on the real lab: idempotent lab, CRIU proven on every host, a pycriu round trip."""
import os
import time

import pytest

from lab import LAB, module, playbook, read_counter, recap, ssh

pytestmark = pytest.mark.integration


def test_lab_second_run_changes_nothing(lab):
    proc = playbook("ferry.migrate.lab", extra={"lab_hosts": len(lab)}, check=True)
    counts = recap(proc.stdout)
    assert set(counts) == {"localhost", *lab}
    assert {host: c["changed"] for host, c in counts.items()} == dict.fromkeys(counts, 0)


def test_lab_refuses_a_host_count_out_of_range(lab):
    proc = playbook("ferry.migrate.lab", extra={"lab_hosts": 9}, check=False)
    assert proc.returncode != 0
    assert "lab_hosts must be between 1 and 8, not 9" in proc.stdout


def test_hosts_are_isolated(lab):
    assert ssh("node1", "hostname") == "node1"
    # Private pid namespace: node1 sees none of node2's processes; private /var/lib/ferry and /root.
    assert "node-init 2" not in ssh("node1", "ps -eo args")
    ssh("node2", "touch /var/lib/ferry/only-on-node2")
    try:
        assert ssh("node1", "ls /var/lib/ferry") == ""
    finally:
        ssh("node2", "rm /var/lib/ferry/only-on-node2")
    assert ssh("node1", "ls %s 2>/dev/null | wc -l" % LAB) == "0"


def test_criu_info_on_every_host(lab):
    digests = set()
    for node in lab:
        facts = module(node, "ferry.migrate.criu_info")["ansible_facts"]["ferry_criu"]
        assert facts["ready"], facts["reasons"]
        assert tuple(int(p) for p in facts["version"].split(".")[:2]) >= (4, 2)
        assert facts["check"] and facts["probe"]["ok"] and facts["probe"]["seconds"] < 5
        assert facts["kernel"] == os.uname().release
        assert ("pre_copy" in facts["methods"]) == facts["features"]["mem_dirty_track"]
        assert ("post_copy" in facts["methods"]) == (facts["features"]["lazy_pages"] and facts["pipe_max_size"] >= 4 << 20)
        assert facts["methods"][-1] == "stop_and_copy"
        assert facts["memory"]["available_bytes"] > 0 and facts["images_dir_free_bytes"] > 0
        digests.add(facts["cpuinfo_digest"])
    assert len(digests) == 1  # one machine, one CPU


def test_criu_info_names_a_missing_criu(lab):
    facts = module("node1", "ferry.migrate.criu_info", criu_path="/nonexistent/criu")["ansible_facts"]["ferry_criu"]
    assert not facts["ready"]
    assert facts["reasons"] == ["no CRIU binary found at /nonexistent/criu"]


def test_pycriu_round_trip_of_a_process_tree(clean):
    ssh("node3", "ferry-lab spawn-tree roundtrip python3 /usr/local/lib/ferry-lab/ferry_counter.py 7101")
    time.sleep(0.5)
    before = read_counter("node3", 7101)
    ckpt = module("node3", "ferry.migrate.checkpoint", engine="criu", container="roundtrip")
    assert ckpt["changed"] and ckpt["manifest"]["stats"]["pages_written"] > 0
    assert ssh("node3", "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 7101))\"", check=False) == ""
    info = module("node3", "ferry.migrate.checkpoint_info", checkpoint_id="roundtrip")["checkpoints"][0]
    assert info["verified"] and info["processes"][0]["pid"] == 1 and info["memory_bytes"] > 0
    restored = module("node3", "ferry.migrate.restore", checkpoint_id="roundtrip", resume=True)
    assert restored["changed"] and restored["container"]["state"] == "running"
    assert read_counter("node3", 7101) >= before
    again = module("node3", "ferry.migrate.restore", checkpoint_id="roundtrip", resume=True)
    assert not again["changed"]
