"""A checkpoint's steps with a fake engine: no root, no CRIU, no container. The real engines are
driven by the integration tests on the lab."""
import os

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _checkpoint, _transport
from fake_engine import FakeEngine, Receiver


def delivering(delivered, sent_bytes):
    """A delivery that takes what the real one would (the receiver, the partial bundle, its manifest
    without checksums) and answers with the files' SHA-256 as it hashed them on the way."""
    def deliver(receiver, path, manifest, until_restored=False):
        delivered.append((receiver, path, manifest, until_restored))
        assert all("sha256" not in entry for entry in manifest["files"])
        return {"sent_bytes": sent_bytes, "seconds": 0.25, "sha256": {e["name"]: _bundle.sha256_file(os.path.join(path, e["name"])) for e in manifest["files"]}}
    return deliver


def params(tmp_path, **more):
    return dict(dict(container="web", images_dir=str(tmp_path), leave_running=False, tcp_established=False,
                     file_locks=False, compress="none", include_image=False, files_shared=False, method="stop_and_copy", page_link=None,
                     send=None, pre_copy={"max_iterations": 8, "converged_bytes": 8 << 20, "unconverged": "finish"}), **more)


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
    [(to, path, header, until_restored)] = delivered
    assert until_restored  # the session ends with the target's restore of it: the controller finds that done
    assert to is receiver and path == _bundle.partial_path(str(tmp_path), "web") and result["sent"]["sent_bytes"] == 3
    # The manifest sent ahead is the one written after, but for the checksums taken on the way.
    assert dict(header, files=[dict(e, sha256=result["sent"]["sha256"][e["name"]]) for e in header["files"]]) == result["manifest"]
    assert _bundle.verify(result["path"]) == [] and not receiver.killed


def over_the_wire(target, sent):
    """A delivery through the real wire protocol into ``target``'s receiver (both ends in this process)."""
    import io
    from ansible_collections.ferry.migrate.plugins.module_utils import _wire

    def deliver(_receiver, path, manifest, pipes=None, final=None, until_restored=False):
        records = io.BytesIO()
        result = _wire.send(path, manifest, records.write, io.BytesIO(b'{"have": false}\n{"ok": true, "data_path": "ssh"}\n').readline,
                            pipes=pipes, final=final, until_restored=until_restored)
        sent.append(_wire.receive(str(target), "web", io.BytesIO(records.getvalue()), lambda m: None))
        return dict(result, seconds=0.5)
    return deliver


def test_an_engine_that_streams_its_checkpoint_has_it_sent_while_the_dump_writes_it(tmp_path):
    """Its dump writes into a pipe in the file's place, which the sending thread reads, keeps here and
    sends; the bundle on both hosts is the same, with the closing manifest."""
    engine, sent = FakeEngine(), []
    engine.capabilities = dict(engine.capabilities, streams=["pages-1.img"])
    checkpoint = _checkpoint.Checkpoint(engine, params(tmp_path / "src", send={"target": "node2"}), "web", Receiver(),
                                        deliver=over_the_wire(tmp_path / "dst", sent))
    result = checkpoint.take()
    assert sent[0]["ok"] and _bundle.verify(result["path"]) == [] and _bundle.verify(str(tmp_path / "dst" / "web")) == []
    assert _bundle.load_manifest(str(tmp_path / "dst" / "web")) == result["manifest"]
    with open(os.path.join(result["path"], "pages-1.img"), "rb") as handle:
        assert handle.read() == b"memory of web"
    assert sorted(os.listdir(result["path"])) == [".verified", "cpuinfo.img", "manifest.json", "pages-1.img"]


def test_a_streaming_dump_that_fails_stops_the_sending_and_leaves_nothing(tmp_path):
    engine, sent, receiver = FakeEngine(fail="runc failed"), [], Receiver()
    engine.capabilities = dict(engine.capabilities, streams=["pages-1.img"])
    checkpoint = _checkpoint.Checkpoint(engine, params(tmp_path / "src", send={"target": "node2"}), "web", receiver,
                                        deliver=over_the_wire(tmp_path / "dst", sent))
    with pytest.raises(_checkpoint.Failed, match="^runc failed$"):
        checkpoint.take()
    assert receiver.killed and sent == [] and os.listdir(str(tmp_path / "src")) == []


def test_a_send_that_fails_ends_the_session_and_the_container_runs_again_here(tmp_path):
    def broken(*_args, **_kwargs):
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
    assert delivered[0][3] is False  # the restore needs the pages the dump serves only after the handover
    assert _bundle.verify(result["path"], result["manifest"]) == []
    assert result["page_link"] == {"bytes_out": 1} and result["pages_done_at"]


def test_post_copy_whose_handover_fails_says_the_container_runs_on_here(tmp_path):
    def broken(*_args, **_kwargs):
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
    ({"method": "stream"}, "method: engine fake offers stop_and_copy, post_copy, pre_copy only, not stream"),
    ({"method": "post_copy", "leave_running": True}, "leave_running: a copy is taken with method stop_and_copy only"),
    ({"files_shared": True}, "files_shared: engine fake keeps no files of a container's own that hosts could share"),
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


RULES = {"max_iterations": 4, "converged_bytes": 100 << 10, "unconverged": "finish"}
K = 1 << 10


@pytest.mark.parametrize("written, stop", [
    ([5000 * K], None),
    ([5000 * K, 100 * K], "converged"),
    ([80 * K], "converged"),
    ([5000 * K, 3000 * K, 2999 * K], "no_progress"),  # did not shrink by a tenth
    ([5000 * K, 3000 * K, 3500 * K], "no_progress"),
    ([5000 * K, 2000 * K, 1000 * K, 500 * K], "max_iterations"),
    ([5000 * K, 2000 * K, 1000 * K], None),
])
def test_pre_copy_stops_when_it_converged_made_no_progress_or_reached_its_limit(written, stop):
    verdict = _checkpoint.pre_copy_stop(written, RULES)
    assert (verdict and verdict[0]) == stop
    if verdict:
        assert "iteration" in verdict[1] and "%.2f MiB" % (written[-1] / 1048576.0) in verdict[1]


def pre_copying(tmp_path, monkeypatch, dirty, **rules):
    """A pre-copy with the fake engine finding ``dirty`` pages in turn, its iterations delivered like its bundle."""
    delivered, receivers = [], []
    monkeypatch.setattr(_checkpoint, "_receiver", lambda send: receivers.append(Receiver()) or receivers[-1])
    engine = FakeEngine()
    engine.dirty = list(dirty)
    checkpoint = _checkpoint.Checkpoint(engine, params(tmp_path, method="pre_copy", send={"target": "node2"},
                                                       pre_copy=dict(RULES, converged_bytes=4096 * 10, **rules)),
                                        "web", Receiver(), deliver=delivering(delivered, 3))
    return checkpoint, engine, delivered


def test_pre_copy_sends_each_iteration_while_the_container_runs_then_dumps_on_the_last(tmp_path, monkeypatch):
    checkpoint, engine, delivered = pre_copying(tmp_path, monkeypatch, [1000, 200, 5])
    result = checkpoint.take()
    assert [(manifest["id"], until) for _to, _path, manifest, until in delivered] == [
        ("web.pre-1", False), ("web.pre-2", False), ("web.pre-3", False), ("web", True)]
    assert engine.parents == [None, "web.pre-1", "web.pre-2", "web.pre-3"]
    manifest = result["manifest"]
    assert manifest["parent"]["id"] == "web.pre-3" and manifest["pre_copy"]["stop"] == "converged"
    assert [(i["iteration"], i["pages_written"], i["frozen_seconds"]) for i in manifest["pre_copy"]["iterations"]] == \
        [(1, 1000, 0.002), (2, 200, 0.002), (3, 5, 0.002)]
    # Every byte sent counts, and the target can check the chain the final bundle stands on.
    assert result["bytes"] == sum(i["bytes"] for i in manifest["pre_copy"]["iterations"]) + _bundle.total_bytes(manifest)
    assert [m["id"] for m in _bundle.verified_chain(str(tmp_path), manifest)] == ["web.pre-3", "web.pre-2", "web.pre-1"]
    assert manifest["frozen_at"] >= max(_bundle.load_manifest(str(tmp_path / i))["checkpointed_at"] for i in ("web.pre-1", "web.pre-3"))


def test_a_pre_copy_that_cannot_converge_finishes_by_default_or_aborts_unfrozen_as_asked(tmp_path, monkeypatch):
    checkpoint, engine, _delivered = pre_copying(tmp_path, monkeypatch, [1000, 990])
    assert checkpoint.take()["manifest"]["pre_copy"]["stop"] == "no_progress" and engine.state == "exited"
    checkpoint, engine, delivered = pre_copying(tmp_path / "again", monkeypatch, [1000, 990], unconverged="abort")
    with pytest.raises(_checkpoint.Failed, match="pre-copy stopped without converging: iteration 2 wrote .* web runs on here") as failed:
        checkpoint.take()
    assert not failed.value.frozen and engine.state == "running" and engine.resumed == []
    assert [m["id"] for _to, _path, m, _until in delivered] == ["web.pre-1", "web.pre-2"]
    assert os.listdir(tmp_path / "again") == []  # the iterations here went with the failure


def test_pre_copy_stops_at_the_pre_dumps_the_engine_can_stand_on(tmp_path, monkeypatch):
    """Podman's final dump stands on one pre-checkpoint only: one iteration, whatever max_iterations says."""
    checkpoint, engine, delivered = pre_copying(tmp_path, monkeypatch, [1000, 200, 5])
    engine.capabilities = dict(engine.capabilities, pre_dumps=1)
    manifest = checkpoint.take()["manifest"]
    assert [m["id"] for _to, _path, m, _until in delivered] == ["web.pre-1", "web"] and engine.parents == [None, "web.pre-1"]
    assert manifest["pre_copy"]["stop"] == "max_iterations" and "all the engine can stand on" in manifest["pre_copy"]["why"]
    assert checkpoint.params["pre_copy"]["max_iterations"] == 4  # the caller's rules are left as they were


def test_pre_copy_needs_room_in_the_checkpoint_id_for_its_iterations(tmp_path):
    long_id = "w" * 120
    checkpoint = _checkpoint.Checkpoint(FakeEngine(), params(tmp_path, method="pre_copy"), long_id)
    assert checkpoint.refusal().startswith("checkpoint_id: at most 119 characters")
    assert _checkpoint.Checkpoint(FakeEngine(), params(tmp_path, method="pre_copy"), long_id[:119]).refusal() is None


class FilesAheadEngine(FakeEngine):
    """An engine whose files can go before the freeze (lxc's directory): the final dump records the parent it got."""

    def files_ahead(self, container, bundle_dir):
        with open(os.path.join(bundle_dir, "files.tar"), "wb") as handle:
            handle.write(b"f" * 5000)
        return {"container": self.describe(container)}

    def checkpoint(self, container, bundle_dir, options, handover=None):
        self.parents.append(options.get("parent"))
        return super().checkpoint(container, bundle_dir, options, handover)


def test_files_go_ahead_while_the_container_runs_and_the_freeze_stands_on_them(tmp_path, monkeypatch):
    delivered = []
    monkeypatch.setattr(_checkpoint, "_receiver", lambda send: Receiver())
    engine = FilesAheadEngine()
    result = _checkpoint.Checkpoint(engine, params(tmp_path, send={"target": "node2"}), "web", Receiver(),
                                    deliver=delivering(delivered, 3)).take()
    assert [manifest["id"] for _to, _path, manifest, _until in delivered] == ["web.pre-1", "web"]
    assert engine.parents == ["web.pre-1"]
    manifest = result["manifest"]
    assert manifest["parent"]["id"] == "web.pre-1" and manifest["pre_copy"]["stop"] == "files_ahead"
    assert [i["bytes"] for i in manifest["pre_copy"]["iterations"]] == [_bundle.total_bytes(_bundle.load_manifest(str(tmp_path / "web.pre-1")))]
    assert [m["id"] for m in _bundle.verified_chain(str(tmp_path), manifest)] == ["web.pre-1"]
    # Without a session to the target, the files travel in the bundle; an engine with none sends none ahead.
    again = FilesAheadEngine()
    _checkpoint.Checkpoint(again, params(tmp_path / "b"), "web").take()
    assert again.parents == [None]
    _checkpoint.Checkpoint(FakeEngine(), params(tmp_path / "c", send={"target": "node2"}), "web", Receiver(),
                           deliver=delivering([], 3)).take()
    assert sorted(os.listdir(tmp_path / "c")) == ["web"]


def test_files_on_storage_both_hosts_share_do_not_go_ahead(tmp_path, monkeypatch):
    monkeypatch.setattr(_checkpoint, "_receiver", lambda send: Receiver())
    engine = FilesAheadEngine()
    engine.capabilities = dict(engine.capabilities, shares_files=True)
    delivered = []
    checkpoint = _checkpoint.Checkpoint(engine, params(tmp_path, send={"target": "node2"}, files_shared=True), "web", Receiver(),
                                        deliver=delivering(delivered, 3))
    assert checkpoint.refusal() is None
    manifest = checkpoint.take()["manifest"]
    assert [m["id"] for _to, _path, m, _until in delivered] == ["web"] and engine.parents == [None]
    assert manifest["options"]["files_shared"] and "pre_copy" not in manifest


def test_an_image_is_carried_only_by_an_engine_that_has_one_and_is_saved_before_the_freeze(tmp_path):
    engine = FakeEngine()
    assert _checkpoint.Checkpoint(engine, params(tmp_path, include_image=True), "web").refusal() == \
        "include_image: engine fake has no image to carry"
    saved = []
    engine.capabilities = dict(engine.capabilities, carries_image=True)
    engine.save_image = lambda container, path: saved.append((container, engine.state)) or open(os.path.join(path, "image.tar"), "wb").close()
    result = _checkpoint.Checkpoint(engine, params(tmp_path, include_image=True), "web").take()
    assert saved == [("web", "running")] and "image.tar" in [e["name"] for e in result["manifest"]["files"]]


class BigStreamEngine(FakeEngine):
    """Writes 4 MiB into its streamed file, more than a pipe holds: it waits on whoever reads."""
    capabilities = dict(FakeEngine.capabilities, streams=["pages-1.img"])

    def checkpoint(self, container, bundle_dir, options, handover=None):
        with open(os.path.join(bundle_dir, "pages-1.img"), "wb") as handle:
            handle.write(b"m" * (4 << 20))
        self.state = "exited"
        return {"container": self.describe(container)}


def finishes(function, seconds=20):
    """What ``function`` returned or raised, failing the test if it has not ended within ``seconds``."""
    import threading
    outcome = {}

    def run():
        try:
            outcome["value"] = function()
        except Exception as exc:  # pylint: disable=broad-except
            outcome["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "still running after %d s" % seconds
    return outcome


def test_a_sender_that_starts_late_loses_nothing_the_dump_wrote(tmp_path):
    """The engine may be done with a small file before the sending thread reads a byte of it."""
    import time
    sent, engine = [], FakeEngine()
    engine.capabilities = dict(engine.capabilities, streams=["pages-1.img"])
    wire = over_the_wire(tmp_path / "dst", sent)

    def late(*args, **kwargs):
        time.sleep(0.5)
        return wire(*args, **kwargs)
    checkpoint = _checkpoint.Checkpoint(engine, params(tmp_path / "src", send={"target": "node2"}), "web", Receiver(), deliver=late)
    result = finishes(checkpoint.take)["value"]
    with open(os.path.join(str(tmp_path / "dst" / "web"), "pages-1.img"), "rb") as handle:
        assert handle.read() == b"memory of web"
    assert sent[0]["ok"] and _bundle.verify(result["path"]) == []


def test_a_sender_that_fails_at_once_does_not_leave_the_dump_waiting_on_a_full_pipe(tmp_path):
    def broken(*_args, **_kwargs):
        raise _transport.TransportError("connection reset")
    engine, receiver = BigStreamEngine(), Receiver()
    checkpoint = _checkpoint.Checkpoint(engine, params(tmp_path, send={"target": "node2"}), "web", receiver, deliver=broken)
    failed = finishes(checkpoint.take)["error"]
    assert str(failed) == "sending the checkpoint to node2 failed: connection reset (web runs again from its checkpoint)"
    assert receiver.killed and engine.resumed == ["web"] and os.listdir(str(tmp_path)) == []


def test_an_unexpected_error_while_streaming_still_ends_the_sending_thread(tmp_path):
    """Not a failure the checkpoint knows (a bug, say): it surfaces as it is, and the process can end."""
    class Buggy(BigStreamEngine):
        def checkpoint(self, container, bundle_dir, options, handover=None):
            super().checkpoint(container, bundle_dir, options, handover)
            raise RuntimeError("a bug")
    sent, receiver = [], Receiver()
    checkpoint = _checkpoint.Checkpoint(Buggy(), params(tmp_path / "src", send={"target": "node2"}), "web", receiver,
                                        deliver=over_the_wire(tmp_path / "dst", sent))
    assert str(finishes(checkpoint.take)["error"]) == "a bug"
    assert receiver.killed and sent == []
