"""The kernel-upgrade story (issue #17), end to end in the VM lab: the example playbook drains a guest
booted on Debian 12's kernel, installs a newer one, reboots it into that kernel, uncordons it and
rebalances, so a container crosses from one kernel to the other with its state. It runs last: it leaves
node1 on the newer kernel."""
import os
import subprocess

from lab import ROOT, images_dir, memory_tree, migrate, playbook, read_counter, recap, ssh
from test_vm_lab import said, whole

FERRY_LAB = os.path.join(ROOT, "roles", "lab", "files", "ferry-lab")


PORTS = {"alpha": 7501, "beta": 7511, "ticker": 7521}


def trees(node):
    return sorted(ssh(node, "ls /run/ferry/trees").split())


def count(node, name):
    """A workload's count, once a memory tree's bytes are checked to be exactly what its writes made them."""
    return read_counter(node, PORTS[name]) if name == "ticker" else whole(node, PORTS[name], 48)[0]


def test_a_host_gets_a_newer_kernel_while_its_containers_run_on_and_some_come_back(clean, tmp_path):
    old = ssh("node1", "uname -r")
    assert old == ssh("node2", "uname -r") and old.startswith("6.1.")
    # The guests have no route out: the package comes from this machine, as from a fleet's own mirror.
    deb = subprocess.run([FERRY_LAB, "kernel-package"], capture_output=True, text=True, check=True).stdout.strip()
    memory_tree("node1", "alpha", 7501, 48, dirty=0.5)
    memory_tree("node1", "beta", 7511, 48)
    ssh("node1", "ferry-lab spawn-tree ticker python3 /usr/local/lib/ferry-lab/ferry_counter.py 7521")
    before = {name: count("node1", name) for name in PORTS}

    proc = playbook("ferry.migrate.kernel_upgrade", check=True, extra={
        "kernel_upgrade_host": "node1", "kernel_upgrade_debs": [deb], "fleet_engines": ["criu"], "rebalance_threshold": 0.01,
        "fleet_state_dir": str(tmp_path)})
    text = said(proc)

    new = ssh("node1", "uname -r")
    assert new.startswith("6.12.") and ssh("node2", "uname -r") == old, (old, new)
    assert "kernel %s -> %s" % (old, new) in text
    # Drained onto node2 (6.1), then the rebalance brought some back to node1, on the newer kernel.
    assert "drained: nothing runs there" in text
    back, stayed = trees("node1"), trees("node2")
    assert back and stayed and sorted(back + stayed) == ["alpha.pid", "beta.pid", "ticker.pid"], (back, stayed)
    where = {name: ("node1" if name + ".pid" in back else "node2") for name in before}
    after = {name: count(where[name], name) for name in PORTS}
    for name, then in before.items():
        assert after[name] > then, "%s started over: %d before, %d after" % (name, then, after[name])
    assert images_dir("node1") == "" and images_dir("node2") == ""
    assert recap(proc.stdout)["node1"]["failed"] == 0

    # And back from the newer kernel to the older one.
    name = back[0][:-len(".pid")]
    migrate(name, "node1", "node2", migrate_engine="criu")
    assert count("node2", name) > after[name]
    assert images_dir("node1") == "" and images_dir("node2") == ""
