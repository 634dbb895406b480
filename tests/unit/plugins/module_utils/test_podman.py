import json

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _criu, _engine, _podman

CRIU = "/usr/local/sbin/criu"


def test_checkpoint_args_move_keeps_source_restorable():
    args = _podman.checkpoint_args("abc", "/b/checkpoint.tar", {}, CRIU)
    assert args == ["container", "checkpoint", "--export", "/b/checkpoint.tar", "--print-stats", "--compress", "none",
                    "--runtime-flag", "criu=" + CRIU, "--keep", "abc"]


def test_checkpoint_args_options():
    options = {"leave_running": True, "tcp_established": True, "file_locks": True, "compress": "zstd"}
    args = _podman.checkpoint_args("abc", "/b/c.tar", options, CRIU)
    assert "--leave-running" in args and "--keep" not in args
    assert {"--tcp-established", "--file-locks"} <= set(args)
    assert args[args.index("--compress") + 1] == "zstd"
    assert args[-1] == "abc"


def test_restore_args_import_and_resume():
    assert _podman.restore_args("/b/c.tar", {"tcp_established": True}, CRIU, True)[-3:] == ["--tcp-established", "--import", "/b/c.tar"]
    assert _podman.restore_args("abc", {}, CRIU, False)[-2:] == ["--keep", "abc"]


def test_pre_copy_pre_checkpoints_once_then_dumps_and_imports_what_changed_on_it():
    assert _podman.pre_checkpoint_args("abc", "/p/checkpoint.tar", CRIU) == [
        "container", "checkpoint", "--pre-checkpoint", "--export", "/p/checkpoint.tar", "--print-stats", "--compress", "none",
        "--runtime-flag", "criu=" + CRIU, "abc"]
    final = _podman.checkpoint_args("abc", "/b/checkpoint.tar", {"parent": "web.pre-1"}, CRIU)
    assert final[-3:] == ["--keep", "--with-previous", "abc"]
    assert "--with-previous" not in _podman.checkpoint_args("abc", "/b/checkpoint.tar", {}, CRIU)
    assert _podman.restore_args("/b/checkpoint.tar", {}, CRIU, True, "/b/parent/checkpoint.tar")[-4:] == [
        "--import-previous", "/b/parent/checkpoint.tar", "--import", "/b/checkpoint.tar"]


def test_parse_stats():
    out = """{
    "podman_checkpoint_duration": 290019,
    "container_statistics": [{"Id": "4d", "runtime_checkpoint_duration": 246374,
        "criu_statistics": {"freezing_time": 101835, "frozen_time": 68214, "memdump_time": 665,
                            "memwrite_time": 142, "pages_scanned": 46, "pages_written": 32}}]
}"""
    stats = _podman.parse_stats(out)
    assert stats["frozen_time"] == 68214 and stats["pages_written"] == 32
    assert stats["podman_checkpoint_duration"] == 290019 and stats["runtime_checkpoint_duration"] == 246374
    assert _podman.parse_stats("no json here") == {}


def test_summarise_inspect():
    info = _podman.summarise({"Name": "redis", "Id": "4d", "Image": "01", "ImageName": "localhost/r:lab",
                              "State": {"Status": "exited", "Pid": 0, "Checkpointed": True},
                              "Config": {"Labels": {"app": "cache"}}, "HostConfig": {"NetworkMode": "none"},
                              "Mounts": [{"Type": "bind", "Source": "/srv/conf"}, {"Type": "volume", "Source": "/var/lib/containers/v"}],
                              "NetworkSettings": {"Networks": {"a": {"IPAddress": "10.0.0.2"}, "b": {"IPAddress": ""}}}})
    assert info == {"engine": "podman", "name": "redis", "id": "4d", "image_id": "01", "image_name": "localhost/r:lab",
                    "state": "exited", "pid": None, "labels": {"app": "cache"}, "addresses": ["10.0.0.2"], "networks": ["a", "b"],
                    "rss_bytes": 0, "cpu": 0.0, "checkpointed": True, "network_mode": "none", "cannot_move": [],
                    "host_paths": ["/srv/conf"]}


def test_criu_errors_are_read_from_the_log_runc_names(tmp_path):
    log = tmp_path / "dump.log"
    log.write_text("(00.01) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE\n(00.02) fine\n"
                   "(00.17) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.\n")
    stderr = 'level=error msg="criu failed: type NOTIFY errno 0\\nlog file: %s"' % log
    assert _criu.runc_log_errors(stderr) == "CRIU: (00.17) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.\n"
    assert _criu.runc_log_errors("no log named") == ""


class PodmanHost:
    """podman's answers on a host with one image and two networks, one a macvlan on eth0; every call recorded."""

    def __init__(self):
        self.calls = []

    def get_bin_path(self, name, required=False):
        return "/usr/bin/" + name

    def run_command(self, argv):
        self.calls.append(argv[1:])
        answers = {
            ("version", "--format", "json"): '{"Client": {"Version": "4.3.1"}}',
            ("images", "-q", "--no-trunc"): "sha256:" + "a" * 64 + "\n",
            ("network", "ls", "--format", "{{.Name}}"): "podman\nfabric\n",
            ("network", "inspect", "fabric", "podman"): json.dumps([
                {"name": "fabric", "driver": "macvlan", "network_interface": "eth0"}, {"name": "podman", "driver": "bridge"}]),
        }
        if tuple(argv[1:]) in answers:
            return 0, answers[tuple(argv[1:])], ""
        return 125, "", "no such object"


def test_a_prepared_engine_answers_a_restores_questions_without_asking_again():
    host = PodmanHost()
    engine = _podman.PodmanEngine(host, _criu.Criu("/usr/sbin/criu"))
    engine.prepare()
    asked = len(host.calls)
    assert engine.image_present("a" * 64) and engine.image_present("sha256:" + "a" * 64)
    assert engine.parent_devices(["fabric"]) == ["eth0"] and engine.parent_devices(["podman"]) == []
    assert len(host.calls) == asked
    # An image not found ahead may have been loaded since, and a network defined since is asked about.
    assert not engine.image_present("b" * 64) and host.calls[-1] == ["image", "inspect", "--format", "{{.Id}}", "b" * 64]
    with pytest.raises(_engine.EngineError, match="podman network inspect"):
        engine.parent_devices(["fabric", "later"])
