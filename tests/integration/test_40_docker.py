"""The docker engine on the lab: each lab host runs its own Docker daemon (experimental mode)."""
import json
import time

import pytest

from lab import COUNTER, count, images_dir, migrate, module, playbook, redis_mget, ssh, start_counter, start_redis, where

pytestmark = pytest.mark.integration


def docker_left(node):
    """Checkpoint copies Docker still holds on a host (they contain process memory)."""
    return ssh(node, "ls -d /var/lib/docker/containers/*/checkpoints/* 2>/dev/null; true")


def test_a_counting_docker_container_moves_and_keeps_counting(clean):
    # With a restart policy: Docker would restart a container its checkpoint stopped (a second copy).
    ssh("node1", COUNTER.format(engine="docker", name="counter").replace(" run -d ", " run -d --restart=always "))
    time.sleep(1)
    before = count("node1", engine="docker")
    proc = migrate("counter", "node1", "node2", migrate_engine="docker", check=True)
    time.sleep(2)  # time for a restart, were there one
    after = count("node2", engine="docker")
    assert after >= before  # never went back: the count lives in the shell's memory
    assert after > count("node2", engine="docker") - 100 and count("node2", engine="docker") >= after
    assert where(["node1", "node2"], ("docker",)) == {"counter": ["node2 running"]}
    assert images_dir("node1") == images_dir("node2") == ""
    assert docker_left("node1") == docker_left("node2") == ""
    # The file it writes was carried too (the container's upper layer), and grows from there.
    assert count("node2", engine="docker") >= before
    labels = ssh("node2", "docker inspect -f '{{index .Config.Labels \"io.ferry.checkpoint\"}}' counter")
    assert labels == "counter-node1-to-node2", proc.stdout[-2000:]
    assert ssh("node2", "docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' counter") == "always"


def test_a_docker_redis_keeps_every_key(clean):
    keys = start_redis("node1", keys=3000, engine="docker", network="bridge")
    assert keys.count("v-") == 3000
    migrate("redis", "node1", "node2", migrate_engine="docker", migrate_health_command=["redis-cli", "PING"], check=True)
    assert ssh("node2", redis_mget("redis", 3000, "docker")) == keys
    assert ssh("node2", "docker exec redis redis-cli SET after-move yes") == "OK"
    assert where(["node1", "node2"], ("docker",)) == {"redis": ["node2 running"]}


def test_a_failed_docker_restore_resumes_the_source_and_spares_a_stranger(clean, tmp_path):
    # After the preflight, a different container takes the name on the target: the restore must
    # refuse to replace it, and the rollback must resume the source where it stopped.
    hook = tmp_path / "stranger.yml"
    hook.write_text("- ansible.builtin.command:\n    argv: [docker, create, --name, counter, localhost/ferry/busybox:lab, 'true']\n"
                    "  delegate_to: node2\n")
    before = start_counter("node1", engine="docker")
    proc = migrate("counter", "node1", "node2", migrate_engine="docker", migrate_before_restore_tasks=str(hook), check=False)
    assert proc.returncode != 0
    assert "a container named counter already exists on this host" in proc.stdout
    assert count("node1", engine="docker") >= before
    assert where(["node1", "node2"], ("docker",)) == {"counter": ["node1 running", "node2 stopped"]}
    assert ssh("node2", "docker inspect -f '{{.Config.Cmd}}' counter") == "[true]"  # the stranger, untouched
    assert images_dir("node1") == images_dir("node2") == ""
    assert docker_left("node1") == ""


def test_a_docker_image_missing_on_the_target_travels_with_the_checkpoint(clean):
    ssh("node2", "docker rmi localhost/ferry/busybox:lab")
    try:
        before = start_counter("node1", engine="docker")
        migrate("counter", "node1", "node2", migrate_engine="docker", check=True)
        assert count("node2", engine="docker") >= before
        assert ssh("node2", "docker image inspect -f '{{.Id}}' localhost/ferry/busybox:lab") == \
            ssh("node1", "docker image inspect -f '{{.Id}}' localhost/ferry/busybox:lab")
    finally:
        ssh("node2", "docker image inspect localhost/ferry/busybox:lab >/dev/null 2>&1 || "
                     "docker load -q -i /var/cache/ferry/lab-images/busybox.docker.tar")


def test_a_drain_empties_a_host_of_podman_and_docker_containers(clean, tmp_path):
    nodes = ["node1", "node2", "node3", "node4"]
    state = {"pc": start_counter("node1", "pc"), "dc": start_counter("node1", "dc", engine="docker"),
             "dredis": start_redis("node1", "dredis", 500, engine="docker", network="bridge")}
    proc = playbook("ferry.migrate.drain", extra=dict(drain_hosts="node1", fleet_state_dir=str(tmp_path),
                                                      fleet_engines=["podman", "docker"]))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "node1 drained: nothing runs there." in proc.stdout
    found = where(nodes, ("podman", "docker"))
    assert sorted(found) == ["dc", "dredis", "pc"], found
    for name, entries in found.items():
        assert len(entries) == 1 and entries[0].endswith(" running") and not entries[0].startswith("node1"), found
    engine = {"pc": "podman", "dc": "docker"}
    for name in ("pc", "dc"):
        assert count(found[name][0].split()[0], name, engine[name]) > state[name]
    assert ssh(found["dredis"][0].split()[0], redis_mget("dredis", 500, "docker")) == state["dredis"]


def test_criu_host_names_a_docker_daemon_without_experimental_mode(lab):
    off = playbook("ferry.migrate.criu_host", "-e", "hosts=node4",
                   extra={"criu_host_docker": True, "criu_host_docker_options": {"experimental": False}})
    try:
        assert off.returncode != 0
        assert "runs without experimental mode, which checkpoints need" in off.stdout
        failed = migrate("nothing", "node1", "node4", migrate_engine="docker", check=False)
        assert "runs without experimental mode" in failed.stdout
    finally:
        on = playbook("ferry.migrate.criu_host", "-e", "hosts=node4", extra={"criu_host_docker": True})
    assert on.returncode == 0, on.stdout[-3000:]
    assert ssh("node4", "docker info --format '{{.ExperimentalBuild}}'") == "true"


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_a_checkpoint_that_cannot_be_written_leaves_the_container_running(clean, engine):
    # The bundle's disk is full. The checkpoint has stopped the container by then, and with no bundle
    # no rollback would come: the engine itself runs it again (Docker: restart policy and all).
    policy = "always" if engine == "docker" else "no"
    ssh("node1", COUNTER.format(engine=engine, name="counter").replace(" run -d ", " run -d --restart=%s " % policy))
    time.sleep(1)
    before = count("node1", engine=engine)
    ssh("node1", "mount -t tmpfs -o size=64k ferry-full /var/lib/ferry")
    try:
        result = module("node1", "ferry.migrate.checkpoint", engine=engine, container="counter")
    finally:
        ssh("node1", "umount /var/lib/ferry")
    assert result["failed"] and result["phase"] == "checkpoint", result
    assert "no space left on device" in result["msg"].lower(), result
    assert "runs again from its checkpoint" in result["msg"], result
    assert where(["node1"], (engine,)) == {"counter": ["node1 running"]}
    time.sleep(0.5)
    assert count("node1", engine=engine) >= before
    assert ssh("node1", "%s inspect -f '{{.HostConfig.RestartPolicy.Name}}' counter" % engine) in (policy, "")
    assert docker_left("node1") == "" and images_dir("node1") == ""


def test_podman_refuses_to_checkpoint_a_container_it_would_restart(clean):
    ssh("node1", COUNTER.format(engine="podman", name="counter").replace(" run -d ", " run -d --restart=always "))
    time.sleep(1)
    before = count("node1")
    result = module("node1", "ferry.migrate.checkpoint", container="counter")
    assert result["failed"] and "has restart policy always" in result["msg"], result
    assert where(["node1"]) == {"counter": ["node1 running"]} and count("node1") >= before
    assert images_dir("node1") == ""


TUNED = ("docker network create ferry-extra >/dev/null 2>&1; docker run -d --name tuned --network bridge "
         "--sysctl kernel.msgmax=65536 --pids-limit 64 --log-opt max-size=1m --log-opt max-file=3 "
         "--health-cmd true --health-interval 5s --cpuset-cpus 0 --group-add 1234 --memory 64m --memory-swap 128m "
         "--label team=db --env MODE=tuned localhost/ferry/busybox:lab "
         "sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' >/dev/null && "
         "docker network connect ferry-extra tuned")


def settings(node):
    inspect = json.loads(ssh(node, "docker inspect tuned"))[0]
    config = dict(inspect["Config"], Labels={k: v for k, v in inspect["Config"]["Labels"].items() if k != "io.ferry.checkpoint"})
    networks = sorted(inspect["NetworkSettings"]["Networks"])
    # The daemon merges its default ulimits in its own map order.
    host = dict(inspect["HostConfig"], Ulimits=sorted(inspect["HostConfig"]["Ulimits"] or [], key=lambda u: u["Name"]))
    return config, host, networks


def test_a_docker_container_keeps_every_setting(clean):
    ssh("node2", "docker network create ferry-extra >/dev/null 2>&1; true")
    ssh("node1", TUNED)
    before = settings("node1")
    migrate("tuned", "node1", "node2", migrate_engine="docker", check=True)
    after = settings("node2")
    assert after[2] == before[2] == ["bridge", "ferry-extra"]
    assert after[1] == before[1]  # HostConfig, whole: sysctls, pids limit, log rotation, cpuset, groups, limits...
    assert after[0] == before[0]  # Config: health check, environment, labels, command, image by name
    assert ssh("node2", "docker exec tuned cat /tmp/count") != "0"


def test_a_docker_container_sharing_another_ones_namespace_is_refused_before_anything(clean):
    ssh("node1", "docker run -d --name host1 --network none localhost/ferry/busybox:lab sleep 600 >/dev/null && "
                 "docker run -d --name guest --network container:host1 localhost/ferry/busybox:lab sleep 600 >/dev/null")
    proc = migrate("guest", "node1", "node2", migrate_engine="docker", check=False)
    assert proc.returncode != 0
    assert "guest cannot move: HostConfig.NetworkMode=container:" in proc.stdout and "Nothing was changed." in proc.stdout
    assert where(["node1", "node2"], ("docker",)) == {"host1": ["node1 running"], "guest": ["node1 running"]}
