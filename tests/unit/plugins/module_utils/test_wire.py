"""Both ends of the wire protocol against each other in one process: no SSH, real pipes and sockets."""
import io
import json
import os
import subprocess
import threading
import time

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _wire


@pytest.fixture
def source(tmp_path):
    images = tmp_path / "src"
    partial = _bundle.start(str(images), "c1")
    with open(os.path.join(partial, "pages-1.img"), "wb") as handle:
        handle.write(os.urandom(3 << 20) + b"\0" * (1 << 20))
    with open(os.path.join(partial, "empty.img"), "wb"):
        pass
    manifest = _bundle.finalise(str(images), "c1", {"engine": "criu", "container": {"name": "c", "id": "c"}})
    return str(images / "c1"), manifest


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "dst"
    path.mkdir()
    return path


def transfer(bundle_dir, manifest, target, compress="none", probe=False, pipes=None, final=None, fails=False, until_restored=False):
    """Sender and receiver over two pipes, the receiver in a thread as sshd would run it; ``fails``:
    the receiver refuses, and the sender's error is the answer's."""
    to_receiver_r, to_receiver_w = os.pipe()
    to_sender_r, to_sender_w = os.pipe()
    control, answers = os.fdopen(to_receiver_r, "rb"), os.fdopen(to_sender_r, "rb")
    out_control, out_answers = os.fdopen(to_receiver_w, "wb", buffering=0), os.fdopen(to_sender_w, "wb", buffering=0)
    outcome = {}

    def receiver():
        try:
            outcome["result"] = _wire.receive(str(target), "c1", control, lambda m: out_answers.write(json.dumps(m).encode() + b"\n"))
        except _wire.WireError as exc:
            outcome["error"] = exc
            out_answers.write(json.dumps({"ok": False, "error": str(exc)}).encode() + b"\n")
        out_answers.close()

    thread = threading.Thread(target=receiver)
    thread.start()
    try:
        _wire.await_ready(answers.readline)
        try:
            sent = _wire.send(bundle_dir, manifest, out_control.write, answers.readline, compress, probe, pipes, final, until_restored)
        except _wire.WireError:
            if not fails:
                raise
            sent = None
    finally:
        out_control.close()
        thread.join(10)
    outcome["ended"] = time.monotonic()
    return sent, outcome


@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_roundtrip_over_the_channel_lands_verified_bundle(target, source, compress):
    sent, outcome = transfer(*source, target, compress)
    assert sent["data_path"] == "ssh" and outcome["result"]["ok"]
    assert _bundle.verify(str(target / "c1")) == []
    # Already there: nothing is sent the second time.
    sent, outcome = transfer(*source, target)
    assert sent == {"have": True, "sent_bytes": 0, "data_path": None} and outcome["result"] == {"have": True}


@pytest.mark.parametrize("until_restored", [True, False])
def test_a_receiver_asked_to_stays_until_the_restore_waiting_for_the_bundle_is_over(target, source, until_restored):
    """The marker of a waiting restore holds its pid: the receiver ends when that process does, so the
    source's module returns with the restore over. Unasked (a post-copy handover), it ends at once."""
    restore = subprocess.Popen(["sleep", "30"])
    with open(_wire.wait_marker(str(target), "c1"), "w", encoding="ascii") as handle:
        handle.write("%d\n" % restore.pid)
    threading.Timer(1.0, lambda: (restore.kill(), restore.wait())).start()  # reaped: a zombie still answers kill(pid, 0)
    started = time.monotonic()
    sent, outcome = transfer(*source, target, until_restored=until_restored)
    assert outcome["result"]["ok"] and sent["data_path"] == "ssh"
    assert (outcome["ended"] - started >= 1.0) is until_restored
    assert outcome["ended"] - started < 10


def test_probe_sends_nothing(target, source):
    sent, outcome = transfer(*source, target, probe=True)
    assert sent["sent_bytes"] == 0 and os.listdir(target) == []


def test_a_receiver_that_never_started_is_named(target):
    """A login refused, or a forced command that failed, says so before anything is sent."""
    with pytest.raises(_wire.WireError, match="did not start the receiver: b'sudo: a password is required"):
        _wire.await_ready(io.BytesIO(b"sudo: a password is required\n").readline)
    with pytest.raises(_wire.WireError, match="did not start the receiver$"):
        _wire.await_ready(io.BytesIO(b"").readline)


def plain_stream(bundle_dir, manifest, tamper=None):
    header = json.dumps({"manifest": manifest}).encode() + b"\n"
    records = io.BytesIO()
    for entry in manifest["files"]:
        _wire.send_file(os.path.join(bundle_dir, entry["name"]), "none", records.write)
    records = records.getvalue()
    return io.BytesIO(header + (tamper(records) if tamper else records))


def flip(records):
    records = bytearray(records)
    records[100] ^= 0xFF
    return bytes(records)


def test_corruption_in_transit_leaves_nothing(target, source):
    with pytest.raises(_wire.WireError, match="pages-1.img changed on the way: its SHA-256 differs from the sender's"):
        _wire.receive(str(target), "c1", plain_stream(*source, tamper=flip), lambda m: None)
    assert os.listdir(target) == []


def test_a_file_that_is_not_what_was_checkpointed_is_refused(target, source):
    """The sender's own checksum matches what arrived, but not the manifest's: the file changed on its
    disk since the checkpoint."""
    bundle_dir, manifest = source
    with open(os.path.join(bundle_dir, "pages-1.img"), "r+b") as handle:
        handle.write(b"X")
    with pytest.raises(_wire.WireError, match="pages-1.img does not match its sha256"):
        _wire.receive(str(target), "c1", plain_stream(bundle_dir, manifest), lambda m: None)
    assert os.listdir(target) == []


def test_a_manifest_without_checksums_lands_with_the_senders(tmp_path, target):
    """As a checkpoint sends: the files as CRIU wrote them, the manifest without their SHA-256, which
    the bundle that lands has, as the sender took them, and stamped for a restore in this boot."""
    partial = _bundle.start(str(tmp_path / "src"), "c1")
    with open(os.path.join(partial, "pages-1.img"), "wb") as handle:
        handle.write(os.urandom(3 << 20))
    header = _bundle.header(str(tmp_path / "src"), "c1", {"engine": "criu"})
    assert [set(e) for e in header["files"]] == [{"name", "size"}]
    sent, outcome = transfer(partial, header, target)
    assert outcome["result"]["ok"]
    landed = _bundle.load_manifest(str(target / "c1"))
    assert landed == dict(header, files=[dict(header["files"][0], sha256=sent["sha256"]["pages-1.img"])])
    assert sent["sha256"]["pages-1.img"] == _bundle.sha256_file(os.path.join(partial, "pages-1.img"))
    assert _wire.stamp_holds(str(target / "c1"), ["pages-1.img"])
    # The same manifest offered again: the target has it.
    assert transfer(partial, header, target)[0]["have"] is True


def test_truncated_stream_leaves_nothing(target, source):
    with pytest.raises(_wire.WireError, match="ended early"):
        _wire.receive(str(target), "c1", plain_stream(*source, tamper=lambda f: f[:len(f) // 2]), lambda m: None)
    assert os.listdir(target) == []


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.update(id="other"), "may only deliver checkpoint c1"),
    (lambda m: m.update(id="c1.pre-0"), "may only deliver checkpoint c1"),
    (lambda m: m.update(id="c1.pre-1x"), "may only deliver checkpoint c1"),
    (lambda m: m.update(id="c10"), "may only deliver checkpoint c1"),
    (lambda m: m["files"][0].update(name="../../root/.ssh/authorized_keys"), "bad file name"),
    (lambda m: m["files"][0].update(name="manifest.json"), "bad file name"),
    (lambda m: m["files"][0].update(size=-1), "bad size"),
])
def test_hostile_manifest_refused(target, source, mutate, message):
    manifest = json.loads(json.dumps(source[1]))
    mutate(manifest)
    stream = io.BytesIO(json.dumps({"manifest": manifest}).encode() + b"\n")
    with pytest.raises(_wire.WireError, match=message):
        _wire.receive(str(target), "c1", stream, lambda m: None)
    assert os.listdir(target) == []


def test_oversized_file_refused(target, source):
    bundle_dir, manifest = source
    manifest = json.loads(json.dumps(manifest))
    manifest["files"] = [dict(e, size=10) if e["name"] == "pages-1.img" else e for e in manifest["files"]]
    with pytest.raises(_wire.WireError, match="larger than its manifest"):
        _wire.receive(str(target), "c1", plain_stream(bundle_dir, manifest), lambda m: None)
    assert os.listdir(target) == []


@pytest.mark.parametrize("output", ["pipe", "socket"])
def test_a_link_session_is_spliced_to_its_checkpoints_link_and_no_other(target, output):
    """The one-time key's session, asked for the page link, answers and then carries bytes both ways to
    the unix socket of this checkpoint's link (spliced through a pipe as sshd gives one, or copied); a
    checkpoint with no link is named."""
    import socket
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(_wire.link_socket(str(target), "c1"))
    listener.listen(1)

    def link_end():
        conn, _addr = listener.accept()
        for data in iter(lambda: conn.recv(100), b""):
            conn.sendall(data.upper())
        conn.close()
    threading.Thread(target=link_end, daemon=True).start()
    if output == "pipe":  # as sshd runs a forced command: the input spliced, the output copied
        in_r, in_w = os.pipe()
        control, sender = os.fdopen(in_r, "rb"), os.fdopen(in_w, "wb", buffering=0)
        out_r, out_w = os.pipe()
        reader = os.fdopen(out_r, "rb", buffering=0)
    else:
        sender, theirs = socket.socketpair()
        control, in_r = theirs.makefile("rb"), theirs.fileno()
        reader, out_sock = socket.socketpair()
        out_w = out_sock.fileno()

    def send(data):
        if output == "pipe":
            sender.write(data)
        else:
            sender.sendall(data)

    def end():
        if output == "pipe":
            sender.close()
        else:
            sender.shutdown(socket.SHUT_WR)
    replies = []
    done = {}
    session = threading.Thread(target=lambda: done.setdefault("result", _wire.receive(
        str(target), "c1", control, replies.append, (in_r, out_w))))
    session.start()
    send(b'{"link": true}\n')
    deadline = time.monotonic() + 10
    while len(replies) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert replies == [{"ready": True}, {"link": True}]
    send(b"hello")
    got = reader.recv(100) if output == "socket" else reader.read(100)
    assert got == b"HELLO"
    end()
    session.join(10)
    assert done["result"] == {"link": True}
    with pytest.raises(_wire.WireError, match="no page link for checkpoint c2"):
        _wire.receive(str(target), "c2", io.BytesIO(b'{"link": true}\n'), lambda m: None, (0, 1))


def test_a_pipe_is_widened_to_a_chunk_and_anything_else_left_alone():
    import fcntl
    import socket
    read_end, write_end = os.pipe()
    try:
        _wire.widen_pipe(write_end)
        assert fcntl.fcntl(read_end, getattr(fcntl, "F_GETPIPE_SZ", 1032)) == _wire.CHUNK
    finally:
        os.close(read_end)
        os.close(write_end)
    one, other = socket.socketpair()
    with one, other:
        _wire.widen_pipe(one.fileno())  # not a pipe: no error, nothing changed


def test_the_key_of_a_checkpoint_also_delivers_its_pre_copy_iterations_under_their_own_names(tmp_path, target):
    partial = _bundle.start(str(tmp_path), "c1.pre-2")
    with open(os.path.join(partial, "pages-1.img"), "wb") as handle:
        handle.write(b"dirty pages")
    manifest = _bundle.finalise(str(tmp_path), "c1.pre-2", {"engine": "criu", "parent": None})
    sent, outcome = transfer(str(tmp_path / "c1.pre-2"), manifest, target)
    assert outcome["result"] == {"ok": True, "bytes": 11, "data_path": "ssh"} and not sent["have"]
    assert sorted(os.listdir(target)) == ["c1.pre-2"] and _bundle.verify(str(target / "c1.pre-2")) == []
    assert [_wire.of_checkpoint(name, "c1") for name in ("c1", "c1.pre-1", "c1.pre-9999", "c1.pre-01", "c1.pre-", "c1.pre-1/..")] == \
        [True, True, True, False, False, False]


def streaming_source(tmp_path, content):
    """A partial bundle whose pages-1.img a writer fills through a pipe in its place, as podman exports
    a checkpoint, with the header a streaming checkpoint sends and its closing manifest."""
    images = str(tmp_path / "src")
    partial = _bundle.start(images, "c1")
    with open(os.path.join(partial, "cpuinfo.img"), "wb") as handle:
        handle.write(b"cpu")
    head = _bundle.header(images, "c1", {})
    head["files"].insert(0, {"name": "pages-1.img", "size": None})
    os.mkfifo(os.path.join(partial, "pages-1.img"), 0o600)
    pipe = os.open(os.path.join(partial, "pages-1.img"), os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(pipe, True)

    def writer():
        with open(os.path.join(partial, "pages-1.img"), "wb") as pipe:
            for at in range(0, len(content), 100000):
                pipe.write(content[at:at + 100000])

    threading.Thread(target=writer, daemon=True).start()
    return images, partial, head, {"pages-1.img": pipe}


def test_a_streamed_file_goes_as_it_is_written_and_lands_with_the_closing_manifest(tmp_path, target):
    content = os.urandom(5 << 20)
    images, partial, head, pipes = streaming_source(tmp_path, content)
    closing = []

    def final():
        closing.append(_bundle.header(images, "c1", {"engine": "podman"}))
        return closing[0]

    sent, outcome = transfer(partial, head, target, pipes=pipes, final=final)
    assert outcome["result"]["ok"]
    # Kept here under its name, as it passed; the bundle there has the closing manifest and verifies.
    with open(os.path.join(partial, "pages-1.img"), "rb") as handle:
        assert handle.read() == content
    assert sorted(os.listdir(partial)) == ["cpuinfo.img", "pages-1.img"]
    landed = _bundle.load_manifest(str(target / "c1"))
    assert landed == dict(closing[0], files=[dict(e, sha256=sent["sha256"][e["name"]]) for e in closing[0]["files"]])
    assert {e["name"]: e["size"] for e in landed["files"]} == {"cpuinfo.img": 3, "pages-1.img": 5 << 20}
    assert landed["engine"] == "podman" and _bundle.verify(str(target / "c1")) == []


@pytest.mark.parametrize("lie, message", [
    (lambda m: m["files"][0].update(size=m["files"][0]["size"] + 1), "has 1048576 bytes, manifest says 1048577"),
    (lambda m: m["files"].pop(), "not of the bundle that was sent"),
    (lambda m: m["files"][0].update(size=None), "bad size"),
    (lambda m: m.update(id="c1.pre-1"), "not of the bundle that was sent"),
])
def test_a_closing_manifest_that_is_not_what_arrived_leaves_nothing(tmp_path, target, lie, message):
    images, partial, head, pipes = streaming_source(tmp_path, os.urandom(1 << 20))

    def final():
        manifest = _bundle.header(images, "c1", {})
        manifest["files"].sort(key=lambda e: e["name"] != "pages-1.img")
        lie(manifest)
        return manifest

    _sent, outcome = transfer(partial, head, target, pipes=pipes, final=final, fails=True)
    assert message in str(outcome["error"]) and os.listdir(target) == []
