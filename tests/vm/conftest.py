"""The VM lab: two QEMU guests booting Debian's cloud kernel (which tracks dirty memory), beside the
namespace lab (a directory, network and name prefix of its own). `make vm-test` runs these."""
import os
import sys

import pytest

os.environ.setdefault("FERRY_LAB_DIR", "/var/lib/ferry-lab-vm")
os.environ.setdefault("FERRY_LAB_NET", "10.197.0")
os.environ.setdefault("FERRY_LAB_PREFIX", "ferryvm")
os.environ["FERRY_LAB_KIND"] = "vm"
os.environ["FERRY_LAB_FLEET"] = "simple"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from lab import RESET, lab_session, ssh  # noqa: E402  pylint: disable=wrong-import-position

NODES = ["node1", "node2"]


@pytest.fixture(scope="session")
def vm_lab():
    """The VM lab, up; torn down at the end."""
    yield from lab_session(NODES)


@pytest.fixture
def clean(vm_lab):
    for node in vm_lab:
        ssh(node, RESET)
    return vm_lab


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(call):
    """A failed test's report shows the end of each guest's serial console and boot loop: the lab is torn
    down after a failed run, and a guest that did not come back says why only there."""
    report = yield
    if report.failed and call.when == "call":
        for node in NODES:
            for log in ("console.log", "qemu.log"):
                path = os.path.join(os.environ["FERRY_LAB_DIR"], node, log)
                try:
                    with open(path, errors="replace") as handle:
                        tail = handle.readlines()[-60:]
                except OSError as err:
                    tail = ["(%s)\n" % err]
                report.sections.append(("%s %s, last lines" % (node, log), "".join(tail)))
    return report
