"""The migration record: one shape for every outcome, figures computed from the phases' results."""
import pytest

from ansible_collections.ferry.migrate.plugins.plugin_utils import _record

MOVE = {"id": "redis-n1-to-n2", "container": "redis", "engine": "podman", "source": "n1", "target": "n2"}


def test_migrated_figures_come_from_the_phases():
    facts = dict(MOVE, outcome="migrated", started_at="100.0", ended_at=112.5, route="direct",
                 marks={"start": "100.0", "preflight": 103.0, "restored": 111.0},
                 method={"method": "stop_and_copy", "reason": "no lazy pages", "rejected": [{"method": "post_copy"}]},
                 checkpoint={"bytes": 104857600, "seconds": 2.5, "manifest": {"frozen_at": 104.0, "stats": {"frozen_time": 1}}},
                 moved={"seconds": 2.0, "data_path": "openssh"}, restore={"running_at": 109.25, "seconds": 3.0})
    record = _record.record(facts)
    assert record["downtime_seconds"] == 5.25 and record["total_seconds"] == 12.5 and record["throughput_mib_s"] == 50.0
    assert record["bytes"] == 104857600 and record["frozen"] and record["split_window_seconds"] is None
    assert [p["seconds"] for p in record["phases"]] == [3.0, 2.5, 2.0, 3.0, 1.5]


def test_every_outcome_has_the_same_keys():
    shapes = {frozenset(_record.record(dict(MOVE, outcome=outcome)).keys()) for outcome in _record.OUTCOMES}
    assert len(shapes) == 1


def test_a_refusal_may_name_a_bad_migration_but_others_must_be_whole():
    refused = _record.record({"outcome": "refused", "container": "", "error": "Preflight: migrate_source ..."})
    assert refused["outcome"] == "refused" and refused["bytes"] == 0 and not refused["frozen"] and refused["downtime_seconds"] is None
    with pytest.raises(_record.RecordError, match="the record needs container"):
        _record.record(dict(MOVE, container="", outcome="rolled_back"))
    with pytest.raises(_record.RecordError, match="outcome 'done' is not one of"):
        _record.record(dict(MOVE, outcome="done"))
