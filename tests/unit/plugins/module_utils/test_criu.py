import sys

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _criu


@pytest.mark.parametrize("text, expected", [
    ("Version: 4.2.1\n", (4, 2, 1)),
    ("Version: 3.17\nGitID: v3.17\n", (3, 17)),
    ("4.1.1-3", (4, 1, 1)),
    ("criu: command not found", None),
])
def test_parse_version(text, expected):
    assert _criu.parse_version(text) == expected


def test_version_gate():
    assert _criu.parse_version("Version: 4.1.1") < _criu.MIN_VERSION <= _criu.parse_version("Version: 4.2.1")
    assert _criu.version_string((4, 2, 1)) == "4.2.1"


def _criu_without_rpc():
    criu = object.__new__(_criu.Criu)  # argv builders need only the binary
    criu.binary = "/usr/local/sbin/criu"
    return criu


def test_page_server_stays_on_loopback_and_serves_one_dump():
    argv = _criu_without_rpc().page_server_argv("/var/lib/ferry/.pages-c1", 40001, "/var/lib/ferry/.pages-c1/ps.pid")
    assert argv[:2] == ["/usr/local/sbin/criu", "page-server"]
    assert argv[argv.index("--address") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "40001"
    assert "--daemon" in argv and argv[argv.index("--pidfile") + 1] == "/var/lib/ferry/.pages-c1/ps.pid"


def test_lazy_pages_daemon_fetches_from_the_local_end_of_the_link():
    argv = _criu_without_rpc().lazy_pages_argv("/var/lib/ferry/c1", 40002, "/var/lib/ferry/.work/lp.pid")
    assert argv[1] == "lazy-pages" and "--page-server" in argv
    assert argv[argv.index("--address") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "40002"
    assert argv[argv.index("--images-dir") + 1] == "/var/lib/ferry/c1"


def test_a_streamed_dump_leaves_the_tree_stopped_not_killed():
    from ansible_collections.ferry.migrate.plugins.module_utils import _tree
    assert _tree.dump_options({"method": "stream"})["leave_stopped"] is True
    assert _tree.dump_options({"method": "stop_and_copy"})["leave_stopped"] is None
    assert _tree.dump_options({"method": "stream", "leave_running": True})["leave_stopped"] is None


def test_a_tree_restored_where_no_tree_ran_before_keeps_its_pid_and_addresses(tmp_path):
    from ansible_collections.ferry.migrate.plugins.module_utils import _tree
    pidfile = str(tmp_path / "trees" / "svc.pid")  # the tree directory is not there yet
    _tree.write_addresses(pidfile, ["10.0.0.5/24"])
    _tree.write_pid(pidfile, 1)
    assert _tree.read_addresses(pidfile) == ["10.0.0.5/24"] and _tree.read_pid(pidfile) == 1


def test_pycriu_is_imported_on_first_use_and_its_absence_is_told(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycriu", None)  # "import pycriu" now fails, as on a host without it
    monkeypatch.setattr(_criu, "pycriu", _criu._Pycriu())  # pylint: disable=protected-access
    criu = _criu.Criu("/usr/local/sbin/criu")  # no import yet
    assert _criu.pycriu_error().startswith("pycriu is not importable by this interpreter: ")
    assert _criu.pstree_processes(b"") is None
    with pytest.raises(_criu.CriuError, match="pycriu is not importable"):
        criu.version()
