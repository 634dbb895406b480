from ansible_collections.ferry.migrate.plugins.module_utils import _engines

PODMAN = {"Name": "redis", "Id": "c1d5e8a0b7f34a9c8e2d1f0a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c"}
DOCKER = {"Name": "/redis", "Id": PODMAN["Id"]}


def test_is_container_by_name_or_id():
    for inspect in (PODMAN, DOCKER):
        assert _engines.is_container(inspect, "redis")
        assert _engines.is_container(inspect, PODMAN["Id"])
        assert _engines.is_container(inspect, PODMAN["Id"][:12])


def test_a_short_name_is_not_an_id_prefix():
    # `podman inspect c1` answers with this container, which is not the one named c1
    assert not _engines.is_container(PODMAN, "c1")
    assert not _engines.is_container(PODMAN, "c1d5e8a0b7f")
    assert not _engines.is_container(PODMAN, "redis2")
