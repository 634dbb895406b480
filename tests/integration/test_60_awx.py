"""AWX, as AWX runs Ferry: jobs by ansible-runner from a project (examples/awx-project), each in its own
private data directory with no state on the controller, artifacts passed from job to job as a workflow
does. A drain as plan -> two migration shares side by side (one killed mid-migration and relaunched)
-> report, with the job's state on a fleet host."""
import glob
import json
import os
import signal
import subprocess
import time

import pytest

from lab import BIN, INVENTORY, ROOT, _env, ssh
from test_30_fleet import check_state_carried, load_node1

pytestmark = pytest.mark.integration
PROJECT = os.path.join(ROOT, "examples", "awx-project")
STATE_HOST, STATE_DIR = "node4", "/home/ferry-state"  # /home is private to each lab host: not on the controller
WORKFLOW = {"drain_hosts": "node1", "fleet_state_host": STATE_HOST, "fleet_state_dir": STATE_DIR}
JOURNAL = STATE_DIR + "/journal-drain-node1.json"


def start_job(tmp_path, name, playbook, extravars, check=False):
    """One AWX job: a private data directory, the project, the inventory, extra variables; ansible-runner."""
    data = tmp_path / name
    (data / "env").mkdir(parents=True)
    (data / "inventory").mkdir()
    os.symlink(PROJECT, data / "project")
    os.symlink(INVENTORY, data / "inventory" / "hosts.yml")
    (data / "env" / "extravars").write_text(json.dumps(extravars))
    (data / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, "build", "collections")}))
    if check:
        (data / "env" / "cmdline").write_text("--check")
    argv = [os.path.join(BIN, "ansible-runner"), "run", str(data), "-p", playbook, "--ident", "job"]
    return subprocess.Popen(argv, cwd=str(tmp_path), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True), data


def finish(job, timeout=900):
    """Wait for a job; returns (rc, artifacts as AWX reads them: the stats event's artifact_data, stdout)."""
    proc, data = job
    proc.wait(timeout=timeout)
    artifacts = {}
    for path in glob.glob(str(data / "artifacts" / "job" / "job_events" / "*.json")):
        event = json.load(open(path))
        if event.get("event") == "playbook_on_stats":
            artifacts = event["event_data"].get("artifact_data") or {}
    stdout = open(data / "artifacts" / "job" / "stdout").read() if os.path.exists(data / "artifacts" / "job" / "stdout") else ""
    return proc.returncode, artifacts, stdout


def run_job(tmp_path, name, playbook, extravars, check=False):
    return finish(start_job(tmp_path, name, playbook, extravars, check))


def kill_job(job):
    """What AWX does when an execution node dies: the job's whole process tree goes, at once."""
    proc, dummy = job
    tree, frontier = {proc.pid}, [proc.pid]
    while frontier:
        parent = frontier.pop()
        for path in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = open(path).read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(path.split("/")[2])
            if int(fields[1]) == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def journal():
    text = ssh(STATE_HOST, "cat %s 2>/dev/null || true" % JOURNAL)
    return json.loads(text)["entries"] if text.strip() else {}


@pytest.fixture
def state_host(clean):
    ssh(STATE_HOST, "rm -rf %s" % STATE_DIR)
    yield
    ssh(STATE_HOST, "rm -rf %s" % STATE_DIR)


def test_refusal_and_check_publish_their_records(state_host, tmp_path):
    rc, artifacts, dummy = run_job(tmp_path, "refused", "migrate.yml",
                                   {"migrate_container": "no such/name", "migrate_source": "node1", "migrate_target": "node2"})
    assert rc != 0
    [record] = artifacts["ferry_migrations"]
    assert record["outcome"] == "refused" and "migrate_container" in record["error"] and not record["frozen"], record

    state = load_node1()
    rc, artifacts, stdout = run_job(tmp_path, "check", "drain.yml", dict(WORKFLOW, fleet_stage="plan"), check=True)
    assert rc == 0, stdout[-3000:]
    assert len(artifacts["ferry_run"]["plan"]["moves"]) == len(state) and artifacts["fleet_run_token"]
    assert ssh("node1", "ls -A /var/lib/ferry; echo").strip() == ""  # no cordon mark: check mode


def test_staged_drain_survives_a_killed_job_and_reports(state_host, tmp_path):
    state = load_node1()
    rc, planned, stdout = run_job(tmp_path, "plan", "drain.yml", dict(WORKFLOW, fleet_stage="plan"))
    assert rc == 0, stdout[-4000:]
    plan, token = planned["ferry_run"]["plan"], planned["fleet_run_token"]
    assert len(plan["moves"]) == 6 and plan["waves"] >= 3
    assert ssh(STATE_HOST, "cat %s.owner" % JOURNAL).count(token) == 1  # the run holds the lock, on the state host
    assert not os.path.exists(STATE_DIR)  # nothing of the job's state on the controller

    share = {i: dict(planned, **WORKFLOW, fleet_stage="migrate", fleet_share="%d/2" % i) for i in (1, 2)}
    first = start_job(tmp_path, "share1", "drain.yml", share[1])
    second = start_job(tmp_path, "share2", "drain.yml", share[2])
    deadline = time.monotonic() + 300
    killed_in_flight = None
    while time.monotonic() < deadline and second[0].poll() is None:
        moving = [key for key, entry in journal().items() if entry["status"] == "migrating" and entry.get("run") == token]
        ours = [key for key in moving if key in share2_ids(plan)]
        if ours:
            killed_in_flight = ours[0]
            break
        time.sleep(0.3)
    time.sleep(2.5)  # inside the checkpoint, transfer or restore of share 2's first migration
    assert killed_in_flight and second[0].poll() is None, "share 2 ended before it could be killed"
    kill_job(second)
    assert journal()[killed_in_flight]["status"] == "migrating"

    # Share 1 waits for share 2's wave before going on; share 2, relaunched with the same artifacts, settles
    # its own migration left in flight and finishes its share.
    rc2, dummy, stdout2 = run_job(tmp_path, "share2-relaunched", "drain.yml", share[2])
    assert rc2 == 0, stdout2[-4000:]
    assert "recovered" in stdout2
    rc1, artifacts1, stdout1 = finish(first)
    assert rc1 == 0, stdout1[-4000:]
    assert "wait for the earlier waves" in stdout1

    merged = dict(planned, **artifacts1)  # AWX hands every parent's artifacts to the join node
    rc, reported, stdout = run_job(tmp_path, "report", "drain.yml", dict(merged, **WORKFLOW, fleet_stage="report"))
    assert rc == 0, stdout[-4000:]
    report = reported["ferry_fleet_report"]
    assert (report["migrated"], report["stranded"], report["refused"]) == (6, 0, 0), report
    assert {m["container"] for m in report["migrations"]} == set(state)
    assert report["files"]["json"].startswith(STATE_DIR + "/reports/")
    assert ssh(STATE_HOST, "test -s %s && echo yes" % report["files"]["json"]).strip() == "yes"
    assert "node1 drained: nothing runs there." in stdout
    placed = check_state_carried(state)
    assert "node1" not in placed.values()
    final = journal()
    migrated = [e["container"] for e in final.values() if e["status"] == "migrated" and e.get("run") == token]
    assert len(migrated) == len(set(migrated)) == 6  # nothing migrated twice
    assert ssh(STATE_HOST, "test -e %s.owner && echo held || echo free" % JOURNAL).strip() == "free"


def share2_ids(plan):
    """The moves the planner's split gives share 2 (the rule every job applies)."""
    from ansible_collections.ferry.migrate.plugins.plugin_utils import _planner
    return {m["id"] for m in _planner.share(plan, 2, 2)["moves"]}
