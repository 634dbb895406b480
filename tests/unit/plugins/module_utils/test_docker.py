import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _docker, _engine

# Trimmed from a real `docker inspect` of Docker 20.10 (a Redis published on a port, with a volume).
INSPECT = {
    "Id": "d723295cbfc1f480a9d4f811a3eb73e4c2b8f29d0ab632b7f8cd148be20909d6",
    "Name": "/cache",
    "Image": "sha256:8990cbdf83cf4b8c7e78d3e3b2894355af0dac609085fe0aa547a5ced66a62e3",
    "State": {"Status": "exited", "Pid": 0},
    "Config": {
        "Hostname": "d723295cbfc1", "Domainname": "", "User": "", "WorkingDir": "/data", "StopSignal": "",
        "Env": ["PATH=/usr/bin:/bin", "PASSWORD=-x s3cret"],
        "Labels": {"app": "cache", "io.ferry.checkpoint": "older"},
        "Cmd": ["--save", ""], "Entrypoint": ["/usr/bin/redis-server"], "Image": "localhost/ferry/redis:lab",
        "Tty": False, "OpenStdin": False,
    },
    "HostConfig": {
        "NetworkMode": "fleet", "PortBindings": {"6379/tcp": [{"HostIp": "", "HostPort": "16379"}],
                                                 "9121/tcp": [{"HostIp": "10.0.0.1", "HostPort": ""}]},
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
        "CapAdd": ["NET_ADMIN"], "CapDrop": None, "SecurityOpt": None, "Privileged": False, "Init": True,
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 20000}], "Memory": 268435456, "NanoCpus": 1500000000,
        "ShmSize": 67108864, "Tmpfs": {"/run": "size=1m"}, "ExtraHosts": None, "Dns": [], "ReadonlyRootfs": False,
    },
    "Mounts": [
        {"Type": "volume", "Name": "cache-data", "Source": "/var/lib/docker/volumes/cache-data/_data",
         "Destination": "/data", "RW": True},
        {"Type": "bind", "Source": "/etc/ferry", "Destination": "/conf", "RW": False, "Propagation": "rprivate"},
    ],
    "NetworkSettings": {"Networks": {"fleet": {"IPAMConfig": {"IPv4Address": "172.30.0.5"},
                                               "Aliases": ["cache", "d723295cbfc1"], "IPAddress": "172.30.0.5"}}},
    "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": "/var/lib/docker/overlay2/abc/diff"}},
}


def test_the_whole_inspect_is_re_created_through_the_api():
    inspect = dict(INSPECT, HostConfig=dict(INSPECT["HostConfig"], PidsLimit=64, Sysctls={"net.ipv4.ip_forward": "1"},
                                            LogConfig={"Type": "json-file", "Config": {"max-size": "1m", "max-file": "3"}},
                                            CpusetCpus="0", GroupAdd=["audio"]),
                   Config=dict(INSPECT["Config"], Healthcheck={"Test": ["CMD", "true"], "Interval": 1000000000}))
    body, networks = _docker.create_request(inspect, "cache-node1-node2")
    assert body["Image"] == INSPECT["Image"]  # by ID: the very image, whatever its tag means on the target
    assert body["Labels"] == {"app": "cache", "io.ferry.checkpoint": "cache-node1-node2"}
    assert body["HostConfig"] == inspect["HostConfig"] and body["Healthcheck"] == inspect["Config"]["Healthcheck"]
    for key in ("Env", "Cmd", "Entrypoint", "WorkingDir", "Hostname"):
        assert body[key] == INSPECT["Config"][key], key
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"fleet": {"IPAMConfig": {"IPv4Address": "172.30.0.5"}, "Aliases": ["cache"]}}}
    assert networks == {}
    assert _docker.cannot_move(inspect) == []


def test_extra_networks_are_connected_after_create_and_the_default_bridge_is_bridge():
    inspect = {"Id": "ab" * 32, "Name": "/c", "Image": "sha256:01", "Config": {"Cmd": ["sh"]},
               "HostConfig": {"NetworkMode": "default", "RestartPolicy": {"Name": "no"}},
               "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"},
                                                "back": {"IPAMConfig": {"IPv4Address": "10.9.0.4"}, "Aliases": ["abababababab", "c"]}}}}
    body, networks = _docker.create_request(inspect, "c")
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"bridge": {}}}
    assert networks == {"back": {"IPAMConfig": {"IPv4Address": "10.9.0.4"}, "Aliases": ["c"]}}


def test_settings_that_stay_on_the_source_host_are_named():
    host = dict(INSPECT["HostConfig"], NetworkMode="container:db", PidMode="host", IpcMode="shareable", VolumesFrom=["data"], Links=["/db:/c/db"])
    problems = _docker.cannot_move(dict(INSPECT, HostConfig=host))
    assert [p.split("=")[0] for p in problems] == ["HostConfig.NetworkMode", "HostConfig.PidMode", "HostConfig.VolumesFrom", "HostConfig.Links"]
    assert "another container's namespace" in problems[0] and _docker.summarise(dict(INSPECT, HostConfig=host))["cannot_move"] == problems


def test_the_daemon_socket_is_found_as_the_cli_finds_it():
    assert _docker.socket_path(None) == "/var/run/docker.sock" and _docker.socket_path("unix:///run/d.sock") == "/run/d.sock"
    with pytest.raises(_engine.EngineError, match="unix socket"):
        _docker.socket_path("tcp://10.0.0.1:2375")


def test_checkpoint_args():
    assert _docker.checkpoint_args("abc", "ferry", {}) == ["checkpoint", "create", "abc", "ferry"]
    assert _docker.checkpoint_args("abc", "ferry", {"leave_running": True, "tcp_established": True}) == \
        ["checkpoint", "create", "--leave-running", "abc", "ferry"]


def test_summarise_has_podmans_keys_and_bare_image_ids():
    info = _docker.summarise(INSPECT)
    assert info == {"engine": "docker", "name": "cache", "id": INSPECT["Id"],
                    "image_id": "8990cbdf83cf4b8c7e78d3e3b2894355af0dac609085fe0aa547a5ced66a62e3",
                    "image_name": "localhost/ferry/redis:lab", "state": "exited", "pid": None,
                    "labels": {"app": "cache", "io.ferry.checkpoint": "older"}, "addresses": ["172.30.0.5"], "networks": ["fleet"],
                    "rss_bytes": 0, "cpu": 0.0, "checkpointed": False, "network_mode": "fleet", "cannot_move": [],
                    "host_paths": ["/etc/ferry"]}


def test_api_version():
    assert _docker.api_version("1.41") == (1, 41)
    assert _docker.api_version("") < _docker.MIN_API_VERSION
    assert _docker.api_version(None) < _docker.MIN_API_VERSION


def test_restart_policy():
    assert _engine.restart_policy({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}) == "always"
    assert _engine.restart_policy({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}) == "on-failure:3"
    assert _engine.restart_policy({"RestartPolicy": {"Name": "no"}}) is None
    assert _engine.restart_policy({}) is None


def test_the_hosts_cgroup_namespace_is_no_obstacle():
    # Docker 20.10 on cgroup v1 runs every container with CgroupnsMode=host; those move.
    assert _docker.cannot_move(dict(INSPECT, HostConfig=dict(INSPECT["HostConfig"], CgroupnsMode="host", UTSMode=""))) == []
