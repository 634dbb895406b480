"""Runs last: the lab goes away completely, and a second teardown changes nothing."""
import os
import subprocess

import pytest

from lab import LAB, LAB_VARS, playbook, recap, ssh

pytestmark = pytest.mark.integration


def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def pid_namespaces():
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found.add(os.readlink("/proc/%s/ns/pid" % pid))
        except OSError:
            continue
    return found


def test_teardown_leaves_nothing(lab):
    # Whatever ran on a lab host (sshd, dockerd, containers, shims) ran in that host's pid namespace.
    hosts = {ssh(node, "readlink /proc/1/ns/pid") for node in lab}
    assert len(hosts) == len(lab) and not hosts & {os.readlink("/proc/self/ns/pid")}
    playbook("ferry.migrate.lab", extra={"lab_state": "absent"}, check=True)
    assert not hosts & pid_namespaces(), "processes of the lab hosts are left"
    assert LAB_VARS["lab_prefix"] + "-" not in run("ip", "netns", "list")
    assert LAB_VARS["lab_prefix"] + "-ctl" not in run("ip", "-o", "link")
    assert LAB not in run("findmnt", "-rn", "-o", "TARGET")
    assert subprocess.run(["test", "-e", LAB], check=False).returncode == 1
    again = playbook("ferry.migrate.lab", extra={"lab_state": "absent"}, check=True)
    assert recap(again.stdout)["localhost"]["changed"] == 0
