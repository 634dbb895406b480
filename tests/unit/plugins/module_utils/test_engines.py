import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _engine

PODMAN = {"Name": "redis", "Id": "c1d5e8a0b7f34a9c8e2d1f0a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c"}
DOCKER = {"Name": "/redis", "Id": PODMAN["Id"]}


def test_is_container_by_name_or_id():
    for inspect in (PODMAN, DOCKER):
        assert _engine.is_container(inspect, "redis")
        assert _engine.is_container(inspect, PODMAN["Id"])
        assert _engine.is_container(inspect, PODMAN["Id"][:12])


def test_a_short_name_is_not_an_id_prefix():
    # `podman inspect c1` answers with this container, which is not the one named c1
    assert not _engine.is_container(PODMAN, "c1")
    assert not _engine.is_container(PODMAN, "c1d5e8a0b7f")
    assert not _engine.is_container(PODMAN, "redis2")


def test_a_tree_of_any_valid_name_has_a_pidfile_and_bad_names_are_refused():
    from ansible_collections.ferry.migrate.plugins.module_utils import _tree
    assert _tree.pid_file_name("redis") == "redis.pid"
    long = "t" * 253  # the longest container name: its pidfile name must still fit in 255 bytes
    assert len(_tree.pid_file_name(long)) <= 255 and _tree.pid_file_name(long) != _tree.pid_file_name("t" * 252 + "u")
    assert _tree.pid_file_name(_tree.pid_file_name(long)[:-4]) == _tree.pid_file_name(long)  # listed names map back to the file
    for bad in ("../x", "-l", "", "a/b"):
        with pytest.raises(_engine.EngineError, match="must be a container name"):
            _tree.pid_file_name(bad)


def test_every_engine_says_what_it_can_do():
    from ansible_collections.ferry.migrate.plugins.module_utils import _engines
    from ansible_collections.ferry.migrate.plugins.plugin_utils import _methods
    assert set(_engines.ENGINES) == {"podman", "docker", "criu", "lxc"}
    assert [_engines.engine_class(name).name for name in _engines.ENGINES] == list(_engines.ENGINES)
    for name in _engines.ENGINES:
        caps = _engines.capabilities(name)
        assert set(caps) == {"methods", "carries_image", "exec", "identity", "shares_files", "pre_dumps", "streams"}, name
        assert caps["pre_dumps"] is None or ("pre_copy" in caps["methods"] and caps["pre_dumps"] >= 1), name
        assert "stop_and_copy" in caps["methods"] and set(caps["methods"]) <= set(_methods.METHODS), name
        assert isinstance(caps["exec"], list) and caps["identity"], name
    assert _engines.capabilities("podman")["exec"] == ["podman", "exec", "{id}"] and _engines.capabilities("criu")["exec"] == []
    assert [name for name in _engines.ENGINES if _engines.capabilities(name)["shares_files"]] == ["lxc"]
