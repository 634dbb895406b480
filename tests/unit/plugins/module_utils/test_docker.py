from ansible_collections.ferry.migrate.plugins.module_utils import _docker, _engines

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


def test_create_args_recreate_the_container():
    args = _docker.create_args(INSPECT, "cache-node1-node2")
    assert args == [
        "create", "--name=cache", "--label=io.ferry.checkpoint=cache-node1-node2",
        "--hostname=d723295cbfc1", "--workdir=/data",
        "--env=PATH=/usr/bin:/bin", "--env=PASSWORD=-x s3cret",
        "--label=app=cache",
        "--network=fleet", "--ip=172.30.0.5", "--network-alias=cache",
        "--publish=16379:6379/tcp", "--publish=10.0.0.1::9121/tcp",
        "--mount=type=volume,source=cache-data,target=/data",
        "--mount=type=bind,source=/etc/ferry,target=/conf,bind-propagation=rprivate,readonly",
        "--tmpfs=/run:size=1m",
        "--restart=on-failure:3", "--cap-add=NET_ADMIN", "--ulimit=nofile=1024:20000",
        "--memory=268435456", "--cpus=1.5", "--shm-size=67108864", "--init",
        "--entrypoint=/usr/bin/redis-server",
        "sha256:8990cbdf83cf4b8c7e78d3e3b2894355af0dac609085fe0aa547a5ced66a62e3", "--save", "",
    ]


def test_create_args_never_let_a_value_become_an_option():
    # Every option is one argv word "--opt=value"; the image (sha256:...) ends the options.
    args = _docker.create_args(INSPECT, "c")
    image = args.index(INSPECT["Image"])
    assert all(arg.startswith("--") and "=" in arg for arg in args[1:image] if arg not in ("--init",))


def test_create_args_keep_an_empty_entrypoint_empty():
    inspect = dict(INSPECT, Config=dict(INSPECT["Config"], Entrypoint=None, Cmd=["sh", "-c", "sleep 1"]))
    args = _docker.create_args(inspect, "c")
    assert args[-5:] == ["--entrypoint=", INSPECT["Image"], "sh", "-c", "sleep 1"]


def test_create_args_on_the_default_bridge():
    inspect = {"Id": "ab" * 32, "Name": "/c", "Image": "sha256:01", "Config": {"Cmd": ["sh"]},
               "HostConfig": {"NetworkMode": "default", "RestartPolicy": {"Name": "no"}},
               "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}}}
    assert _docker.create_args(inspect, "c") == ["create", "--name=c", "--label=io.ferry.checkpoint=c",
                                                 "--network=default", "--entrypoint=", "sha256:01", "sh"]


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
                    "rss_bytes": 0, "cpu": 0.0, "checkpointed": False, "network_mode": "fleet"}


def test_api_version():
    assert _docker.api_version("1.41") == (1, 41)
    assert _docker.api_version("") < _docker.MIN_API_VERSION
    assert _docker.api_version(None) < _docker.MIN_API_VERSION


def test_restart_policy():
    assert _engines.restart_policy({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}) == "always"
    assert _engines.restart_policy({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}) == "on-failure:3"
    assert _engines.restart_policy({"RestartPolicy": {"Name": "no"}}) is None
    assert _engines.restart_policy({}) is None
