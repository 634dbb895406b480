"""The sender's framing against the real receiver, in one process (no SSH)."""
import io
import json
import os

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _receiver, _transport


def stream_for(bundle_dir, manifest, compress="none", tamper=None):
    data = json.dumps({"manifest": manifest, "compress": compress}).encode() + b"\n"
    frames = b"".join(f for e in manifest["files"] for f in _transport._frames(os.path.join(bundle_dir, e["name"]), compress))
    return io.BytesIO(data + (tamper(frames) if tamper else frames))


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


@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_roundtrip_lands_verified_bundle(tmp_path, source, compress):
    bundle_dir, manifest = source
    target = tmp_path / "dst"
    target.mkdir()
    replies = []
    result = _receiver.receive(str(target), "c1", stream_for(bundle_dir, manifest, compress), replies.append)
    assert replies[0] == {"have": False} and result["ok"]
    assert _bundle.verify(str(target / "c1")) == []
    # Already there: nothing is sent the second time.
    replies = []
    assert _receiver.receive(str(target), "c1", stream_for(bundle_dir, manifest), replies.append) == {"have": True}


def test_corruption_in_transit_leaves_nothing(tmp_path, source):
    bundle_dir, manifest = source
    target = tmp_path / "dst"
    target.mkdir()

    def flip(frames):
        frames = bytearray(frames)
        frames[100] ^= 0xFF
        return bytes(frames)

    with pytest.raises(_receiver.ReceiveError, match="does not match its sha256"):
        _receiver.receive(str(target), "c1", stream_for(bundle_dir, manifest, tamper=flip), lambda m: None)
    assert os.listdir(target) == []


def test_truncated_stream_leaves_nothing(tmp_path, source):
    bundle_dir, manifest = source
    target = tmp_path / "dst"
    target.mkdir()
    with pytest.raises(_receiver.ReceiveError, match="ended early"):
        _receiver.receive(str(target), "c1", stream_for(bundle_dir, manifest, tamper=lambda f: f[:len(f) // 2]), lambda m: None)
    assert os.listdir(target) == []


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.update(id="other"), "may only deliver checkpoint c1"),
    (lambda m: m["files"][0].update(name="../../root/.ssh/authorized_keys"), "bad file name"),
    (lambda m: m["files"][0].update(name="manifest.json"), "bad file name"),
    (lambda m: m["files"][0].update(size=-1), "bad size"),
])
def test_hostile_manifest_refused(tmp_path, source, mutate, message):
    bundle_dir, manifest = source
    manifest = json.loads(json.dumps(manifest))
    mutate(manifest)
    target = tmp_path / "dst"
    target.mkdir()
    stream = io.BytesIO(json.dumps({"manifest": manifest}).encode() + b"\n")
    with pytest.raises(_receiver.ReceiveError, match=message):
        _receiver.receive(str(target), "c1", stream, lambda m: None)
    assert os.listdir(target) == []


def test_oversized_file_refused(tmp_path, source):
    bundle_dir, manifest = source
    manifest = json.loads(json.dumps(manifest))
    manifest["files"] = [dict(e, size=10) if e["name"] == "pages-1.img" else e for e in manifest["files"]]
    target = tmp_path / "dst"
    target.mkdir()
    with pytest.raises(_receiver.ReceiveError, match="larger than its manifest"):
        _receiver.receive(str(target), "c1", stream_for(bundle_dir, manifest), lambda m: None)
    assert os.listdir(target) == []
