import pytest

from lab import playbook, ssh

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
        ssh(node, "podman rm --force --time 0 --all >/dev/null; for f in /run/ferry/trees/*.pid; do "
                  "[ -e \"$f\" ] && kill -9 $(cat \"$f\") 2>/dev/null; rm -f \"$f\"; done; "
                  "rm -rf /var/lib/ferry/* /var/lib/ferry/.[!.]*; sed -i '/ferry-transfer:/d' /root/.ssh/authorized_keys 2>/dev/null; true")
    return lab
