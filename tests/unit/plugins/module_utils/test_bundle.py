import json
import os

import pytest
from hypothesis import given, strategies as st

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _wire


def make_bundle(images_dir, checkpoint_id="c1", files=None):
    partial = _bundle.start(str(images_dir), checkpoint_id)
    for name, data in (files or {"pages-1.img": b"x" * 5000, "pstree.img": b"tree"}).items():
        with open(os.path.join(partial, name), "wb") as handle:
            handle.write(data)
    return _bundle.finalise(str(images_dir), checkpoint_id, {"engine": "criu", "container": {"name": "c", "id": "c"}})


def test_finalise_writes_private_verified_bundle(tmp_path):
    manifest = make_bundle(tmp_path)
    path = tmp_path / "c1"
    assert not (tmp_path / ".partial-c1").exists()
    assert oct(path.stat().st_mode & 0o777) == "0o700"
    assert all(oct((path / f["name"]).stat().st_mode & 0o777) == "0o600" for f in manifest["files"])
    assert [f["name"] for f in manifest["files"]] == ["pages-1.img", "pstree.img"]
    assert _bundle.total_bytes(manifest) == 5004
    assert _bundle.verify(str(path)) == []


@pytest.mark.parametrize("damage, expected", [
    (lambda p: (p / "pages-1.img").write_bytes(b"y" * 5000), "pages-1.img does not match its sha256"),
    (lambda p: (p / "pages-1.img").write_bytes(b"x" * 10), "pages-1.img has 10 bytes, manifest says 5000"),
    (lambda p: (p / "pstree.img").unlink(), "missing file pstree.img"),
    (lambda p: (p / "evil.img").write_bytes(b""), "unexpected file evil.img"),
])
def test_verify_names_each_problem(tmp_path, damage, expected):
    make_bundle(tmp_path)
    damage(tmp_path / "c1")
    assert expected in _bundle.verify(str(tmp_path / "c1"))


def test_a_bundle_hashed_in_this_boot_is_not_hashed_again_until_a_file_changes_or_the_host_restarts(tmp_path, monkeypatch):
    make_bundle(tmp_path)
    path = str(tmp_path / "c1")
    hashed = []
    real = _bundle.sha256_file
    monkeypatch.setattr(_bundle, "sha256_file", lambda name: hashed.append(os.path.basename(name)) or real(name))
    assert _bundle.verified(path) and hashed == []  # the stamp finalise wrote holds
    assert _bundle.verify(path) == [] and len(hashed) == 2  # checkpoint_info's verify always hashes
    hashed.clear()
    monkeypatch.setattr(_wire, "_boot_id", lambda: "another-boot")  # a crash may have lost what the page cache held
    assert _bundle.verified(path) and sorted(hashed) == ["pages-1.img", "pstree.img"]
    monkeypatch.undo()
    (tmp_path / "c1" / "pages-1.img").write_bytes(b"y" * 5000)  # same size, written again
    with pytest.raises(_bundle.BundleError, match="pages-1.img does not match its sha256"):
        _bundle.verified(path)


def test_manifest_with_escaping_name_is_rejected(tmp_path):
    make_bundle(tmp_path)
    manifest_path = tmp_path / "c1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][0]["name"] = "../../etc/passwd"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(_bundle.BundleError, match="not a plain file name"):
        _bundle.load_manifest(str(tmp_path / "c1"))


@pytest.mark.parametrize("bad", ["", ".hidden", "../x", "a/b", "a..b", "x" * 129, "a b", "-rf", None])
def test_check_id_rejects(bad):
    with pytest.raises(_bundle.BundleError):
        _bundle.check_id(bad)


@given(st.text(max_size=140))
def test_accepted_ids_stay_inside_images_dir(candidate):
    try:
        _bundle.check_id(candidate)
    except _bundle.BundleError:
        return
    path = _bundle.final_path("/var/lib/ferry", candidate)
    assert os.path.dirname(os.path.normpath(path)) == "/var/lib/ferry"


def test_remove_takes_partial_and_final(tmp_path):
    make_bundle(tmp_path)
    _bundle.start(str(tmp_path), "c1")
    assert _bundle.remove(str(tmp_path), "c1")
    assert os.listdir(tmp_path) == []
    assert not _bundle.remove(str(tmp_path), "c1")


def _bundle_of(images, bundle_id, data, parent=None):
    partial = _bundle.start(str(images), bundle_id)
    with open(os.path.join(partial, "pages-1.img"), "wb") as handle:
        handle.write(data)
    return _bundle.finalise(str(images), bundle_id, {"engine": "criu", "parent": parent})


def test_a_pre_copy_chain_verifies_link_by_link_and_gets_criu_s_parent_links(tmp_path):
    first = _bundle_of(tmp_path, "c1.pre-1", b"all pages")
    second = _bundle_of(tmp_path, "c1.pre-2", b"dirty pages", _bundle.parent_of(first))
    final = _bundle_of(tmp_path, "c1", b"last pages", _bundle.parent_of(second))
    chain = _bundle.verified_chain(str(tmp_path), final)
    assert [m["id"] for m in chain] == ["c1.pre-2", "c1.pre-1"]
    _bundle.link_chain(str(tmp_path), [final] + chain)
    _bundle.link_chain(str(tmp_path), [final] + chain)  # again: nothing to do
    assert os.readlink(tmp_path / "c1" / "parent") == "../c1.pre-2" and os.readlink(tmp_path / "c1.pre-2" / "parent") == "../c1.pre-1"
    assert not os.path.lexists(tmp_path / "c1.pre-1" / "parent")
    # The links are the only thing a bundle holds beyond its files, and only to the parent it names.
    assert _bundle.verify(str(tmp_path / "c1")) == [] and _bundle.verify(str(tmp_path / "c1.pre-1")) == []
    os.symlink("../c1", str(tmp_path / "c1.pre-1" / "parent"))
    assert _bundle.verify(str(tmp_path / "c1.pre-1")) == ["unexpected file parent"]
    # Cleanup takes the whole chain, and only this checkpoint's.
    _bundle_of(tmp_path, "c10.pre-1", b"another checkpoint's")
    assert _bundle.remove(str(tmp_path), "c1")
    assert os.listdir(tmp_path) == ["c10.pre-1"]


@pytest.mark.parametrize("damage, message", [
    (lambda images: open(os.path.join(images, "c1.pre-1", "pages-1.img"), "ab").write(b"!"), "c1.pre-1 does not verify"),
    (lambda images: _bundle_of(images, "c1.pre-1", b"other pages"), "not the one it was dumped on"),
    (lambda images: _bundle.remove_tree(os.path.join(images, "c1.pre-1")), "no readable manifest"),
])
def test_a_chain_with_a_link_missing_damaged_or_replaced_is_refused(tmp_path, damage, message):
    final = _bundle_of(tmp_path, "c1", b"last pages", _bundle.parent_of(_bundle_of(tmp_path, "c1.pre-1", b"all pages")))
    damage(str(tmp_path))
    with pytest.raises(_bundle.BundleError, match=message):
        _bundle.verified_chain(str(tmp_path), final)


@pytest.mark.parametrize("parent", [{"id": "c2.pre-1", "digest": "0"}, {"id": "c1", "digest": "0"}, {"id": "../x"}, "c1.pre-1"])
def test_a_parent_that_is_not_an_iteration_of_the_same_checkpoint_is_refused(tmp_path, parent):
    final = _bundle_of(tmp_path, "c1", b"last pages", parent)
    with pytest.raises(_bundle.BundleError, match="not one of its pre-copy iterations"):
        _bundle.verified_chain(str(tmp_path), final)
