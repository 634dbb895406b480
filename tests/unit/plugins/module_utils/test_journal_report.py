"""The journal's updates and the report's summary and Markdown (pure logic; the PNGs are drawn too)."""
import json
import os
import time

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _journal, _report


def test_journal_records_history_and_in_flight(tmp_path):
    path = str(tmp_path / "state" / "journal.json")
    changed, journal, dummy = _journal.update(path, [{"id": "c1-a-to-b", "status": "migrating",
                                                      "fields": {"container": "c1", "source": "a", "target": "b"}}])
    assert changed and _journal.in_flight(journal)[0]["id"] == "c1-a-to-b"
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    changed, journal, dummy = _journal.update(path, [{"id": "c1-a-to-b", "status": "migrating", "fields": {"container": "c1"}}])
    assert not changed  # same status and fields: no new history entry
    changed, journal, dummy = _journal.update(path, [{"id": "c1-a-to-b", "status": "migrated", "fields": {"downtime_seconds": 0.2}}])
    entry = _journal.read(path)["entries"]["c1-a-to-b"]
    assert changed and entry["status"] == "migrated" and [h["status"] for h in entry["history"]] == ["migrating", "migrated"]
    assert entry["source"] == "a" and _journal.in_flight(journal) == []


def test_journal_check_mode_writes_nothing(tmp_path):
    path = str(tmp_path / "journal.json")
    changed, dummy, befores = _journal.update(path, [{"id": "x", "status": "migrating", "fields": {}}], check_mode=True)
    assert befores == {"x": None}
    assert changed and not os.path.exists(path)


def test_report_files_and_summary(tmp_path):
    migrations = [{"container": "a", "source": "n1", "target": "n2", "outcome": "migrated", "downtime_seconds": "0.5",
                   "total_seconds": 3, "bytes": 1048576, "started_at": 100.0, "ended_at": 103.0},
                  {"container": "b", "source": "n1", "target": "n3", "outcome": "rolled_back", "error": "restore | failed",
                   "started_at": 101.0, "ended_at": 102.0}]
    plan = {"moves": [{}, {}], "waves": 1, "unplaced": [{"container": "c", "host": "n1", "reason": "pinned by label ferry.pinned"}]}
    utilisation = {"n1": {"before": 0.5, "after": 0.1}, "n2": {"before": 0.0, "after": 0.2}}
    report, files = _report.write(str(tmp_path), "drain-n1", "drain", migrations, plan, utilisation,
                                  {"metric": "memory", "before": 0.25, "after": 0.05})
    assert (report["migrated"], report["rolled_back"], report["stranded"], report["refused"]) == (1, 1, 0, 0)
    assert report["migrations"] == migrations and report["utilisation"] == utilisation  # the report as data, too
    assert report["downtime_seconds"] == {"max": 0.5, "median": 0.5} and report["bytes"] == 1048576
    text = open(files["markdown"]).read()
    assert "| b | n1 | n3 | rolled_back |" in text and "restore / failed" in text and "- c on n1: pinned by label ferry.pinned" in text
    assert "| n1 | 50.0% | 10.0% |" in text
    for chart in ("timeline", "utilisation"):
        with open(files[chart], "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.load(open(files["json"]))["plan"]["waves"] == 1


def test_job_lock_one_run_at_a_time(tmp_path):
    path = str(tmp_path / "journal.json")
    here = os.uname().nodename
    mine = "%s:%d:%s" % (here, os.getpid(), "a" * 16)
    owner = _journal.claim(path, "drain-n1", mine, 60)
    assert owner["token"] == mine and _journal.claim(path, "drain-n1", mine, 60)["since"] == owner["since"]  # renewal
    # Another run whose process lives (our parent stands in for it) is refused, naming it and how to take over.
    other = "%s:%d:%s" % (here, os.getppid(), "b" * 16)
    with pytest.raises(_journal.LockError, match="job drain-n1 is running: held by run %s .*-e fleet_run_token=%s" % (mine, mine)):
        _journal.claim(path, "drain-n1", other, 60)
    # A run of another controller is refused while its lease lasts, whatever the PIDs here.
    _journal.claim(path, "drain-n1", mine, 60, release=True)
    elsewhere = "awx-job-7f9c:%d:%s" % (2 ** 22 + 1, "c" * 16)
    _journal.claim(path, "drain-n1", elsewhere, 60)
    with pytest.raises(_journal.LockError, match="held by run awx-job-7f9c"):
        _journal.claim(path, "drain-n1", mine, 60)
    # ... and taken over when its lease ends; a release by a run that does not hold it changes nothing.
    _journal.claim(path, "drain-n1", mine, 60, release=True)
    assert os.path.exists(path + ".owner")
    owner = json.load(open(path + ".owner"))
    _bundle_write(path + ".owner", dict(owner, expires=time.time() - 1))
    assert _journal.claim(path, "drain-n1", mine, 60)["token"] == mine
    # A holder of this machine whose process is gone (a killed run) is taken over at once.
    dead = "%s:%d:%s" % (here, 2 ** 22 + 1, "d" * 16)
    _bundle_write(path + ".owner", {"token": dead, "since": "x", "expires": time.time() + 600})
    assert _journal.claim(path, "drain-n1", other, 60)["token"] == other
    _journal.claim(path, "drain-n1", other, 60, release=True)
    assert not os.path.exists(path + ".owner")


def _bundle_write(path, data):
    with open(path, "w") as handle:
        json.dump(data, handle)


def test_a_runs_entries_are_its_own(tmp_path):
    """of_run gives the barrier, the share and the report one run's entries, whatever other runs left."""
    path = str(tmp_path / "j.json")
    _journal.update(path, [{"id": "a", "status": "migrated", "fields": {"run": "r1", "record": {"id": "a"}}}])
    _journal.update(path, [{"id": "b", "status": "migrating", "fields": {"run": "r1"}}])
    _journal.update(path, [{"id": "c", "status": "rolled_back", "fields": {"run": "r1", "record": {"id": "c"}}}])
    _journal.update(path, [{"id": "d", "status": "migrated", "fields": {"run": "r0", "record": {"id": "d"}}}])
    _journal.update(path, [{"id": "e", "status": "refused", "fields": {"record": {"id": "e"}}}])
    run = _journal.of_run(_journal.read(path), "r1")
    assert sorted(run["entries"]) == ["a", "b", "c"]
    assert run["over"] == ["a", "c"]
    assert run["migrated"] == ["a"]
    assert run["records"] == [{"id": "a"}, {"id": "c"}]
    assert _journal.of_run(_journal.read(path), "nobody") == {"entries": {}, "over": [], "migrated": [], "records": []}
