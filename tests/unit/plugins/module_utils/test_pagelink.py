"""The parts of a stream over CRIU's TLS that are plain logic: its credentials on disk, what its page
server wrote, and what a failed dump's log says happened."""
import os
import stat

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _checkpoint, _pagelink, _tree

CREDENTIALS = {"ca": "CA PEM\n", "cert": "CERT PEM\n", "key": "KEY PEM\n"}


def test_credentials_go_to_a_private_directory_readable_by_the_owner_only(tmp_path):
    directory = _bundle.credentials_path(str(tmp_path), "mem-node1-to-node2")
    paths = _pagelink.tls_files(directory, CREDENTIALS)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for name, text in CREDENTIALS.items():
        assert open(paths[name]).read() == text
        assert stat.S_IMODE(os.stat(paths[name]).st_mode) == 0o600


def test_credentials_are_never_written_through_a_planted_link(tmp_path):
    directory = _bundle.credentials_path(str(tmp_path), "mem")
    os.makedirs(directory)
    os.symlink(str(tmp_path / "elsewhere"), os.path.join(directory, "key.pem"))
    try:
        _pagelink.tls_files(directory, CREDENTIALS)
    except OSError:
        pass
    else:
        raise AssertionError("a symlink in the credentials' place was followed")
    assert not (tmp_path / "elsewhere").exists()


def test_stop_target_removes_the_credentials_and_the_pages(tmp_path):
    images = str(tmp_path)
    _pagelink.tls_files(_bundle.credentials_path(images, "mem"), CREDENTIALS)
    os.makedirs(_pagelink.pages_dir(images, "mem"))
    assert _pagelink.stop_target(images, "mem") is True
    assert os.listdir(images) == []
    assert _pagelink.stop_target(images, "mem") is False


def test_page_bytes_counts_page_images_only(tmp_path):
    (tmp_path / "pages-1.img").write_bytes(b"x" * 8192)
    (tmp_path / "pages-65537.img").write_bytes(b"x" * 4096)
    (tmp_path / "pagemap-1.img").write_bytes(b"y" * 100)
    (tmp_path / "page-server.log").write_text("log")
    assert _pagelink.page_bytes(str(tmp_path)) == 12288


def test_a_failed_tls_dump_names_the_page_server_it_could_not_reach():
    link = {"target": "192.0.2.12", "tls": {"port": 40123}}
    unreachable = _tree._tls_why(link, "(00.1) Connecting to server 192.0.2.12:40123\n(00.1) Can't connect to server 192.0.2.12:40123\n")
    assert "could not reach the target's TLS page server at 192.0.2.12:40123" in unreachable and "ssh" in unreachable
    assert "TLS handshake" in _tree._tls_why(link, "Error (criu/tls.c:226): tls: Invalid certificate\n")
    assert _tree._tls_why(link, "Error (criu/cr-dump.c): something else\n") == ""


def test_removing_a_checkpoint_removes_credentials_a_killed_dump_left(tmp_path):
    """Rollback removes the checkpoint on both hosts; a source killed mid-dump left its credentials."""
    images = str(tmp_path)
    _pagelink.tls_files(_bundle.credentials_path(images, "mem"), CREDENTIALS)
    assert _checkpoint.remove(images, "mem", check_mode=True)["changed"] is True
    assert os.listdir(images) == [".tls-mem"]
    assert _checkpoint.remove(images, "mem", check_mode=False)["changed"] is True
    assert os.listdir(images) == []
