"""Run tokens: this machine, the run's PID, a random part; the journal knows a dead run of this machine."""
import os
import re

from ansible_collections.ferry.migrate.plugins.lookup.run_token import make_token
from ansible_collections.ferry.migrate.plugins.module_utils import _journal


def test_token_names_this_run_and_differs_each_time():
    token = make_token()
    controller, pid, random = token.split(":")
    assert controller == re.sub(r"[^A-Za-z0-9_.-]", "-", os.uname().nodename) and int(pid) == os.getpid()
    assert len(random) == 16 and make_token() != token
    assert not _journal._dead_here(token)  # this process lives
    assert _journal._dead_here("%s:%d:%s" % (controller, 2 ** 22 + 1, random))
    assert not _journal._dead_here("elsewhere:%d:%s" % (2 ** 22 + 1, random)) and not _journal._dead_here("any string")
