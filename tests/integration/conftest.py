import os

import pytest

# The tests run on a realistic fleet (a simple lab left by make demo is made anew as one).
os.environ.setdefault("FERRY_LAB_FLEET", "realistic")
from lab import RESET, lab_session, ssh  # noqa: E402  pylint: disable=wrong-import-position

NODES = ["node1", "node2", "node3", "node4"]


@pytest.fixture(scope="session")
def lab():
    """The lab, up. The last test tears it down and checks that nothing is left; a run that fails or is
    interrupted before then tears it down here."""
    yield from lab_session(NODES)


@pytest.fixture
def clean(lab):
    """No containers, trees or checkpoints on any lab host before a test."""
    for node in lab:
        ssh(node, RESET)
    return lab
