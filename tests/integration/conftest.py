import pytest

from lab import RESET, playbook, ssh

NODES = ["node1", "node2", "node3", "node4"]


@pytest.fixture(scope="session")
def lab():
    """The lab, up (the last test tears it down and checks nothing is left)."""
    playbook("ferry.migrate.lab", extra={"lab_hosts": 4}, check=True)
    return NODES


@pytest.fixture
def clean(lab):
    """No containers, trees or checkpoints on any lab host before a test."""
    for node in lab:
        ssh(node, RESET)
    return lab
