"""A checkpoint's steps with a fake engine: no root, no CRIU, no container. The real engines are
driven by the integration tests on the lab."""
import os

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _checkpoint, _transport
from fake_engine import FakeEngine, Receiver


def delivering(delivered, sent_bytes):
    """A delivery that takes what the real one would (the receiver, the partial bundle, its manifest
    without checksums) and answers with the files' SHA-256 as it hashed them on the way."""
    def deliver(receiver, path, manifest):
        delivered.append((receiver, path, manifest))
        assert all("sha256" not in entry for entry in manifest["files"])
        return {"sent_bytes": sent_bytes, "sha256": {e["name"]: _bundle.sha256_file(os.path.join(path, e["name"])) for e in manifest["files"]}}
    return deliver


def params(tmp_path, **more):
    return dict(dict(container="web", images_dir=str(tmp_path), leave_running=False, tcp_established=False,
                     file_locks=False, compress="none", include_image=False, method="stop_and_copy", page_link=None,
                     send=None), **more)


def test_a_checkpoint_is_a_verified_bundle_that_says_how_it_was_taken(tmp_path):
    result = _checkpoint.Checkpoint(FakeEngine(), params(tmp_path, tcp_established=True), "web").take()
    manifest = _bundle.load_manifest(result["path"])
    assert result["changed"] and result["manifest"] == manifest and _bundle.verify(result["path"], manifest) == []
    assert manifest["engine"] == "fake" and manifest["criu_version"] == "4.2.0" and manifest["options"]["tcp_established"]
    assert manifest["frozen_at"] and result["sent"] is None
    assert sorted(f["name"] for f in manifest["files"]) == ["cpuinfo.img", "pages-1.img"]
    assert not os.path.exists(_bundle.partial_path(str(tmp_path), "web"))


def test_the_checkpoint_already_taken_is_the_result_while_the_container_stays_stopped(tmp_path):
    engine = FakeEngine()
    first = _checkpoint.Checkpoint(engine, params(tmp_path), "web").take()
    again = _checkpoint.Checkpoint(engine, params(tmp_path), "web").taken()
    assert again == {"changed": False, "path": first["path"], "manifest": first["manifest"], "bytes": first["bytes"]}
    engine.state = "running"  # it runs again: the old checkpoint would lose what it did since
    assert _checkpoint.Checkpoint(engine, params(tmp_path), "web").taken() is None


def test_a_bundle_that_does_not_verify_is_not_taken_for_the_checkpoint(tmp_path):
    engine = FakeEngine()
    result = _checkpoint.Checkpoint(engine, params(tmp_path), "web").take()
    with open(os.path.join(result["path"], "pages-1.img"), "ab") as handle:
        handle.write(b"!")
    assert _checkpoint.Checkpoint(engine, params(tmp_path), "web").taken() is None


def test_the_bundle_goes_to_the_target_through_the_open_session(tmp_path):
    delivered = []
    receiver = Receiver()
    checkpoint = _checkpoint.Checkpoint(FakeEngine(), params(tmp_path, send={"target": "node2"}), "web", receiver,
                                        deliver=delivering(delivered, 3))
    result = checkpoint.take()
    [(to, path, header)] = delivered
    assert to is receiver and path == _bundle.partial_path(str(tmp_path), "web") and result["sent"]["sent_bytes"] == 3
    # The manifest sent ahead is the one written after, but for the checksums taken on the way.
    assert dict(header, files=[dict(e, sha256=result["sent"]["sha256"][e["name"]]) for e in header["files"]]) == result["manifest"]
    assert _bundle.verify(result["path"]) == [] and not receiver.killed


def test_a_send_that_fails_ends_the_session_and_the_container_runs_again_here(tmp_path):
    def broken(*_args):
        raise _transport.TransportError("connection reset")
    engine, receiver = FakeEngine(), Receiver()
    checkpoint = _checkpoint.Checkpoint(engine, params(tmp_path, send={"target": "node2"}), "web", receiver, deliver=broken)
    with pytest.raises(_checkpoint.Failed) as failed:
        checkpoint.take()
    assert str(failed.value) == "sending the checkpoint to node2 failed: connection reset (web runs again from its checkpoint)"
    assert failed.value.frozen and receiver.killed and engine.resumed == ["web"] and engine.state == "running"


def test_a_dump_that_fails_leaves_no_partial_bundle_and_says_the_tools_words(tmp_path):
    engine = FakeEngine(fail="CRIU dump failed")
    with pytest.raises(_checkpoint.Failed) as failed:
        _checkpoint.Checkpoint(engine, params(tmp_path), "web").take()
    assert str(failed.value) == "CRIU dump failed" and failed.value.detail == "the tool's own words"
    assert engine.resumed == []  # the engine resumes what it stopped itself; nothing was returned to resume
    assert os.listdir(str(tmp_path)) == []


def test_a_leave_running_copy_never_resumes_and_records_no_freeze(tmp_path):
    result = _checkpoint.Checkpoint(FakeEngine(), params(tmp_path, leave_running=True), "web").take()
    assert result["manifest"]["frozen_at"] is None


def test_post_copy_hands_the_bundle_over_from_inside_the_dump(tmp_path):
    delivered = []
    engine = FakeEngine()
    checkpoint = _checkpoint.Checkpoint(engine, params(tmp_path, method="post_copy", send={"target": "node2"}), "web",
                                        Receiver(), deliver=delivering(delivered, 9))
    result = checkpoint.take()
    assert engine.handed is True and len(delivered) == 1 and result["sent"]["sent_bytes"] == 9
    assert _bundle.verify(result["path"], result["manifest"]) == []
    assert result["page_link"] == {"bytes_out": 1} and result["pages_done_at"]


def test_post_copy_whose_handover_fails_says_the_container_runs_on_here(tmp_path):
    def broken(*_args):
        raise _transport.TransportError("no route")
    engine = FakeEngine()
    checkpoint = _checkpoint.Checkpoint(engine, params(tmp_path, method="post_copy", send={"target": "node2"}), "web",
                                        Receiver(), deliver=broken)
    with pytest.raises(_checkpoint.Failed, match="^sending the checkpoint to node2 failed: no route; web runs on here$"):
        checkpoint.take()
    assert engine.handed is False


def test_post_copy_failing_after_the_handover_says_what_is_lost(tmp_path):
    engine = FakeEngine(fail="lazy pages lost")
    checkpoint = _checkpoint.Checkpoint(engine, params(tmp_path, method="post_copy", send={"target": "node2"}), "web",
                                        Receiver(), deliver=delivering([], 1))
    with pytest.raises(_checkpoint.Failed, match="post-copy failed after the target started: lazy pages lost. The target's copy "
                                                 "was stopped and web resumed here from its frozen state"):
        checkpoint.take()


@pytest.mark.parametrize("changes, refusal", [
    ({"method": "stream"}, "method: engine fake offers stop_and_copy and post_copy only, not stream"),
    ({"method": "post_copy", "leave_running": True}, "leave_running: a copy is taken with method stop_and_copy only"),
])
def test_what_cannot_be_done_is_refused_naming_the_option(tmp_path, changes, refusal):
    assert _checkpoint.Checkpoint(FakeEngine(), params(tmp_path, **changes), "web").refusal() == refusal


def test_removing_a_checkpoint_in_check_mode_changes_nothing(tmp_path):
    _checkpoint.Checkpoint(FakeEngine(), params(tmp_path), "web").take()
    assert _checkpoint.remove(str(tmp_path), "web", check_mode=True)["changed"] is True
    assert os.path.isdir(_bundle.final_path(str(tmp_path), "web"))
    assert _checkpoint.remove(str(tmp_path), "web", check_mode=False)["changed"] is True
    assert _checkpoint.remove(str(tmp_path), "web", check_mode=False)["changed"] is False
    assert os.listdir(str(tmp_path)) == []
