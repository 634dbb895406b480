import os

import pytest

# The tests run on a realistic fleet (a simple lab left by make demo is made anew as one).
os.environ.setdefault("FERRY_LAB_FLEET", "realistic")
from lab import RESET, playbook, ssh  # noqa: E402  pylint: disable=wrong-import-position

NODES = ["node1", "node2", "node3", "node4"]


@pytest.fixture(scope="session")
def lab():
    """The lab, up. The last test tears it down and checks that nothing is left; a run that fails or is
    interrupted before then tears it down here (FERRY_LAB_KEEP=1 keeps it, to run tests again)."""
    try:
        playbook("ferry.migrate.lab", extra={"lab_hosts": 4}, check=True)
        yield NODES
    finally:
        if os.environ.get("FERRY_LAB_KEEP") != "1":
            playbook("ferry.migrate.lab", extra={"lab_state": "absent"})


@pytest.fixture
def clean(lab):
    """No containers, trees or checkpoints on any lab host before a test."""
    for node in lab:
        ssh(node, RESET)
    return lab
