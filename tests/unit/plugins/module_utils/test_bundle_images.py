import io
import tarfile

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle
from test_bundle import make_bundle


def _archive(path, names):
    with tarfile.open(path / "checkpoint.tar", "w") as tar:
        for name, size in names:
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(b"\0" * size))


def test_memory_is_counted_in_podmans_archive(tmp_path):
    _archive(tmp_path, [("checkpoint/pages-1.img", 4096), ("checkpoint/pages-2.img", 8192),
                        ("rootfs-diff.tar", 100), ("checkpoint/pagemap-1.img", 10)])
    assert _bundle.criu_images(str(tmp_path)) == (None, 12288)


def test_memory_is_counted_in_the_docker_engines_archive(tmp_path):
    _archive(tmp_path, [("./", 0), ("./pages-1.img", 4096), ("./descriptors.json", 10), ("./sub/pages-9.img", 50)])
    assert _bundle.criu_images(str(tmp_path)) == (None, 4096)


def test_loose_images(tmp_path):
    (tmp_path / "pages-3.img").write_bytes(b"\0" * 100)
    (tmp_path / "inventory.img").write_bytes(b"\0")
    assert _bundle.criu_images(str(tmp_path)) == (None, 100)


def test_inventory_lists_finished_bundles_and_names_what_does_not_verify(tmp_path):
    for checkpoint_id in ("b", "a"):
        make_bundle(tmp_path, checkpoint_id, {"pages-1.img": b"x" * 300})
    _bundle.start(str(tmp_path), "half")  # a partial bundle is not a checkpoint yet
    (tmp_path / "b" / "pages-1.img").write_bytes(b"y" * 300)
    found = {entry["id"]: entry for entry in _bundle.inventory(str(tmp_path), None, True)}
    assert sorted(found) == ["a", "b"]
    assert found["a"]["verified"] and found["a"]["memory_bytes"] == 300 and found["a"]["problems"] == []
    assert not found["b"]["verified"] and found["b"]["problems"] == ["pages-1.img does not match its sha256"]
    unchecked = _bundle.inventory(str(tmp_path), "b", False)
    assert [(e["id"], e["verified"], e["problems"]) for e in unchecked] == [("b", False, [])]


def test_inventory_of_a_missing_bundle_says_so_and_a_bad_id_is_refused(tmp_path):
    [entry] = _bundle.inventory(str(tmp_path), "gone", True)
    assert entry["manifest"] is None and "gone" in entry["problems"][0]
    with pytest.raises(_bundle.BundleError):
        _bundle.inventory(str(tmp_path), "../etc", True)
    assert _bundle.inventory(str(tmp_path / "absent"), None, True) == []
