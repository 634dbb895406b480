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
    args = {"path": path, "updates": [{"id": "c1-a-to-b", "status": "migrating", "fields": {"container": "c1"}}], "_ansible_diff": True}
    with patch_module_args(dict(args, _ansible_check_mode=True)), pytest.raises(SystemExit):
        journal.main()
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] and result["diff"]["before"] == "no entry\n" and '"status": "migrating"' in result["diff"]["after"]
    assert not os.path.exists(path)  # check mode


def test_journal_module_gives_the_runs_entries(tmp_path, capsys):
    path = str(tmp_path / "journal.json")
    _run(capsys, path=path, updates=[{"id": "a", "status": "migrated", "fields": {"run": "r1", "record": {"id": "a"}}},
                                     {"id": "b", "status": "migrated", "fields": {"run": "r2", "record": {"id": "b"}}}])
    result = _run(capsys, path=path, token="r1")
    assert result["run"]["over"] == ["a"] and result["run"]["records"] == [{"id": "a"}]
    assert "run" not in _run(capsys, path=path)


def test_a_wave_is_journaled_in_one_write_and_a_bad_id_writes_none(tmp_path, capsys):
    path = str(tmp_path / "journal.json")
    wave = [{"id": "c%d-a-to-b" % n, "status": "migrating", "fields": {"container": "c%d" % n}} for n in range(3)]
    result = _run(capsys, path=path, updates=wave, _ansible_diff=True)
    assert result["changed"] and [entry["id"] for entry in result["in_flight"]] == ["c0-a-to-b", "c1-a-to-b", "c2-a-to-b"]
    assert result["diff"]["before"] == "no entry\n" * 3
    again = _run(capsys, path=path, updates=wave)
    assert not again["changed"]  # the same statuses and fields: nothing to write
    over = [dict(wave[0], status="migrated"), dict(wave[1], status="rolled_back"), {"id": "../x", "status": "migrated"}]
    refused = _run(capsys, path=path, updates=over)
    assert refused["failed"] and refused["msg"].startswith("updates[2].id:")
    assert [entry["status"] for entry in json.load(open(path))["entries"].values()] == ["migrating"] * 3
    done = _run(capsys, path=path, updates=over[:2])
    assert {key: entry["status"] for key, entry in done["entries"].items()} == {
        "c0-a-to-b": "migrated", "c1-a-to-b": "rolled_back", "c2-a-to-b": "migrating"}
