"""Runs last: the lab goes away completely, and a second teardown changes nothing."""
import subprocess

import pytest

from lab import LAB, LAB_VARS, playbook, recap

pytestmark = pytest.mark.integration


def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_teardown_leaves_nothing(lab):
    playbook("ferry.migrate.lab", extra={"lab_state": "absent"}, check=True)
    assert LAB_VARS["lab_prefix"] + "-" not in run("ip", "netns", "list")
    assert LAB_VARS["lab_prefix"] + "-ctl" not in run("ip", "-o", "link")
    assert "ferry-lab node-init" not in run("ps", "-eo", "args")
    assert "sshd -D -e -f /etc/ssh/sshd_config" not in run("ps", "-eo", "args")
    assert "dockerd" not in run("ps", "-eo", "comm")
    assert LAB not in run("findmnt", "-rn", "-o", "TARGET")
    assert subprocess.run(["test", "-e", LAB], check=False).returncode == 1
    again = playbook("ferry.migrate.lab", extra={"lab_state": "absent"}, check=True)
    assert recap(again.stdout)["localhost"]["changed"] == 0
