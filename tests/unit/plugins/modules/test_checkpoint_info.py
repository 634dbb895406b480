import io
import tarfile

from ansible_collections.ferry.migrate.plugins.modules import checkpoint_info


def _archive(path, names):
    with tarfile.open(path / "checkpoint.tar", "w") as tar:
        for name, size in names:
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(b"\0" * size))


def test_memory_is_counted_in_podmans_archive(tmp_path):
    _archive(tmp_path, [("checkpoint/pages-1.img", 4096), ("checkpoint/pages-2.img", 8192),
                        ("rootfs-diff.tar", 100), ("checkpoint/pagemap-1.img", 10)])
    assert checkpoint_info.criu_images(str(tmp_path)) == (None, 12288)


def test_memory_is_counted_in_the_docker_engines_archive(tmp_path):
    _archive(tmp_path, [("./", 0), ("./pages-1.img", 4096), ("./descriptors.json", 10), ("./sub/pages-9.img", 50)])
    assert checkpoint_info.criu_images(str(tmp_path)) == (None, 4096)


def test_loose_images(tmp_path):
    (tmp_path / "pages-3.img").write_bytes(b"\0" * 100)
    (tmp_path / "inventory.img").write_bytes(b"\0")
    assert checkpoint_info.criu_images(str(tmp_path)) == (None, 100)
