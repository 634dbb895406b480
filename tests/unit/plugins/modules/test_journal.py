"""The journal module's results: diff mode, and one run's entries."""
import json
import os

import pytest
from test_hostile_arguments import patch_module_args

from ansible_collections.ferry.migrate.plugins.modules import journal


def _run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        journal.main()
    return json.loads(capsys.readouterr().out)


def test_journal_module_diff_shows_the_entry(tmp_path, capsys):
    path = str(tmp_path / "journal.json")
    args = {"path": path, "id": "c1-a-to-b", "status": "migrating", "fields": {"container": "c1"}, "_ansible_diff": True}
    with patch_module_args(dict(args, _ansible_check_mode=True)), pytest.raises(SystemExit):
        journal.main()
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] and result["diff"]["before"] == "no entry\n" and '"status": "migrating"' in result["diff"]["after"]
    assert not os.path.exists(path)  # check mode


def test_journal_module_gives_the_runs_entries(tmp_path, capsys):
    path = str(tmp_path / "journal.json")
    _run(capsys, path=path, id="a", status="migrated", fields={"run": "r1", "record": {"id": "a"}})
    _run(capsys, path=path, id="b", status="migrated", fields={"run": "r2", "record": {"id": "b"}})
    result = _run(capsys, path=path, token="r1")
    assert result["run"]["over"] == ["a"] and result["run"]["records"] == [{"id": "a"}]
    assert "run" not in _run(capsys, path=path)
