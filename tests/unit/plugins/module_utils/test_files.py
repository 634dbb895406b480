"""The one atomic write: whole or not at all, mode set before the rename, a refused check changes nothing."""
import json
import os

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _files


def test_replaces_whole_with_its_mode_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "state.json")
    _files.write_json_atomic(path, {"a": 1})
    _files.write_atomic(path, b"new\n", 0o440)
    assert open(path).read() == "new\n" and oct(os.stat(path).st_mode & 0o777) == "0o440"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_refused_check_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "zz-ferry-rule")
    _files.write_json_atomic(path, {"old": True})
    seen = []

    def refuse(temporary):
        seen.append(os.path.basename(temporary))
        raise OSError("visudo says no")

    with pytest.raises(OSError, match="visudo says no"):
        _files.write_atomic(path, "bad rule", 0o440, check=refuse)
    assert json.load(open(path)) == {"old": True} and os.listdir(tmp_path) == ["zz-ferry-rule"]
    assert seen[0].startswith(".zz-ferry-rule.")  # a dotted name: sudo's includedir skips it while it is checked


def test_never_writes_through_a_link(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    os.symlink(target, tmp_path / "link")
    _files.write_atomic(str(tmp_path / "link"), "x")
    assert target.read_text() == "keep" and not os.path.islink(tmp_path / "link")
